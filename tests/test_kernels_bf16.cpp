// bfloat16 decode: the raw bf16 kernels (kernels.h, raw::*_bf16) against the bf16 ATen ops the module path runs
// (torch rounds every bf16 op to nearest even), and the fused bf16 Llama decode step against the module path (kernels
// on, fused step off) and the plain ATen path (kernels off): greedy tokens and per-step logits.
#include "test_util.h"
#include "kernel_test_util.h"

#include "transformers/attention.h"
#include "transformers/auto.h"
#include "transformers/cache_utils.h"
#include "transformers/generation.h"
#include "transformers/kernels.h"
#include "transformers/models/llama.h"
#include "transformers/quantization.h"
#include "transformers/torch_bin.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

using namespace transformers;
using namespace tfcpp_test;

namespace {


// float32 copy of a bf16 tensor, and bf16 bits of a tensor, for the raw kernels.
std::vector<float> floats(const at::Tensor& t) {
  at::Tensor f = t.to(at::kFloat).contiguous();
  return std::vector<float>(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
}
std::vector<uint16_t> bits(const at::Tensor& t) {
  at::Tensor b = t.to(at::kBFloat16).contiguous();
  std::vector<uint16_t> out(static_cast<size_t>(b.numel()));
  std::memcpy(out.data(), b.data_ptr<at::BFloat16>(), out.size() * sizeof(uint16_t));
  return out;
}
at::Tensor tensor(const std::vector<float>& v, at::IntArrayRef shape) {
  return at::from_blob(const_cast<float*>(v.data()), shape, at::kFloat).clone();
}

// Elements of a and b (same shape) that differ, and the largest difference in units of b's bf16 spacing.
struct Mismatch {
  int64_t count = 0;
  double max_ulps = 0;
};
// Values that differ by at most `noise` (absolute) are taken as equal.
Mismatch compare_bf16(const at::Tensor& a, const at::Tensor& b, double noise = 0.0) {
  at::Tensor x = a.to(at::kDouble).flatten(), y = b.to(at::kDouble).flatten();
  Mismatch m;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double u = x[i].item<double>(), v = y[i].item<double>();
    if (std::abs(u - v) <= noise) continue;
    ++m.count;
    const double ulp = std::ldexp(1.0, std::max(-133, std::ilogb(v == 0 ? 1e-38 : v) - 7));
    m.max_ulps = std::max(m.max_ulps, std::abs(u - v) / ulp);
  }
  return m;
}


}  // namespace

TEST(KernelsBf16, RoundingIsTorchsRoundToNearestEven) {
  // Ties to even, NaN, infinities, the largest finite values and subnormals, then random values.
  std::vector<float> v = {0.0f, -0.0f, 1.0f, 1.00390625f, 1.01171875f, 1.0f + 3.0f / 512, -1.00390625f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::lowest(), std::numeric_limits<float>::denorm_min(), 1e-40f};
  at::Tensor r = at::randn({4096}) * 100;
  for (int64_t i = 0; i < r.numel(); ++i) v.push_back(r[i].item<float>());
  const int64_t n = static_cast<int64_t>(v.size());
  at::Tensor expected = tensor(v, {n}).to(at::kBFloat16);
  std::vector<uint16_t> got(v.size());
  kernels::raw::to_bf16(v.data(), got.data(), n);
  const std::vector<uint16_t> expected_bits = bits(expected);
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isnan(v[i])) {
      EXPECT_EQ(got[i], expected_bits[i]) << v[i];  // (NaN: torch's vectorized conversion gives 0xFFFF, ours 0x7FC0)
    }
  std::vector<float> rounded = v;
  kernels::raw::round_bf16(rounded.data(), n);
  at::Tensor back = tensor(rounded, {n});
  EXPECT_TRUE(back.isnan().equal(expected.isnan()));
  EXPECT_TRUE(back.nan_to_num(0).equal(expected.to(at::kFloat).nan_to_num(0)));
}

