// tfcpp dist-check and the --nproc launcher shared by the commands that run sharded (distributed.h).
#include "cli/distributed_cli.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/distributed.h"
#include "transformers/errors.h"
#include "transformers/safetensors.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace tfcpp {

using namespace transformers;
using Clock = std::chrono::steady_clock;

void add_dist_options(CLI::App* cmd, DistFlags* flags) {
  cmd->add_option("--nproc", flags->nproc,
                  "Run as N local ranks with the model sharded over them (multi-machine: set RANK, WORLD_SIZE, "
                  "MASTER_ADDR, MASTER_PORT instead)");
  cmd->add_option("--parallel", flags->parallel, "How ranks share the model: tp (tensor parallel, default) or pp "
                                                 "(pipeline parallel: consecutive layers per rank)")
      ->check(CLI::IsMember({"tp", "pp"}));
}

std::optional<int> launch_if_requested(const DistFlags& dist) {
  if (dist.nproc <= 1 || distributed::env_requests_distributed()) return std::nullopt;
  return distributed::launch_local(dist.nproc, distributed::command_line_without("--nproc"));
}

bool is_primary_rank() { return distributed::get_rank() == 0; }

std::shared_ptr<PreTrainedModel> load_for_rank(const LoadFlags& flags, const DistFlags& dist, const std::string& task,
                                               double* seconds) {
  if (!distributed::env_requests_distributed()) return flags.load(task, seconds);
  auto start = Clock::now();
  if (!distributed::is_initialized()) distributed::init_process_group_from_env();
  if (distributed::get_rank() > 0 && !std::freopen("/dev/null", "w", stdout))
    throw DistributedError("cannot silence stdout of rank " + std::to_string(distributed::get_rank()));
  FromPretrainedOptions options;
  options.dtype = flags.dtype;
  options.variant = flags.variant;
  options.attn_implementation = flags.attn_implementation;
  (dist.parallel == "pp" ? options.pp_plan : options.tp_plan) = "auto";
  std::string cls = flags.class_name;
  if (cls.empty()) {
    auto config = AutoConfig::from_pretrained(flags.model);
    if (config->architectures && !config->architectures->empty()) cls = config->architectures->front();
    else cls = class_for_task(config->model_type(), task);
  }
  auto model = model_from_pretrained(flags.model, cls, options);
  if (seconds) *seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return model;
}

void maybe_inject_fault(int64_t step) {
  const char* fault = std::getenv("TFCPP_DIST_FAULT_RANK");
  if (!fault || !*fault || !distributed::is_initialized()) return;
  const char* at = std::getenv("TFCPP_DIST_FAULT_STEP");
  const int64_t fault_step = at && *at ? std::atoll(at) : 2;
  if (std::atoi(fault) == distributed::get_rank() && step == fault_step) {
    std::fprintf(stderr, "rank %d: TFCPP_DIST_FAULT_RANK: exiting at step %lld\n", distributed::get_rank(),
                 static_cast<long long>(step));
    std::fflush(stderr);
    ::_exit(3);
  }
}

namespace {

struct DistCheckFlags {
  std::string inputs, out;
  DistFlags dist;
  double allreduce_mb = 0;
};

int cmd_dist_check(const LoadFlags& flags, const DistCheckFlags& f) {
  setup_threads(flags.threads);
  auto model = load_for_rank(flags, f.dist, "base");
  const int world = distributed::get_world_size();
  // Every rank's resident weight bytes, gathered on all.
  at::Tensor bytes = at::full({1}, static_cast<double>(distributed::rank_weight_bytes(*model)), at::kDouble);
  at::Tensor all_bytes = distributed::all_gather(bytes, 0);
  json report;
  report["world_size"] = world;
  report["class"] = model->class_name;
  json per_rank = json::array();
  for (int r = 0; r < world; ++r) per_rank.push_back(static_cast<int64_t>(all_bytes[r].item<double>()));
  report["weight_bytes"] = per_rank;
  if (!f.inputs.empty()) {
    auto outputs = run_forward_case(*model, read_case_inputs(f.inputs));
    json names = json::array();
    for (const auto& [name, t] : outputs) names.push_back(name);
    report["outputs"] = names;
    if (is_primary_rank() && !f.out.empty()) safetensors::save_file(outputs, f.out);
  }
  if (f.allreduce_mb > 0) {
    at::Tensor t = at::ones({static_cast<int64_t>(f.allreduce_mb * 1e6 / 4)}, at::kFloat);
    distributed::all_reduce(t);  // warm-up
    distributed::barrier();
    const int reps = 5;
    auto start = Clock::now();
    for (int i = 0; i < reps; ++i) distributed::all_reduce(t);
    report["allreduce_ms"] = std::chrono::duration<double, std::milli>(Clock::now() - start).count() / reps;
    report["allreduce_mb"] = f.allreduce_mb;
  }
  distributed::barrier();
  if (is_primary_rank()) std::cout << report.dump() << std::endl;
  return 0;
}

}  // namespace

TFCPP_CLI_COMMAND("dist-check", "Load a model sharded over ranks: per-rank weight bytes, a fixture forward, all-reduce time",
                  [](CLI::App* cmd) {
                    auto flags = std::make_shared<LoadFlags>();
                    auto f = std::make_shared<DistCheckFlags>();
                    flags->add(cmd);
                    cmd->add_option("--inputs", f->inputs, "Fixture inputs.json: run its forward entry");
                    cmd->add_option("--out", f->out, "Write the forward outputs (rank 0) to this safetensors file");
                    cmd->add_option("--allreduce-mb", f->allreduce_mb, "Also time an all-reduce of this many MB");
                    add_dist_options(cmd, &f->dist);
                    return [flags, f]() -> int {
                      if (auto code = launch_if_requested(f->dist)) return *code;
                      return cmd_dist_check(*flags, *f);
                    };
                  });

}  // namespace tfcpp
