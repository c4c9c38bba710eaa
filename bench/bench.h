// tfcpp bench: llama-bench-like table (load, pp, tg) with the machine's limits measured in the same run.
#pragma once

#include <string>

namespace tfcpp {

struct BenchOptions {
  std::string model, dtype, class_name;
  int prompt_tokens = 128;
  int gen_tokens = 64;
  int repetitions = 3;
  std::string quantize;  // "int8" | "int4": weight-only quantization (quantization.h), error vs float reported
  int64_t group_size = 128;
};

int run_bench(const BenchOptions& options);

}  // namespace tfcpp
