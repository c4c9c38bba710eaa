// Fused inference kernels (kernels.h) against their ATen references (odd sizes, vector tails, 1 and 2 threads), and
// the fast Llama decode path against the plain one on the embedded model and fixture models.
#include "test_util.h"
#include "kernel_test_util.h"

#include "transformers/attention.h"
#include "transformers/auto.h"
#include "transformers/generation.h"
#include "transformers/kernels.h"
#include "transformers/models/llama.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <limits>

using namespace transformers;
using namespace tfcpp_test;

TEST(KernelsGemv, Float32MatchesLinearAcrossShapesAndThreads) {
  KernelSettings restore;
  c10::InferenceMode guard;
  kernels::set_enabled(true);
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    kernels::set_min_parallel_bytes(threads == 1 ? (1 << 20) : 0);  // 2 threads: split even tiny matrices
    for (int64_t in : {1, 7, 16, 17, 33, 64, 257}) {
      for (int64_t out : {1, 3, 4, 5, 64, 131}) {
        at::Tensor w = at::randn({out, in}), b = at::randn({out}), x = at::randn({1, 1, in});
        at::Tensor y = kernels::gemv(x, w, b);
        ASSERT_TRUE(y.defined());
        EXPECT_EQ(y.sizes(), (std::vector<int64_t>{1, 1, out}));
        EXPECT_LT(rel_err(y, at::linear(x, w, b)), 1e-5) << in << "x" << out << " threads " << threads;
        EXPECT_LT(rel_err(kernels::gemv(x.view({in}), w, at::Tensor()), at::mv(w, x.view({in}))), 1e-5);
      }
    }
  }
}

TEST(KernelsGemv, Bfloat16AndFloat16Weights) {
  KernelSettings restore;
  c10::InferenceMode guard;
  kernels::set_enabled(true);
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    kernels::set_min_parallel_bytes(threads == 1 ? (1 << 20) : 0);
    for (int64_t in : {5, 31, 32, 33, 100, 768}) {
      const int64_t out = 37;
      at::Tensor w = at::randn({out, in}), x = at::randn({1, in}), b = at::randn({out});
      // bf16 x bf16 with float32 accumulation: the exact products of the rounded values, rounded once to bf16.
      at::Tensor wb = w.to(at::kBFloat16), xb = x.to(at::kBFloat16);
      at::Tensor yb = kernels::gemv(xb, wb, b.to(at::kBFloat16));
      ASSERT_TRUE(yb.defined());
      EXPECT_EQ(yb.scalar_type(), at::kBFloat16);
      at::Tensor ref = at::linear(xb.to(at::kFloat), wb.to(at::kFloat), b.to(at::kBFloat16).to(at::kFloat));
      EXPECT_LT(rel_err(yb, ref), 1.0 / 128) << in << " threads " << threads;
      // fp16 weights, fp32 activations: converted in the kernel.
      at::Tensor wh = w.to(at::kHalf);
      at::Tensor yh = kernels::gemv(x, wh, b);
      ASSERT_TRUE(yh.defined());
      EXPECT_LT(rel_err(yh, at::linear(x, wh.to(at::kFloat), b)), 1e-5) << in;
    }
  }
}

TEST(KernelsGemv, DeclinesWhatItDoesNotCover) {
  KernelSettings restore;
  c10::InferenceMode guard;
  kernels::set_enabled(true);
  at::Tensor w = at::randn({8, 16});
  EXPECT_FALSE(kernels::gemv(at::randn({2, 16}), w, {}).defined());             // two rows: GEMM, not GEMV
  EXPECT_FALSE(kernels::gemv(at::randn({1, 16}).to(at::kDouble), w, {}).defined());
  EXPECT_FALSE(kernels::gemv(at::randn({1, 16}), w.t().contiguous().t(), {}).defined());  // strided weight
  kernels::set_enabled(false);
  EXPECT_FALSE(kernels::gemv(at::randn({1, 16}), w, {}).defined());
}

