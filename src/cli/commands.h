#pragma once

namespace tfcpp {
// Parses argv and runs the subcommand. Returns the exit code; usage errors return 2.
int run_cli(int argc, char** argv);
}  // namespace tfcpp