TEST(KernelsBf16, GemvStreamsOneRowAtATimeWithFloatAccumulation) {
  KernelSettings restore;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    kernels::set_min_parallel_bytes(threads == 1 ? (1 << 20) : 0);
    for (int64_t in : {1, 17, 31, 32, 33, 127, 128, 129, 200, 768}) {
      for (int64_t out : {1, 5, 67}) {
        at::Tensor w = at::randn({out, in}).to(at::kBFloat16), x = at::randn({in}).to(at::kBFloat16);
        at::Tensor b = at::randn({out});
        std::vector<float> y(static_cast<size_t>(out));
        const std::vector<uint16_t> wb = bits(w), xb = bits(x);
        const std::vector<float> bias = floats(b);
        kernels::raw::gemv_bf16(wb.data(), xb.data(), y.data(), bias.data(), out, in);
        // The exact products of the bf16 values, summed in double: float32 accumulation stays within its rounding.
        at::Tensor ref = at::mv(w.to(at::kDouble), x.to(at::kDouble)) + b.to(at::kDouble);
        at::Tensor abs_sum = at::mv(w.to(at::kDouble).abs(), x.to(at::kDouble).abs()) + b.to(at::kDouble).abs();
        at::Tensor err = (tensor(y, {out}).to(at::kDouble) - ref).abs();
        EXPECT_TRUE((err <= abs_sum * 1e-5 + 1e-30).all().item<bool>())
            << "in " << in << " out " << out << " threads " << threads << " max err " << err.max().item<double>();
        // The tensor entry point (nn::Linear's one-row path) runs the same kernel and rounds once to bf16.
        kernels::set_enabled(true);
        at::Tensor yt;
        {
          c10::InferenceMode guard;
          yt = kernels::gemv(x, w, b.to(at::kBFloat16));
        }
        ASSERT_TRUE(yt.defined());
        std::vector<float> yr(static_cast<size_t>(out));
        const std::vector<float> bias_bf16 = floats(b.to(at::kBFloat16));
        kernels::raw::gemv_bf16(wb.data(), xb.data(), yr.data(), bias_bf16.data(), out, in);
        EXPECT_TRUE(yt.equal(tensor(yr, {out}).to(at::kBFloat16))) << "in " << in << " out " << out;
      }
    }
  }
}

TEST(KernelsBf16, ElementwiseKernelsMatchTorchBf16Ops) {
  c10::InferenceMode guard;
  const int64_t d = 200;
  // RMSNorm: LlamaRMSNorm's bf16 path (float32 variance and rsqrt, rounded, then weight * h in bf16).
  LlamaRMSNorm norm(d, 1e-5);
  norm.weight.data().normal_();
  norm.to(at::kBFloat16);
  for (int trial = 0; trial < 20; ++trial) {
    at::Tensor x = (at::randn({1, 1, d}) * (trial + 1)).to(at::kBFloat16);
    at::Tensor ref = norm.forward(x);
    std::vector<float> out(static_cast<size_t>(d));
    const std::vector<float> xf = floats(x);
    const std::vector<uint16_t> wb = bits(norm.weight);
    kernels::raw::rms_norm_bf16(xf.data(), wb.data(), out.data(), d, 1e-5f);
    // The variance is summed in another order than torch's reduction: a rare 1-ulp difference after rounding.
    Mismatch m = compare_bf16(tensor(out, {1, 1, d}), ref);
    EXPECT_LE(m.count, 2) << "trial " << trial;
    EXPECT_LE(m.max_ulps, 1.0) << "trial " << trial;
  }
  // Residual sum, SiLU gate product (torch 1.13 rounds each step of its bf16 silu), rotary.
  at::Tensor a = (at::randn({4096}) * 4).to(at::kBFloat16), b = (at::randn({4096}) * 4).to(at::kBFloat16);
  std::vector<float> af = floats(a), bf = floats(b), out(af.size());
  kernels::raw::add_bf16(af.data(), bf.data(), 4096);
  EXPECT_TRUE(tensor(af, {4096}).equal((a + b).to(at::kFloat)));
  af = floats(a);
  kernels::raw::silu_mul_bf16(af.data(), bf.data(), out.data(), 4096);
  Mismatch silu = compare_bf16(tensor(out, {4096}), at::silu(a) * b);
  EXPECT_LE(silu.count, 8);  // exp in float32: libm vs Sleef may land on the other side of a rounding boundary
  EXPECT_LE(silu.max_ulps, 1.0);
  for (int64_t hd : {8, 64}) {
    const int64_t heads = 3, half = hd / 2;
    at::Tensor q = at::randn({1, heads, 1, hd}).to(at::kBFloat16);
    at::Tensor freqs = at::randn({half}) * 10;
    at::Tensor emb = at::cat({freqs, freqs});
    at::Tensor c = emb.cos().to(at::kBFloat16), s = emb.sin().to(at::kBFloat16);
    at::Tensor rotated_half = at::cat({-q.narrow(-1, half, half), q.narrow(-1, 0, half)}, -1);
    at::Tensor ref = q * c + rotated_half * s;
    std::vector<float> qf = floats(q), cs = floats(at::cat({c.narrow(0, 0, half), s.narrow(0, 0, half)}));
    kernels::raw::rotate_heads_bf16(qf.data(), heads, hd, cs.data());
    EXPECT_TRUE(tensor(qf, {1, heads, 1, hd}).equal(ref.to(at::kFloat))) << "head_dim " << hd;
  }
}