TEST(KernelsGemv, NotUsedWhenAutogradIsRecording) {
  KernelSettings restore;
  kernels::set_enabled(true);
  at::Tensor w = at::randn({8, 16}).requires_grad_(true);
  EXPECT_FALSE(kernels::usable(w));
  EXPECT_FALSE(kernels::gemv(at::randn({1, 16}), w, {}).defined());
}

TEST(KernelsNorm, RmsNormAndSiluMulMatchAten) {
  KernelSettings restore;
  c10::InferenceMode guard;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (int64_t d : {1, 8, 15, 16, 17, 64, 768}) {
      at::Tensor x = at::randn({3, 5, d}) * 3, w = at::randn({d});
      const double eps = 1e-5;
      at::Tensor ref = w * (x * at::rsqrt(x.pow(2).mean(-1, true) + eps));
      EXPECT_LT(rel_err(kernels::rms_norm(x, w, eps), ref), 1e-5) << d;
      at::Tensor g = at::randn({2, d}) * 4, u = at::randn({2, d});
      EXPECT_LT(rel_err(kernels::silu_mul(g, u), at::silu(g) * u), 1e-5) << d;
    }
  }
  // Elementwise within a few ulp of ATen's silu over the whole range (the AVX-512 exp), and its limits: large |g|,
  // ±0, ±inf (silu(-inf) = -inf / inf = NaN, as ATen) and NaN.
  at::Tensor g = at::cat({at::linspace(-110, 110, 4001), at::tensor({0.0f, -0.0f, 1e-30f, -1e-30f, 88.8f, -88.8f})});
  at::Tensor u = at::ones_like(g);
  at::Tensor ref = at::silu(g), got = kernels::silu_mul(g, u);
  EXPECT_LE((got - ref).abs().div(ref.abs().clamp_min(1e-30)).max().item<double>(), 1e-6);
  at::Tensor special = at::tensor({INFINITY, -INFINITY, NAN});
  at::Tensor out = kernels::silu_mul(special, at::ones_like(special));
  EXPECT_EQ(out[0].item<float>(), INFINITY);
  EXPECT_TRUE(std::isnan(out[1].item<float>()));
  EXPECT_TRUE(std::isnan(out[2].item<float>()));
  EXPECT_TRUE(std::isnan(at::silu(special)[1].item<float>())) << "ATen agrees on silu(-inf)";
}

TEST(KernelsRotary, MatchesRotateHalfFormula) {
  KernelSettings restore;
  c10::InferenceMode guard;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (double scale : {1.0, 4.0}) {
      const int64_t b = 2, t = 5, hq = 4, hk = 2, d = 8;
      at::Tensor q = at::randn({b, t, hq * d}), k = at::randn({b, t, hk * d});
      at::Tensor inv = 1.0 / at::pow(10000.0, at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d));
      at::Tensor pos = at::tensor({3, 4, 5, 6, 7, 0, 1, 1, 2, 9}, at::kLong).view({b, t});
      at::Tensor freqs = (pos.to(at::kFloat) / scale).unsqueeze(-1) * inv;  // [B, T, D/2]
      at::Tensor emb = at::cat({freqs, freqs}, -1), cos = emb.cos().unsqueeze(2), sin = emb.sin().unsqueeze(2);
      auto ref = [&](const at::Tensor& x, int64_t h) {
        at::Tensor v = x.view({b, t, h, d});
        at::Tensor rot = at::cat({-v.narrow(-1, d / 2, d / 2), v.narrow(-1, 0, d / 2)}, -1);
        return (v * cos + rot * sin).view({b, t, h * d});
      };
      at::Tensor q_ref = ref(q, hq), k_ref = ref(k, hk);
      kernels::rotary_(q, k, pos, inv, d, scale);
      EXPECT_LT(rel_err(q, q_ref), 1e-5);
      EXPECT_LT(rel_err(k, k_ref), 1e-5);
      // [1, T] positions broadcast over the batch.
      at::Tensor q2 = at::randn({b, t, hq * d}), k2 = at::randn({b, t, hk * d});
      at::Tensor pos1 = at::arange(t, at::kLong).unsqueeze(0);
      at::Tensor q2_ref = q2.clone(), k2_ref = k2.clone();
      kernels::rotary_(q2, k2, pos1, inv, d, scale);
      kernels::rotary_(q2_ref, k2_ref, pos1.expand({b, t}).contiguous(), inv, d, scale);
      EXPECT_TRUE(q2.equal(q2_ref));
      EXPECT_TRUE(k2.equal(k2_ref));
    }
  }
}

