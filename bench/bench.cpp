// Measures a model's prompt processing (pp) and token generation (tg) speed, and beside them, in the same process,
// the machine's fp32 GEMM rate (OpenBLAS through at::mm) and memory read bandwidth. The model's figures are reported
// as fractions of those limits: pp against 2·params FLOPs per token, tg against the weight bytes read per token.
#include "bench/bench.h"

#include "transformers/auto.h"
#include "transformers/generation.h"
#include "transformers/quantization.h"
#include "transformers/runtime.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <chrono>

namespace tfcpp {

using namespace transformers;
using Clock = std::chrono::steady_clock;

namespace {

template <typename F>
double best_seconds(int reps, F&& fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto start = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return best;
}

double sgemm_gflops() {
  const int64_t n = 1024;
  at::Tensor a = at::randn({n, n}), b = at::randn({n, n}), c = at::empty({n, n});
  at::mm_out(c, a, b);
  double s = best_seconds(5, [&] { at::mm_out(c, a, b); });
  return 2.0 * n * n * n / s / 1e9;
}

double read_bandwidth_gbs() {
  const int64_t bytes = 256ll << 20;
  at::Tensor x = at::ones({bytes / 4});
  volatile float sink = x.sum().item<float>();
  double s = best_seconds(5, [&] { sink = x.sum().item<float>(); });
  (void)sink;
  return bytes / s / 1e9;
}

}  // namespace

int run_bench(const BenchOptions& options) {
  c10::InferenceMode guard;
  auto start = Clock::now();
  FromPretrainedOptions load;
  load.dtype = options.dtype;
  std::string cls = options.class_name;
  if (cls.empty()) cls = class_for_task(AutoConfig::from_pretrained(options.model)->model_type(), "causal-lm");
  // A folder with only config.json benchmarks a randomly initialised model of that shape (no download needed).
  bool has_weights = false;
  for (const auto& entry : std::filesystem::directory_iterator(options.model)) {
    std::string name = entry.path().filename().string();
    has_weights |= name.find(".safetensors") != std::string::npos || name.find(".bin") != std::string::npos;
  }
  std::shared_ptr<PreTrainedModel> model;
  if (has_weights) {
    model = model_from_pretrained(options.model, cls, load);
  } else {
    auto config = AutoConfig::from_pretrained(options.model);
    model = model_from_config(config, cls);
    if (!options.dtype.empty() && options.dtype != "auto" && options.dtype != "float32")
      model->to(dtype_from_name(options.dtype));
    model->eval();
    model->name_or_path = options.model + " (random weights)";
  }
  double load_s = std::chrono::duration<double>(Clock::now() - start).count();

  const int64_t params = model->num_parameters();
  const int64_t vocab = model->get_input_embeddings()->num_embeddings;
  at::Tensor prompt = at::randint(3, vocab, {1, options.prompt_tokens}, at::kLong);
  std::string quant_report;
  if (!options.quantize.empty()) {
    // Output error of the quantized model vs the float one on the bench prompt.
    ModelInputs in;
    in.input_ids = prompt;
    in.use_cache = false;
    at::Tensor reference = model->forward(in).logits.to(at::kFloat);
    const int64_t float_bytes = model->get_memory_footprint();
    quantize_model(*model, {{"quant_method", "tfcpp_" + options.quantize}, {"group_size", options.group_size}});
    at::Tensor logits = model->forward(in).logits.to(at::kFloat);
    const double max_abs = (logits - reference).abs().max().item<double>();
    quant_report = fmt::format(
        "{}: max|dlogits| {:.4g}, relative {:.4g}, top-1 agreement {:.3f}, weights {:.1f} MB (float {:.1f} MB)\n",
        model->quantization_method, max_abs, max_abs / reference.abs().max().item<double>(),
        logits.argmax(-1).eq(reference.argmax(-1)).to(at::kFloat).mean().item<double>(),
        model->get_memory_footprint() / 1e6, float_bytes / 1e6);
  }
  const int64_t weight_bytes = model->get_memory_footprint();

  double pp_s = best_seconds(options.repetitions, [&] {
    ModelInputs in;
    in.input_ids = prompt;
    in.use_cache = false;
    model->forward(in);
  });
  GenerationConfig config = model->generation_config;
  config.max_new_tokens = options.gen_tokens;
  config.min_new_tokens = options.gen_tokens;  // no early stop at EOS: a fixed token count
  config.do_sample = false;
  at::Tensor one = prompt.narrow(1, 0, 1);
  double tg_s = best_seconds(options.repetitions, [&] { generate(*model, one, config); });

  double gflops = sgemm_gflops();
  double gbs = read_bandwidth_gbs();
  double pp_tps = options.prompt_tokens / pp_s;
  double tg_tps = options.gen_tokens / tg_s;
  double pp_gflops = 2.0 * params * pp_tps / 1e9;
  double tg_gbs = static_cast<double>(weight_bytes) * tg_tps / 1e9;

  fmt::print("| model | params | dtype | threads | test | t/s | achieved | machine limit | fraction |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|\n");
  std::string name = model->name_or_path;
  std::string dt = dtype_name(model->dtype()) + (options.quantize.empty() ? "" : "+" + options.quantize);
  int threads = at::get_num_threads();
  fmt::print("| {} | {:.2f} M | {} | {} | pp{} | {:.1f} | {:.2f} GFLOP/s | {:.1f} GFLOP/s sgemm | {:.3f} |\n", name,
             params / 1e6, dt, threads, options.prompt_tokens, pp_tps, pp_gflops, gflops, pp_gflops / gflops);
  fmt::print("| {} | {:.2f} M | {} | {} | tg{} | {:.1f} | {:.2f} GB/s | {:.1f} GB/s read | {:.3f} |\n", name,
             params / 1e6, dt, threads, options.gen_tokens, tg_tps, tg_gbs, gbs, tg_gbs / gbs);
  fmt::print("load: {:.3f} s\n", load_s);
  fmt::print("{}", quant_report);
  return 0;
}

}  // namespace tfcpp