TEST(KernelsBf16, DecodeAttentionMatchesEagerInBf16WithGqaAndPadding) {
  KernelSettings restore;
  c10::InferenceMode guard;
  const AttentionFunction& eager = attention_function("eager");
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    // 6 heads x d x t covers libtorch 1.13's three ways of summing a bf16 bmm: d·t < 400 (naive, all in bf16),
    // 6·d·t > 4096 (oneDNN, float32), and between (gemm: q·kᵀ in float32, p·v in bf16).
    for (int64_t t : {1, 7, 40}) {
      for (int64_t d : {8, 24, 64}) {
        const int64_t hq = 6, hk = 2, cap = t + 3;
        // Keys/values as the cache hands them out: views of the filled part of bigger bf16 buffers.
        at::Tensor kbuf = at::randn({1, hk, cap, d}).to(at::kBFloat16);
        at::Tensor vbuf = at::randn({1, hk, cap, d}).to(at::kBFloat16);
        at::Tensor k = kbuf.narrow(2, 0, t), v = vbuf.narrow(2, 0, t);
        at::Tensor q = (at::randn({1, hq, 1, d}) * 2).to(at::kBFloat16);
        at::Tensor mask2d = at::ones({1, t}, at::kLong);
        if (t > 2) mask2d[0][0] = 0, mask2d[0][2] = 0;
        AttentionArgs args;
        args.scaling = 1.0 / std::sqrt(static_cast<double>(d));
        args.scale_divisor = std::sqrt(static_cast<double>(d));  // LlamaAttention: / math.sqrt(head_dim)
        at::Tensor kr = k.repeat_interleave(hq / hk, 1), vr = v.repeat_interleave(hq / hk, 1);
        float divisor = static_cast<float>(args.scale_divisor);
        kernels::raw::round_bf16(&divisor, 1);
        for (bool with_mask : {false, true}) {
          // The module path's bf16 causal mask: 0 or bf16's lowest.
          at::Tensor mask = at::zeros({1, 1, 1, t}).masked_fill_(mask2d.eq(0).view({1, 1, 1, t}),
                                                                 -3.3895313892515355e+38).to(at::kBFloat16);
          at::Tensor ref = eager(q, kr, vr, with_mask ? mask : at::Tensor(), args).first;  // [1, H, 1, D]
          const std::vector<float> qf = floats(q);
          std::vector<float> out(static_cast<size_t>(hq * d));
          at::Tensor fmask = kernels::decode_mask(mask2d);
          kernels::raw::decode_attention_bf16(
              qf.data(), hq, hk, d, reinterpret_cast<const uint16_t*>(k.data_ptr<at::BFloat16>()), k.stride(1),
              k.stride(2), reinterpret_cast<const uint16_t*>(v.data_ptr<at::BFloat16>()), v.stride(1), v.stride(2), t,
              with_mask ? fmask.data_ptr<float>() : nullptr, 1, divisor, out.data());
          // Rounded at the same points and summed as torch 1.13 sums (bit-exact here; exp is libm's, not Sleef's).
          // An output that the p·v sum cancels down to a small fraction of the largest one shows the noise of its
          // terms (float32 summation order: oneDNN blocks the sum, the kernel goes in order; or a probability one
          // bf16 ulp apart, libm's exp vs Sleef's) as several of its own bf16 ulps: about 3 % of random inputs (the
          // default generator is seeded at random) did. Differences under half a bf16 ulp of the largest output are
          // that noise; a 1-ulp difference at the outputs' own scale still counts.
          const double largest = ref.abs().max().to(at::kDouble).item<double>();
          const double noise = std::ldexp(1.0, std::ilogb(largest > 0 ? largest : 1.0) - 7) / 2;
          Mismatch m = compare_bf16(tensor(out, {1, hq, 1, d}), ref, noise);
          EXPECT_LE(m.max_ulps, 1.0) << "t " << t << " d " << d << " mask " << with_mask;
          EXPECT_LE(m.count, hq * d / 50 + 1) << "t " << t << " d " << d << " mask " << with_mask;
        }
      }
    }
  }
}