TEST(KernelsAttention, DecodeAttentionMatchesEagerWithGqaAndPadding) {
  KernelSettings restore;
  c10::InferenceMode guard;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (int64_t t : {1, 7, 33}) {
      for (int64_t d : {5, 8, 64}) {
        const int64_t b = 2, hq = 6, hk = 2, cap = t + 4;
        // Keys/values as a cache hands them out: views of the filled part of bigger buffers.
        at::Tensor kbuf = at::randn({b, hk, cap, d}), vbuf = at::randn({b, hk, cap, d});
        at::Tensor k = kbuf.narrow(2, 0, t), v = vbuf.narrow(2, 0, t);
        at::Tensor q = at::randn({b, 1, hq, d}).transpose(1, 2);  // [B, H, 1, D], strided as the attention makes it
        at::Tensor mask2d = at::ones({b, t}, at::kLong);
        if (t > 2) mask2d[1][0] = 0, mask2d[1][2] = 0;
        at::Tensor mask = kernels::decode_mask(mask2d);
        at::Tensor expected_mask = at::zeros({b, 1, 1, t}).masked_fill_(
            mask2d.eq(0).view({b, 1, 1, t}), std::numeric_limits<float>::lowest());
        EXPECT_TRUE(mask.equal(expected_mask));
        const double scale = 1.0 / std::sqrt(static_cast<double>(d));
        at::Tensor kr = k.unsqueeze(2).expand({b, hk, hq / hk, t, d}).reshape({b, hq, t, d});
        at::Tensor vr = v.unsqueeze(2).expand({b, hk, hq / hk, t, d}).reshape({b, hq, t, d});
        for (bool with_mask : {false, true}) {
          at::Tensor scores = at::matmul(q, kr.transpose(2, 3)).mul_(scale);
          if (with_mask) scores = scores + expected_mask;
          at::Tensor ref = at::matmul(at::softmax(scores, -1), vr).transpose(1, 2).reshape({b, 1, hq * d});
          at::Tensor out = kernels::decode_attention(q, k, v, with_mask ? mask : at::Tensor(), scale);
          EXPECT_LT(rel_err(out, ref), 1e-5) << "t " << t << " d " << d << " mask " << with_mask;
        }
      }
    }
  }
}

