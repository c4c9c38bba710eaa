// tfcpp: the command line. Subcommands live in commands.cpp; this file sets up the process.
#include "cli/commands.h"

#include "transformers/errors.h"
#include "transformers/runtime.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  // GOMP_SPINCOUNT and the OPENBLAS_* variables are read when libgomp/OpenBLAS load, i.e. before main: set them and
  // re-execute once (TFCPP_REEXEC guards against loops).
  if (!std::getenv("TFCPP_REEXEC") && transformers::prepare_environment()) {
    setenv("TFCPP_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    // execv failed: carry on with the current environment.
  }
  try {
    return tfcpp::run_cli(argc, argv);
  } catch (const transformers::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