namespace {

std::shared_ptr<PreTrainedModel> load_bf16(const std::string& dir) {
  FromPretrainedOptions options;
  options.dtype = "bfloat16";
  auto model = AutoModelForCausalLM::from_pretrained(dir, options);
  EXPECT_EQ(model->get_input_embeddings()->weight.scalar_type(), at::kBFloat16) << dir;
  return model;
}

// A small GQA Llama with q/k/v/o biases (attention_bias), randomly initialised, in bf16.
std::shared_ptr<PreTrainedModel> biased_gqa_model() {
  auto config = std::make_shared<LlamaConfig>();
  config->vocab_size = 90;
  config->hidden_size = 48;
  config->intermediate_size = 70;
  config->num_hidden_layers = 2;
  config->num_attention_heads = 4;
  config->num_key_value_heads = 2;
  config->attention_bias = true;
  config->max_position_embeddings = 128;
  at::manual_seed(7);
  auto model = model_from_config(config, "LlamaForCausalLM");
  for (auto& p : model->parameters()) {
    at::NoGradGuard no_grad;
    if (p.dim() == 1) p.normal_(0.0, 0.5);  // biases and norm weights away from 0 / 1
  }
  model->to(at::kBFloat16);
  model->eval();
  return model;
}

// Greedy decoding by hand: a prompt forward, then `steps` one-token forwards over the cache. `module_path` asks for
// hidden states, which keeps the layer-by-layer module path (kernels on: the same bf16 GEMV); otherwise the fused
// step runs. With `left_pad`, the 2-D attention mask starts with two zeros. Returns the tokens and per-step logits.
std::pair<std::vector<int64_t>, std::vector<at::Tensor>> greedy(PreTrainedModel& model, const at::Tensor& prompt,
                                                               int64_t steps, bool module_path, bool left_pad) {
  c10::InferenceMode guard;
  auto cache = std::make_shared<DynamicCache>();
  at::Tensor mask = at::ones({1, prompt.size(1)}, at::kLong);
  if (left_pad) mask.narrow(1, 0, 2).zero_();
  ModelInputs in;
  in.input_ids = prompt;
  in.past_key_values = cache;
  in.use_cache = true;
  in.attention_mask = mask;
  ModelOutput out = model.forward(in);
  std::vector<int64_t> tokens;
  std::vector<at::Tensor> logits;
  for (int64_t i = 0; i < steps; ++i) {
    at::Tensor last = out.logits.select(1, out.logits.size(1) - 1);  // [1, V]
    logits.push_back(last.to(at::kFloat).clone());
    const int64_t next = last.argmax(-1).item<int64_t>();
    tokens.push_back(next);
    mask = at::cat({mask, at::ones({1, 1}, at::kLong)}, 1);
    ModelInputs step;
    step.input_ids = at::full({1, 1}, next, at::kLong);
    step.past_key_values = cache;
    step.use_cache = true;
    step.attention_mask = mask;
    if (module_path) step.output_hidden_states = true;
    out = model.forward(step);
  }
  return {tokens, logits};
}

void expect_fused_matches_module_path(PreTrainedModel& model, const std::string& what, int64_t steps) {
  KernelSettings restore;
  kernels::set_enabled(true);
  const int64_t vocab = model.get_input_embeddings()->num_embeddings;
  at::manual_seed(1);
  at::Tensor prompt = at::randint(3, vocab, {1, 6}, at::kLong);
  for (bool left_pad : {false, true}) {
    auto [module_tokens, module_logits] = greedy(model, prompt, steps, true, left_pad);
    for (int threads : {1, 2}) {
      at::set_num_threads(threads);
      kernels::set_min_parallel_bytes(threads == 1 ? (1 << 20) : 0);
      auto [tokens, logits] = greedy(model, prompt, steps, false, left_pad);
      EXPECT_EQ(tokens, module_tokens) << what << " threads " << threads << " left_pad " << left_pad;
      double worst = 0;
      for (size_t i = 0; i < logits.size(); ++i) worst = std::max(worst, rel_err(logits[i], module_logits[i]));
      // Same GEMV kernel and the same bf16 rounding points (bit-exact on this machine; libm's exp is not Sleef's).
      EXPECT_LT(worst, 5e-3) << what << " threads " << threads << " left_pad " << left_pad;
    }
  }
}

// generate() with the kernels on (fused bf16 step) against the plain ATen path (kernels off: oneDNN bf16 linear).
void expect_generate_matches_plain(PreTrainedModel& model, const std::string& what, int64_t new_tokens) {
  KernelSettings restore;
  const int64_t vocab = model.get_input_embeddings()->num_embeddings;
  at::manual_seed(2);
  at::Tensor ids = at::randint(3, vocab, {1, 5}, at::kLong);
  GenerationConfig config = greedy_logits_config(model, new_tokens);
  kernels::set_enabled(false);
  GenerateOutput plain = generate(model, ids, config);
  kernels::set_enabled(true);
  GenerateOutput fast = generate(model, ids, config);
  EXPECT_TRUE(fast.sequences.equal(plain.sequences)) << what << "\n" << fast.sequences << "\n" << plain.sequences;
  ASSERT_EQ(fast.logits.size(), plain.logits.size());
  double worst = 0;
  for (size_t i = 0; i < fast.logits.size(); ++i) worst = std::max(worst, rel_err(fast.logits[i], plain.logits[i]));
  EXPECT_LT(worst, 0.05) << what;
}

}  // namespace