// A prompt: every query row over the keys its mask row leaves visible, against eager attention (matmul, softmax over
// all keys, matmul) with transformers' causal mask (float32 lowest above the diagonal, a cache offset, left padding
// that masks whole rows: eager's softmax is uniform there, and so must the kernel be).
TEST(KernelsAttention, PrefillAttentionMatchesEagerWithCausalPaddedAndFullyMaskedRows) {
  KernelSettings restore;
  c10::InferenceMode guard;
  const float lowest = std::numeric_limits<float>::lowest();
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    // Query blocks of 16 and key blocks of 64 (the blocked kernel), with tails; past 70 puts whole key blocks
    // before the first query, 150 queries put masked blocks after the diagonal.
    for (int64_t tq : {2, 9, 40, 150}) {
      for (int64_t d : {5, 8, 16, 24, 64}) {
        for (int64_t past : {0, 3, 70}) {
          const int64_t b = 2, hq = 4, hk = 2, t = past + tq;
          at::Tensor k = at::randn({b, hk, t + 5, d}).narrow(2, 0, t), v = at::randn({b, hk, t + 5, d}).narrow(2, 0, t);
          at::Tensor q = at::randn({b, tq, hq, d}).transpose(1, 2);  // [B, H, Tq, D] as the attention makes it
          // Causal (query i sees keys <= past + i), then row 1 left-padded over its first past + 2 keys.
          at::Tensor mask = at::zeros({b, 1, tq, t});
          for (int64_t i = 0; i < tq; ++i)
            for (int64_t j = past + i + 1; j < t; ++j) mask[0][0][i][j] = lowest, mask[1][0][i][j] = lowest;
          for (int64_t i = 0; i < tq; ++i)
            for (int64_t j = 0; j < std::min(t, past + 2); ++j) mask[1][0][i][j] = lowest;
          const double scale = 1.0 / std::sqrt(static_cast<double>(d));
          at::Tensor kr = k.unsqueeze(2).expand({b, hk, hq / hk, t, d}).reshape({b, hq, t, d});
          at::Tensor vr = v.unsqueeze(2).expand({b, hk, hq / hk, t, d}).reshape({b, hq, t, d});
          for (bool with_mask : {false, true}) {
            at::Tensor scores = at::matmul(q, kr.transpose(2, 3)).mul_(scale);
            if (with_mask) scores = scores + mask;
            at::Tensor ref = at::matmul(at::softmax(scores, -1), vr).transpose(1, 2).reshape({b, tq, hq * d});
            at::Tensor out = kernels::attention(q, k, v, with_mask ? mask : at::Tensor(), scale);
            EXPECT_LT(rel_err(out, ref), 1e-5) << "tq " << tq << " d " << d << " past " << past << " mask " << with_mask;
          }
          // Row 1's first query (padded: every key masked when past = 0): eager's uniform average of all the values.
          if (past == 0) {
            at::Tensor out = kernels::attention(q, k, v, mask, scale).view({b, tq, hq, d});
            EXPECT_LT(rel_err(out[1][0][0], vr[1][0].mean(0)), 1e-5) << "tq " << tq << " d " << d;
          }
          // A mask broadcast over the batch ([1, 1, Tq, Tk], expanded).
          at::Tensor shared = mask.narrow(0, 0, 1);
          at::Tensor ref = at::matmul(at::softmax(at::matmul(q, kr.transpose(2, 3)).mul_(scale) + shared, -1), vr)
                               .transpose(1, 2).reshape({b, tq, hq * d});
          EXPECT_LT(rel_err(kernels::attention(q, k, v, shared, scale), ref), 1e-5);
        }
      }
    }
  }
  // Peaked and flat softmaxes (scores up to a few hundred apart, and all equal): the kernel's exp and online rescaling.
  for (double amplitude : {0.0, 1.0, 30.0}) {
    at::Tensor q = at::randn({1, 2, 37, 32}).mul_(amplitude), k = at::randn({1, 2, 90, 32}), v = at::randn({1, 2, 90, 32});
    at::Tensor mask = at::zeros({1, 1, 37, 90});
    for (int64_t i = 0; i < 37; ++i)
      for (int64_t j = 53 + i + 1; j < 90; ++j) mask[0][0][i][j] = lowest;
    at::Tensor ref = at::matmul(at::softmax(at::matmul(q, k.transpose(2, 3)).mul_(0.25) + mask, -1), v)
                         .transpose(1, 2).reshape({1, 37, 64});
    EXPECT_LT(rel_err(kernels::attention(q, k, v, mask, 0.25), ref), 1e-5) << "amplitude " << amplitude;
  }
  EXPECT_THROW(kernels::attention(at::randn({1, 3, 4, 8}), at::randn({1, 2, 5, 8}), at::randn({1, 2, 5, 8}), {}, 1.0),
               c10::Error) << "3 query heads over 2 key/value heads";
  EXPECT_THROW(kernels::attention(at::randn({1, 2, 4, 8}), at::randn({1, 2, 5, 8}), at::randn({1, 2, 5, 8}),
                                  at::zeros({1, 1, 3, 5}), 1.0),
               c10::Error) << "mask rows != queries";
}

