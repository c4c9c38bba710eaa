// tfcpp bench: llama-bench-like table (pp / tg tokens per second, mean ± stddev over repetitions) for lists of
// threads, dtypes and weight-only quantizations, with the machine's limits (memory read bandwidth, fp32 and bf16
// GEMM peak) measured in the same run and every row given as a fraction of its roofline.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tfcpp {

struct BenchOptions {
  std::string model, class_name, variant, attn_implementation;
  std::vector<int> prompt_tokens{128};  // -p: one pp row each (0 = none)
  std::vector<int> gen_tokens{64};      // -n: one tg row each (0 = none)
  std::vector<int> threads;             // -t: empty = the runtime default (physical cores / TFCPP_NUM_THREADS)
  std::vector<std::string> dtypes;      // --dtype: float32 (f32), bfloat16 (bf16); empty = float32 unless --quantize
  std::vector<std::string> quantize;    // --quantize: int8, int4 (weight-only, on the float32 model; error reported)
  int repetitions = 5;
  int64_t group_size = 128;
  bool keep_head_float = false;
  bool ttft = false;  // --ttft: time to first token, cold (weight files evicted from the page cache) and warm  // --keep-head-float: transformers' default modules_to_not_convert (head stays float)
  bool roofline = true;                 // measure bandwidth and GEMM peaks (--no-roofline skips)
  bool gemv = false;                    // --gemv: also time the one-row GEMV kernels alone
};

// Adds the bench flags to `cmd` (model, -p, -n, -t, -r, --dtype, --quantize, ...), filling `options` when parsed.
void add_bench_options(CLI::App* cmd, BenchOptions& options);
int run_bench(const BenchOptions& options);

}  // namespace tfcpp
