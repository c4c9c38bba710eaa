// Measures a model's prompt processing (pp: one forward over N prompt tokens) and token generation (tg: N greedy
// tokens with the KV cache) as llama-bench does: a warm-up run, then `-r` timed repetitions, tokens/s as mean ±
// sample stddev, for every combination of threads × precision × test. In the same process, per thread count, it
// measures the machine's limits: memory read bandwidth (a sum over 256 MB), the fp32 GEMM rate (at::mm 1024³ through
// OpenBLAS) and the bf16 GEMM rate (at::mm 1024³ through oneDNN). Each row is reported against its roofline: pp as
// 2·(weights per token) FLOPs per token against the GEMM rate of its compute dtype, tg as the bytes of weights one
// decode step reads against the read bandwidth.
#include "bench/bench.h"

#include "cli/commands.h"
#include "transformers/auto.h"
#include "transformers/cache_utils.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/kernels.h"
#include "transformers/quantization.h"
#include "transformers/runtime.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

namespace tfcpp {

using namespace transformers;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

template <typename F>
double best_seconds(int reps, F&& fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto start = Clock::now();
    fn();
    best = std::min(best, seconds_since(start));
  }
  return best;
}

struct Stats {
  double mean = 0, sd = 0;
  double cpu = 0;  // tokens per second of process CPU time (all threads) over the timed runs
};

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// llama-bench's avg_ts / stdev_ts: tokens/s of every repetition after the untimed warm-up. Two warm-up runs where
// llama-bench has one: nn::Linear packs its float32 weights for the prompt GEMM on the second several-row forward.
template <typename F>
Stats tokens_per_second(int reps, int tokens, F&& fn) {
  fn();
  fn();
  std::vector<double> tps;
  const double cpu_start = process_cpu_seconds();
  for (int i = 0; i < std::max(1, reps); ++i) {
    auto start = Clock::now();
    fn();
    tps.push_back(tokens / seconds_since(start));
  }
  Stats s;
  s.cpu = static_cast<double>(tokens) * tps.size() / std::max(1e-9, process_cpu_seconds() - cpu_start);
  for (double v : tps) s.mean += v;
  s.mean /= tps.size();
  if (tps.size() > 1) {
    for (double v : tps) s.sd += (v - s.mean) * (v - s.mean);
    s.sd = std::sqrt(s.sd / (tps.size() - 1));
  }
  return s;
}

struct Limits {
  double read_gbs = 0, sgemm_gflops = 0, bf16_gflops = 0;
};

Limits measure_limits() {
  Limits l;
  {
    const int64_t bytes = 256ll << 20;
    at::Tensor x = at::ones({bytes / 4});
    volatile float sink = x.sum().item<float>();
    double s = best_seconds(5, [&] { sink = x.sum().item<float>(); });
    (void)sink;
    l.read_gbs = bytes / s / 1e9;
  }
  const int64_t n = 1024;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    at::Tensor a = at::randn({n, n}).to(dtype), b = at::randn({n, n}).to(dtype), c = at::empty({n, n}, a.options());
    at::mm_out(c, a, b);
    double s = best_seconds(5, [&] { at::mm_out(c, a, b); });
    (dtype == at::kFloat ? l.sgemm_gflops : l.bf16_gflops) = 2.0 * n * n * n / s / 1e9;
  }
  return l;
}

std::string canonical_dtype(const std::string& name) {
  if (name == "f32" || name == "fp32" || name == "float32" || name == "float") return "float32";
  if (name == "bf16" || name == "bfloat16") return "bfloat16";
  throw ValueError("tfcpp bench: --dtype takes float32 (f32) or bfloat16 (bf16), got '" + name +
                   "' (float16 loads compute in float32 on libtorch 1.13's CPU kernels)");
}

bool has_weight_files(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name.find(".safetensors") != std::string::npos || name.find(".bin") != std::string::npos) return true;
  }
  return false;
}