namespace {

// Greedy generation with the kernels on and off: the same ids, and per-step logits equal up to float32 rounding.
// Each run gets a freshly loaded model: dynamic rope keeps the inv_freq of the longest sequence it saw (as
// transformers does), so a second run on the same module would start from different state.
void expect_fast_path_matches_plain(const std::string& dir, int64_t new_tokens, bool with_padding) {
  KernelSettings restore;
  auto model = AutoModelForCausalLM::from_pretrained(dir);
  const int64_t vocab = model->get_input_embeddings()->num_embeddings;
  at::Tensor ids = at::randint(3, vocab, {with_padding ? 2 : 1, 6}, at::kLong);
  ModelInputs kwargs;
  if (with_padding) {
    kwargs.attention_mask = at::ones({2, 6}, at::kLong);
    kwargs.attention_mask[1][0] = 0;
    kwargs.attention_mask[1][1] = 0;
  }
  GenerationConfig config = greedy_logits_config(*model, new_tokens);
  kernels::set_enabled(false);
  GenerateOutput plain = generate(*model, ids, config, kwargs);
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    kernels::set_enabled(true);
    kernels::set_min_parallel_bytes(threads == 1 ? (1 << 20) : 0);
    model = AutoModelForCausalLM::from_pretrained(dir);
    GenerateOutput fast = generate(*model, ids, config, kwargs);
    EXPECT_TRUE(fast.sequences.equal(plain.sequences)) << dir << " threads " << threads;
    ASSERT_EQ(fast.logits.size(), plain.logits.size());
    for (size_t i = 0; i < fast.logits.size(); ++i)
      EXPECT_LT(rel_err(fast.logits[i], plain.logits[i]), 2e-5) << dir << " step " << i;
  }
}

}  // namespace

// transformers' flash_attention_2 on CPU: the blocked kernel (kernels on) against the attention registry's tensor
// tiles (kernels off), causal bottom-right aligned with a cache offset, left padding that hides every key of some
// rows (zeros in both), grouped-query heads repeated as the model passes them.
TEST(KernelsAttention, FlashAttentionKernelMatchesTheTiledPath) {
  KernelSettings restore;
  c10::InferenceMode guard;
  const AttentionFunction& flash = attention_function("flash_attention_2");
  for (int threads : {1, 2})
    for (int64_t tq : {1, 5, 37, 130})
      for (int64_t past : {0, 70}) {
        at::set_num_threads(threads);
        const int64_t b = 2, h = 4, d = 24, tk = past + tq;
        at::Tensor q = at::randn({b, tq, h, d}).transpose(1, 2), k = at::randn({b, h, tk, d}), v = at::randn({b, h, tk, d});
        at::Tensor mask = at::ones({b, tk + 3}, at::kLong);  // longer than the keys: the last Tk columns count
        mask.narrow(1, 3, std::min<int64_t>(tk, past + 2)).select(0, 1).zero_();
        AttentionArgs args;
        args.scaling = 1.0 / std::sqrt(static_cast<double>(d));
        args.is_causal = true;
        for (bool with_mask : {false, true}) {
          kernels::set_enabled(false);
          at::Tensor ref = flash(q, k, v, with_mask ? mask : at::Tensor(), args).first;
          kernels::set_enabled(true);
          at::Tensor out = flash(q, k, v, with_mask ? mask : at::Tensor(), args).first;
          ASSERT_EQ(out.sizes(), ref.sizes());
          EXPECT_LT(rel_err(out, ref), 1e-5) << "tq " << tq << " past " << past << " mask " << with_mask;
          EXPECT_EQ(at::isnan(out).sum().item<int64_t>(), 0);
        }
      }
}

TEST(KernelsDecode, FastPathMatchesPlainOnEmbeddedModel) {
  expect_fast_path_matches_plain(source_dir() + "/models/stories260K", 24, false);
  expect_fast_path_matches_plain(source_dir() + "/models/stories260K", 8, true);
}

TEST(KernelsDecode, FastPathMatchesPlainOnFixtureModels) {
  std::vector<std::string> dirs;
  for (const auto& prefix : {"llama-for-causal-lm", "llama-gqa-linear-rope", "llama-mqa-tied"})
    for (const auto& dir : fixture_cases(prefix)) dirs.push_back(dir + "/model");
  ASSERT_GE(dirs.size(), 2u);
  for (const auto& dir : dirs) {
    expect_fast_path_matches_plain(dir, 8, false);
    expect_fast_path_matches_plain(dir, 6, true);
  }
}