TEST(KernelsBf16Decode, FusedStepMatchesModulePathOnEmbeddedModel) {
  auto model = load_bf16(source_dir() + "/models/stories260K");
  expect_fused_matches_module_path(*model, "stories260K", 32);
  expect_generate_matches_plain(*model, "stories260K", 32);
}

TEST(KernelsBf16Decode, FusedStepMatchesModulePathOnFixtureModels) {
  std::vector<std::string> dirs;
  for (const auto& prefix : {"llama-for-causal-lm"})
    for (const auto& dir : fixture_cases(prefix)) dirs.push_back(dir + "/model");
  ASSERT_GE(dirs.size(), 2u);  // MHA and GQA with linear rope scaling
  for (const auto& dir : dirs) {
    auto model = load_bf16(dir);
    expect_fused_matches_module_path(*model, dir, 16);
    expect_generate_matches_plain(*model, dir, 16);
  }
}

TEST(KernelsBf16Decode, FusedStepMatchesModulePathWithAttentionBias) {
  auto model = biased_gqa_model();
  expect_fused_matches_module_path(*model, "biased gqa", 16);
  expect_generate_matches_plain(*model, "biased gqa", 16);
}

TEST(KernelsBf16, HugePageAdviceKeepsEveryValue) {
  // The advice changes only the page size: the weight, and whatever shares its 2 MB pages, keep their values.
  std::vector<at::Tensor> tensors = {at::randn({3, 1000, 700}).to(at::kBFloat16), at::randn({700, 900}),
                                     at::randn({10, 10})};
  std::vector<at::Tensor> copies;
  for (const auto& t : tensors) copies.push_back(t.clone());
  for (int twice = 0; twice < 2; ++twice)
    for (const auto& t : tensors) kernels::prefer_huge_pages(t);
  kernels::prefer_huge_pages(at::Tensor());
  for (size_t i = 0; i < tensors.size(); ++i) EXPECT_TRUE(tensors[i].equal(copies[i])) << i;
}