// A folder with only a config.json benchmarks a randomly initialised model of that shape.
std::shared_ptr<PreTrainedModel> load_model(const BenchOptions& o, const std::string& dir, const std::string& dtype) {
  std::string cls = o.class_name;
  if (cls.empty()) cls = class_for_task(AutoConfig::from_pretrained(dir)->model_type(), "causal-lm");
  if (has_weight_files(dir)) {
    FromPretrainedOptions load;
    load.dtype = dtype;
    load.variant = o.variant;
    load.attn_implementation = o.attn_implementation;
    return model_from_pretrained(dir, cls, load);
  }
  auto model = model_from_config(AutoConfig::from_pretrained(dir), cls);
  if (!o.attn_implementation.empty()) model->set_attn_implementation(o.attn_implementation);
  if (dtype != "float32") model->to(dtype_from_name(dtype));
  model->eval();
  model->name_or_path = dir + " (random weights)";
  return model;
}

// Bytes of weights one decode step reads: every parameter once (tied tensors once), except an untied input embedding
// table, of which a step reads one row.
int64_t bytes_per_token(PreTrainedModel& model) {
  int64_t bytes = model.get_memory_footprint();
  auto in = model.get_input_embeddings();
  auto out = model.get_output_embeddings();
  if (in && !(out && out->weight.is_same(in->weight))) bytes -= in->weight.numel() * in->weight.element_size();
  return bytes;
}

int64_t params_per_token(PreTrainedModel& model) {
  int64_t params = model.num_parameters();
  auto in = model.get_input_embeddings();
  auto out = model.get_output_embeddings();
  if (in && !(out && out->weight.is_same(in->weight))) params -= in->weight.numel();
  return params;
}

std::string model_label(const std::string& name) {
  std::string label = std::filesystem::path(name).filename().string();
  if (label.empty()) label = name;
  return label;
}

// GEMV alone (the decode bottleneck): our kernels vs libtorch's path for the same weight, GB/s of weight streamed.
void gemv_table(const std::vector<int>& threads, int reps, std::map<int, Limits>& limits, bool roofline) {
  fmt::print("\n| gemv [out x in] | weights | threads | kernel | GB/s | fraction of read bandwidth |\n");
  fmt::print("|---|---|---:|---|---:|---:|\n");
  for (int t : threads) {
    init_runtime(t);
    if (roofline && !limits.count(t)) limits[t] = measure_limits();
    for (const auto& shape : std::vector<std::pair<int64_t, int64_t>>{{2048, 768}, {32000, 768}, {4096, 4096}}) {
      const int64_t out = shape.first, in = shape.second;  // not a structured binding: lambdas below capture them
      for (auto dtype : {at::kFloat, at::kBFloat16}) {
        at::Tensor w = at::randn({out, in}).to(dtype), x = at::randn({1, in}).to(dtype);
        const double bytes = static_cast<double>(w.numel() * w.element_size());
        auto row = [&](const char* name, auto&& fn) {
          fn();
          const double s = best_seconds(std::max(3, reps), fn);
          const double gbs = bytes / s / 1e9;
          fmt::print("| {} x {} | {} | {} | {} | {:.1f} | {} |\n", out, in, dtype_name(dtype), t, name, gbs,
                     roofline ? fmt::format("{:.2f}", gbs / limits[t].read_gbs) : "-");
        };
        row(dtype == at::kFloat ? "kernels::gemv (AVX-512)" : "kernels::gemv (vdpbf16ps)",
            [&] { kernels::gemv(x, w, at::Tensor()); });
        if (dtype == at::kFloat) row("at::mv (OpenBLAS sgemv)", [&] { at::mv(w, x.view({in})); });
        row("at::linear", [&] { at::linear(x, w); });
      }
    }
  }
}

// The weight files of a model folder (what a cold start reads from disk).
std::vector<std::string> weight_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const bool weights = name.find(".safetensors") != std::string::npos || name.find(".bin") != std::string::npos;
    if (entry.is_regular_file() && weights) files.push_back(entry.path().string());
  }
  return files;
}

// Fraction of the files' pages resident in the page cache (mincore over a read-only mapping).
double resident_fraction(const std::vector<std::string>& files) {
  const long page = sysconf(_SC_PAGESIZE);
  double resident = 0, total = 0;
  for (const auto& file : files) {
    int fd = ::open(file.c_str(), O_RDONLY);
    if (fd < 0) continue;
    const off_t size = lseek(fd, 0, SEEK_END);
    if (size > 0) {
      void* map = mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
      if (map != MAP_FAILED) {
        std::vector<unsigned char> pages(static_cast<size_t>((size + page - 1) / page));
        if (mincore(map, static_cast<size_t>(size), pages.data()) == 0)
          for (unsigned char p : pages) resident += p & 1;
        total += static_cast<double>(pages.size());
        munmap(map, static_cast<size_t>(size));
      }
    }
    ::close(fd);
  }
  return total > 0 ? resident / total : 0.0;
}