// part_of: contiguous shares in whole multiples of the alignment, covering every row once, the last thread taking
// the rest; run_team: every thread's writes before team_barrier() are seen by every thread after it.
TEST(KernelsTeam, PartsCoverEveryRowOnceAndBarriersOrderPhases) {
  for (int64_t n : {0, 1, 15, 16, 17, 768, 1000, 2048, 32000})
    for (int threads : {1, 2, 3, 4, 7})
      for (int64_t align : {1, 4, 16}) {
        int64_t next = 0;
        for (int tid = 0; tid < threads; ++tid) {
          const kernels::Part p = kernels::part_of(n, tid, threads, align);
          ASSERT_EQ(p.begin, next) << n << " " << threads << " " << align << " tid " << tid;
          ASSERT_GE(p.end, p.begin);
          if (tid + 1 < threads) {
            EXPECT_TRUE(p.size() % align == 0 || p.end == n);
          }
          next = p.end;
        }
        EXPECT_EQ(next, n) << n << " " << threads << " " << align;
      }
  KernelSettings restore;
  for (int threads : {1, 2, 4}) {
    std::vector<int64_t> a(4096, 0), b(4096, 0);
    int seen = 0;
    kernels::run_team(threads, [&](int tid, int team) {
      if (tid == 0) seen = team;
      const kernels::Part p = kernels::part_of(4096, tid, team);
      for (int64_t i = p.begin; i < p.end; ++i) a[i] = i;
      kernels::team_barrier();
      // Reads rows other threads wrote before the barrier.
      for (int64_t i = p.begin; i < p.end; ++i) b[i] = a[4095 - i] + 1;
    });
    EXPECT_GE(seen, 1);
    EXPECT_LE(seen, threads);
    for (int64_t i = 0; i < 4096; ++i) ASSERT_EQ(b[i], 4096 - i) << "threads " << threads;
  }
}

// An error inside the fused decode step's parallel region (the cache write on the calling thread) comes out of
// forward() as the cache's exception on every thread count, and the next step runs normally (no thread left behind
// at a barrier).
TEST(KernelsDecode, ErrorInsideTheFusedStepPropagatesAndLeavesNoThreadBehind) {
  KernelSettings restore;
  kernels::set_enabled(true);
  auto model = AutoModelForCausalLM::from_pretrained(source_dir() + "/models/stories260K");
  model->eval();
  c10::InferenceMode guard;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    kernels::set_min_parallel_bytes(0);  // the team path even for the 260K model's small layers
    auto cache = std::make_shared<StaticCache>(4);
    ModelInputs prompt;
    prompt.input_ids = at::tensor({1, 5, 9}, at::kLong).reshape({1, 3});
    prompt.past_key_values = cache;
    prompt.use_cache = true;
    model->forward(prompt);
    auto step = [&](int64_t token) {
      ModelInputs in;
      in.input_ids = at::full({1, 1}, token, at::kLong);
      in.past_key_values = cache;
      in.use_cache = true;
      return model->forward(in);
    };
    step(7);  // position 3: the last slot
    EXPECT_THROW(step(8), GenerationError) << "threads " << threads;
    // A fresh cache decodes as before the error.
    cache = std::make_shared<StaticCache>(8);
    prompt.past_key_values = cache;
    model->forward(prompt);
    ModelOutput out = step(7);
    EXPECT_TRUE(at::isfinite(out.logits).all().item<bool>()) << "threads " << threads;
  }
}

TEST(KernelsDecode, LlamaLayersUseTheKernelsOnlyWhenUsable) {
  KernelSettings restore;
  kernels::set_enabled(true);
  LlamaRMSNorm norm(16, 1e-6);
  norm.weight.data().normal_();
  at::Tensor x = at::randn({1, 3, 16});
  at::Tensor plain;
  {
    kernels::set_enabled(false);
    at::NoGradGuard no_grad;
    plain = norm.forward(x);
  }
  kernels::set_enabled(true);
  {
    at::NoGradGuard no_grad;
    EXPECT_LT(rel_err(norm.forward(x), plain), 1e-6);
  }
  // With autograd recording the plain path runs and gradients flow to the weight.
  at::Tensor y = norm.forward(x);
  EXPECT_TRUE(y.requires_grad());
  y.sum().backward();
  EXPECT_TRUE(norm.weight.grad().defined());
}