// The float32 fused step with weight-only int8 / int4 Linears (kernels::raw::gemv_q8 / gemv_q4, what the module path's
// quantized_linear_forward runs for one row) against the module path, and generate() against the plain path (kernels
// off: the same quantized kernels under libtorch's norms and attention).
TEST(KernelsQuantDecode, FusedStepMatchesModulePathForInt8AndInt4) {
  for (const auto& [method, group] : std::vector<std::pair<std::string, int>>{{"tfcpp_int8", 0}, {"tfcpp_int4", 32}}) {
    auto model = AutoModelForCausalLM::from_pretrained(source_dir() + "/models/stories260K");
    model->eval();
    json config = {{"quant_method", method}, {"modules_to_not_convert", json::array()}};
    if (group) config["group_size"] = group;
    ASSERT_GT(quantize_model(*model, config), 0);
    expect_fused_matches_module_path(*model, "stories260K " + method, 24);
    expect_generate_matches_plain(*model, "stories260K " + method, 24);
  }
}

// Python transformers 4.40.2 in bfloat16 on the embedded model (tests/fixtures/make_bf16_reference.py): the greedy
// sequence and every step's logits, through the fused bf16 step (kernels on) and the module path's eager attention
// (kernels off). Both divide the bf16 scores by sqrt(head_dim) as LlamaAttention does (head_dim 8: multiplying by
// 1/sqrt(8) instead moved logits by up to 0.33 from the first step on).
TEST(KernelsBf16Decode, Stories260KMatchesTransformers) {
  const std::string dir = source_dir() + "/tests/fixtures/bf16/";
  const json expected = read_json(dir + "stories260K_greedy.json");
  const auto saved = load_torch_bin(dir + "stories260K_greedy.bin");
  ASSERT_EQ(saved.size(), 1u);
  const at::Tensor expected_logits = saved[0].second;  // "logits" [steps, vocab]
  auto model = load_bf16(source_dir() + "/models/stories260K");
  const std::vector<int64_t> prompt = expected["input_ids"].get<std::vector<int64_t>>();
  GenerationConfig config = model->generation_config;
  config.max_new_tokens = expected["max_new_tokens"].get<int64_t>();
  config.do_sample = false;
  config.num_beams = 1;
  config.output_logits = true;
  config.return_dict_in_generate = true;
  KernelSettings restore;
  for (bool kernels_on : {true, false}) {
    kernels::set_enabled(kernels_on);
    GenerateOutput out = generate(*model, at::tensor(prompt, at::kLong).view({1, -1}), config);
    const at::Tensor sequence = out.sequences[0].contiguous();
    EXPECT_EQ(std::vector<int64_t>(sequence.data_ptr<int64_t>(), sequence.data_ptr<int64_t>() + sequence.numel()),
              expected["sequences"].get<std::vector<int64_t>>())
        << "kernels " << kernels_on;
    ASSERT_EQ(static_cast<int64_t>(out.logits.size()), expected_logits.size(0));
    // Kernels off: the same ATen ops as Python (bit for bit on the machine that made the reference; another CPU's
    // oneDNN kernel may sum in another order). Kernels on: the bf16 GEMV sums in another order than oneDNN's bf16
    // linear. Either way a logit may move by a bf16 ulp or two (0.0625-0.125 at these magnitudes); multiplying the
    // scores by 1/sqrt(head_dim) instead of dividing moved them by 0.39-0.41 from the second step on.
    const double atol = 0.25;
    for (size_t i = 0; i < out.logits.size(); ++i)
      EXPECT_TRUE(tensors_close("kernels " + std::to_string(kernels_on) + " step " + std::to_string(i),
                                out.logits[i][0].to(at::kFloat), expected_logits[static_cast<int64_t>(i)], atol, 0));
  }
}
