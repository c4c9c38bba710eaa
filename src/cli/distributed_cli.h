// The distributed side of the CLI (src/cli/cmd_distributed.cpp): `--nproc N` launching, loading a rank's shard, and
// the `tfcpp dist-check` command. See distributed.h.
#pragma once

#include "cli/commands.h"

#include <CLI/CLI.hpp>

namespace tfcpp {

struct DistFlags {
  int nproc = 0;              // --nproc: local ranks to launch
  std::string parallel = "tp";  // --parallel: "tp" (tensor parallel) or "pp" (pipeline parallel)
};
// Adds --nproc N and --parallel tp|pp to a command.
void add_dist_options(CLI::App* cmd, DistFlags* flags);
// With --nproc > 1 in a process that is not a rank yet: runs this command line as N local ranks and returns the
// launcher's exit code. std::nullopt otherwise (run the command here).
std::optional<int> launch_if_requested(const DistFlags& dist);
// In a rank (WORLD_SIZE > 1): joins the process group, silences stdout above rank 0 and loads --model sharded by
// the family's tensor-parallel plan (or split into pipeline stages). Otherwise flags.load.
std::shared_ptr<transformers::PreTrainedModel> load_for_rank(const LoadFlags& flags, const DistFlags& dist,
                                                             const std::string& task, double* seconds = nullptr);
// Tests: TFCPP_DIST_FAULT_RANK=r makes rank r exit abruptly (status 3) at generation step TFCPP_DIST_FAULT_STEP
// (default 2).
void maybe_inject_fault(int64_t step);
// Whether this process should print results (not a rank, or rank 0).
bool is_primary_rank();

}  // namespace tfcpp