// Asks the kernel to drop the files' clean pages from the page cache (no root needed; pages another process has
// mapped stay).
void evict_from_page_cache(const std::vector<std::string>& files) {
  for (const auto& file : files) {
    int fd = ::open(file.c_str(), O_RDONLY);
    if (fd < 0) continue;
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Time to first token: from_pretrained, one forward over a `prompt`-token prompt, argmax of the last position.
// Cold = the weight files evicted from the page cache first; warm = run again right after (files cached).
void ttft_table(const BenchOptions& options, const std::string& dir, const std::vector<std::string>& dtypes,
                int threads, int prompt) {
  const std::vector<std::string> files = weight_files(dir);
  fmt::print("\n| time to first token | precision | threads | prompt | page cache before | load s | prefill s | "
             "first token s |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
  if (files.empty()) {
    fmt::print("| {}: no weight files (random weights), nothing to load | | | | | | | |\n", model_label(options.model));
    return;
  }
  init_runtime(threads);
  for (const auto& dtype : dtypes)
    for (const char* state : {"cold", "warm"}) {
      if (std::string(state) == "cold") evict_from_page_cache(files);
      const double resident = resident_fraction(files);
      auto start = Clock::now();
      auto model = load_model(options, dir, dtype);
      const double load_s = seconds_since(start);
      const int64_t vocab = model->get_input_embeddings()->num_embeddings;
      ModelInputs in;
      in.input_ids = at::randint(3, vocab, {1, std::max(1, prompt)}, at::kLong);
      in.use_cache = true;
      in.num_logits_to_keep = 1;  // generate()'s prefill
      auto prefill_start = Clock::now();
      model->forward(in).logits.select(1, -1).argmax(-1);
      const double prefill_s = seconds_since(prefill_start);
      fmt::print("| {} {} | {} | {} | {} | {:.0f} % | {:.3f} | {:.3f} | {:.3f} |\n", model_label(options.model), state,
                 dtype, threads, prompt, 100 * resident, load_s, prefill_s, load_s + prefill_s);
      std::fflush(stdout);
    }
}

}  // namespace

void add_bench_options(CLI::App* cmd, BenchOptions& o) {
  cmd->add_option("--model,-m", o.model, "Model folder (or hub id); a folder with only config.json = random weights")
      ->required();
  cmd->add_option("--class", o.class_name, "Model class (default: the family's causal-lm class)");
  cmd->add_option("--variant", o.variant, "Read model.<variant>.safetensors");
  cmd->add_option("--attn-implementation", o.attn_implementation, "eager | sdpa | flash_attention_2");
  cmd->add_option("-p,--pp,--n-prompt", o.prompt_tokens, "Prompt lengths, comma-separated (default 128; 0 = none)")
      ->delimiter(',');
  cmd->add_option("-n,--tg,--n-gen", o.gen_tokens, "Generated token counts, comma-separated (default 64; 0 = none)")
      ->delimiter(',');
  cmd->add_option("-t,--threads", o.threads, "Thread counts, comma-separated (default: physical cores)")->delimiter(',');
  cmd->add_option("-r,--reps", o.repetitions, "Repetitions after two warm-up runs (default 5)");
  cmd->add_option("--dtype", o.dtypes, "Precisions: float32 (f32), bfloat16 (bf16), comma-separated")->delimiter(',');
  cmd->add_option("--quantize", o.quantize, "Weight-only int8 | int4 on the float32 model, comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember({"int8", "int4"}));
  cmd->add_option("--group-size", o.group_size, "int4 group size (default 128)");
  cmd->add_flag("--keep-head-float", o.keep_head_float,
                "Quantize as transformers does by default: the output head stays float (by default the bench "
                "quantizes it too, as llama-quantize does, so Q8_0/Q4_0 compare like with like)");
  cmd->add_flag("!--no-roofline", o.roofline, "Skip measuring the machine's bandwidth and GEMM peaks");
  cmd->add_flag("--ttft", o.ttft,
                "Also time from_pretrained + the first token, cold (weight files evicted from the page cache) and "
                "warm, for each --dtype, the first thread count and the first prompt length");
  cmd->add_flag("--gemv", o.gemv, "Also time the one-row GEMV kernels alone (GB/s vs read bandwidth)");
}

int run_bench(const BenchOptions& options) {
  c10::InferenceMode guard;
  const std::string dir = resolve_model_arg(options.model, options.variant);
  std::vector<std::pair<std::string, std::string>> precisions;  // (dtype, quantization)
  for (const auto& d : options.dtypes) precisions.emplace_back(canonical_dtype(d), "");
  for (const auto& q : options.quantize) precisions.emplace_back("float32", q);
  if (precisions.empty()) precisions.emplace_back("float32", "");
  std::vector<int> threads = options.threads;
  if (threads.empty()) threads.push_back(init_runtime().threads);
  for (int t : threads)
    if (t <= 0) throw ValueError("tfcpp bench: thread counts must be positive, got " + std::to_string(t));

  std::map<int, Limits> limits;
  std::vector<std::string> notes;
  fmt::print("| model | size | params | precision | threads | test | t/s | t/s per CPU-s | roofline | fraction |\n");
  fmt::print("|---|---:|---:|---|---:|---|---:|---:|---:|---:|\n");
  std::fflush(stdout);
  for (const auto& [dtype, quant] : precisions) {
    auto start = Clock::now();
    auto model = load_model(options, dir, dtype);
    const double load_s = seconds_since(start);
    const int64_t vocab = model->get_input_embeddings()->num_embeddings;
    const std::string label = model_label(options.model) + (has_weight_files(dir) ? "" : " (random)");
    if (!quant.empty()) {
      // Output error of the quantized model vs the float one on a bench-sized prompt.
      ModelInputs in;
      in.input_ids = at::randint(3, vocab, {1, std::max(8, options.prompt_tokens.front())}, at::kLong);
      in.use_cache = false;
      at::Tensor reference = model->forward(in).logits.to(at::kFloat);
      const int64_t float_bytes = model->get_memory_footprint();
      json quantization_config = {{"quant_method", "tfcpp_" + quant}, {"group_size", options.group_size}};
      // llama-quantize quantizes the output matrix too (Q8_0 / Q6_K); an explicit empty list converts every Linear.
      if (!options.keep_head_float) quantization_config["modules_to_not_convert"] = json::array();
      quantize_model(*model, quantization_config);
      at::Tensor logits = model->forward(in).logits.to(at::kFloat);
      const double max_abs = (logits - reference).abs().max().item<double>();
      notes.push_back(fmt::format(
          "{}: max|dlogits| {:.4g}, relative {:.4g}, top-1 agreement {:.3f}, weights {:.1f} MB (float {:.1f} MB)",
          model->quantization_method, max_abs, max_abs / reference.abs().max().item<double>(),
          logits.argmax(-1).eq(reference.argmax(-1)).to(at::kFloat).mean().item<double>(),
          model->get_memory_footprint() / 1e6, float_bytes / 1e6));
    }
    const int64_t params = model->num_parameters();
    const int64_t token_bytes = bytes_per_token(*model);
    const int64_t token_params = params_per_token(*model);
    auto head_module = model->get_output_embeddings();
    const int64_t head_params = head_module ? head_module->in_features * head_module->out_features : 0;
    const std::string precision =
        quant.empty() ? dtype : quant == "int4" ? fmt::format("int4 g{} weight-only", options.group_size) : quant + " weight-only";
    notes.push_back(fmt::format("{} {}: load {:.3f} s, {:.1f} MB of weights read per decode step", label, precision,
                                load_s, token_bytes / 1e6));
    for (int t : threads) {
      init_runtime(t);
      if (options.roofline && !limits.count(t)) limits[t] = measure_limits();
      const Limits& lim = limits[t];
      const double gemm_peak = dtype == "bfloat16" ? lim.bf16_gflops : lim.sgemm_gflops;
      for (int p : options.prompt_tokens) {
        if (p <= 0) continue;
        at::Tensor prompt = at::randint(3, vocab, {1, p}, at::kLong);
        Stats s = tokens_per_second(options.repetitions, p, [&] {
          ModelInputs in;
          in.input_ids = prompt;
          in.use_cache = false;
          in.num_logits_to_keep = 1;  // as llama-bench's pp and generate()'s prefill: logits of the last position only
          model->forward(in);
        });
        // Only the last position goes through the output head (num_logits_to_keep = 1).
        const double head = static_cast<double>(head_params) * (p - 1) / p;
        const double gflops = 2.0 * (static_cast<double>(token_params) - head) * s.mean / 1e9;
        fmt::print("| {} | {:.1f} MB | {:.2f} M | {} | {} | pp{} | {:.2f} ± {:.2f} | {:.2f} | {} | {} |\n", label,
                   token_bytes / 1e6, params / 1e6, precision, t, p, s.mean, s.sd, s.cpu,
                   options.roofline ? fmt::format("{:.0f} GFLOP/s", gemm_peak) : "-",
                   options.roofline ? fmt::format("{:.3f} ({:.1f} GFLOP/s)", gflops / gemm_peak, gflops) : "-");
        std::fflush(stdout);
      }
      for (int n : options.gen_tokens) {
        if (n <= 0) continue;
        // As llama-bench's tg: n decode steps of one token with the KV cache from an empty context (the next token
        // is the argmax; no sampling loop, which `tfcpp generate` adds on top).
        at::Tensor first = at::randint(3, vocab, {1, 1}, at::kLong);
        Stats s = tokens_per_second(options.repetitions, n, [&] {
          auto cache = std::make_shared<DynamicCache>();
          cache->reserve(n);
          at::Tensor token = first;
          for (int i = 0; i < n; ++i) {
            ModelInputs in;
            in.input_ids = token;
            in.past_key_values = cache;
            in.use_cache = true;
            token = model->forward(in).logits.select(1, -1).argmax(-1, true);
          }
        });
        const double gbs = static_cast<double>(token_bytes) * s.mean / 1e9;
        fmt::print("| {} | {:.1f} MB | {:.2f} M | {} | {} | tg{} | {:.2f} ± {:.2f} | {:.2f} | {} | {} |\n", label,
                   token_bytes / 1e6, params / 1e6, precision, t, n, s.mean, s.sd, s.cpu,
                   options.roofline ? fmt::format("{:.1f} GB/s", lim.read_gbs) : "-",
                   options.roofline ? fmt::format("{:.3f} ({:.1f} GB/s)", gbs / lim.read_gbs, gbs) : "-");
        std::fflush(stdout);
      }
    }
  }
  if (options.ttft) {
    std::vector<std::string> dtypes;
    for (const auto& d : options.dtypes) dtypes.push_back(canonical_dtype(d));
    if (dtypes.empty()) dtypes.push_back("float32");
    const int prompt = options.prompt_tokens.empty() ? 128 : options.prompt_tokens.front();
    ttft_table(options, dir, dtypes, threads.front(), prompt);
  }
  if (options.gemv) gemv_table(threads, options.repetitions, limits, options.roofline);
  fmt::print("\n");
  for (const auto& [t, l] : limits)
    if (options.roofline)
      fmt::print("machine, {} thread(s): read {:.1f} GB/s, sgemm {:.1f} GFLOP/s, bf16 gemm {:.1f} GFLOP/s\n", t,
                 l.read_gbs, l.sgemm_gflops, l.bf16_gflops);
  auto env_or_unset = [](const char* name) { return std::getenv(name) ? std::getenv(name) : "unset"; };
  fmt::print("kernels: {} ({}), OMP_WAIT_POLICY={}, GOMP_SPINCOUNT={}, OPENBLAS_THREAD_TIMEOUT={}, OPENBLAS_CORETYPE={}\n",
             kernels::enabled() ? "on" : "off", kernels::isa(), env_or_unset("OMP_WAIT_POLICY"),
             env_or_unset("GOMP_SPINCOUNT"), env_or_unset("OPENBLAS_THREAD_TIMEOUT"), env_or_unset("OPENBLAS_CORETYPE"));
  for (const auto& note : notes) fmt::print("{}\n", note);
  return 0;
}

}  // namespace tfcpp
