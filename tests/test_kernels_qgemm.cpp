// kernels::qgemm (int8 / int4 weight-only prompt GEMM with quantized activations) against a scalar reference of the
// same integer math, against the float product with the dequantized weight, across shapes with tails, threads, the
// scalar path, hostile inputs, and through nn::Linear's several-rows forward.
#include "test_util.h"

#include "transformers/kernels.h"
#include "transformers/nn.h"
#include "transformers/quantization.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <limits>
#include <sstream>

using namespace transformers;
using namespace tfcpp_test;

namespace {

constexpr int64_t kBlock = kernels::raw::kQBlock;

// Restores the thread count and qgemm's path.
struct QgemmSettings {
  int threads = at::get_num_threads();
  ~QgemmSettings() {
    at::set_num_threads(threads);
    kernels::set_qgemm_scalar(false);
  }
};

// A quantized weight: int8 codes [out, in] + scale [out], or packed int4 codes [out, ceil(in/2)] + scale/zero
// [out, groups].
struct QWeight {
  int bits = 8;
  int64_t out = 0, in = 0, group = 0;
  at::Tensor codes, scale, zero;
  const void* data() const { return codes.data_ptr(); }
  const uint8_t* zero_ptr() const { return zero.defined() ? zero.data_ptr<uint8_t>() : nullptr; }
};

QWeight random_weight(int bits, int64_t out, int64_t in, int64_t group) {
  QWeight w;
  w.bits = bits, w.out = out, w.in = in, w.group = group;
  if (bits == 8) {
    w.codes = at::randint(-127, 128, {out, in}, at::kChar);
    w.scale = at::rand({out}) * 0.01 + 1e-3;
  } else {
    const int64_t groups = (in + group - 1) / group;
    w.codes = pack_int4(at::randint(0, 16, {out, in}, at::kByte));
    w.scale = at::rand({out, groups}) * 0.02 + 1e-3;
    w.zero = at::randint(0, 16, {out, groups}, at::kByte);
  }
  return w;
}

// The contract of kernels.h, computed in double after the integer part: per row and block of 32, d = max|x| / 127,
// q = round(x / d) in [-127, 127], then y = s Σ_b d Σ w q (int8) or Σ_g s (Σ_b d Σ code q − z Σ_b d Σ q) (int4).
at::Tensor reference(const QWeight& w, const at::Tensor& x, const at::Tensor& bias) {
  const int64_t m = x.size(0), in = w.in, out = w.out, nb = (in + kBlock - 1) / kBlock;
  std::vector<int32_t> q(static_cast<size_t>(m * in));
  std::vector<double> d(static_cast<size_t>(m * nb));
  const float* xp = x.data_ptr<float>();
  for (int64_t t = 0; t < m; ++t)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t i0 = b * kBlock, i1 = std::min(in, i0 + kBlock);
      float amax = 0;
      for (int64_t i = i0; i < i1; ++i) amax = std::max(amax, std::fabs(xp[t * in + i]));
      const float db = amax / 127.0f;
      d[t * nb + b] = db;
      for (int64_t i = i0; i < i1; ++i)
        q[t * in + i] =
            db > 0 ? static_cast<int32_t>(std::min(127.0f, std::max(-127.0f, std::nearbyint(xp[t * in + i] / db))))
                   : 0;
    }
  at::Tensor y = at::zeros({m, out}, at::kDouble);
  auto ya = y.accessor<double, 2>();
  const float* scale = w.scale.data_ptr<float>();
  const int64_t group = w.bits == 8 ? nb * kBlock : w.group, groups = w.bits == 8 ? 1 : (in + group - 1) / group;
  std::vector<int32_t> code(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) {
      if (w.bits == 8) code[i] = w.codes.data_ptr<int8_t>()[o * in + i];
      else {
        const uint8_t byte = w.codes.data_ptr<uint8_t>()[o * w.codes.size(1) + i / 2];
        code[i] = i % 2 ? byte >> 4 : byte & 15;
      }
    }
    for (int64_t t = 0; t < m; ++t) {
      double acc = 0;
      for (int64_t g = 0; g < groups; ++g) {
        double dot = 0, xsum = 0;
        for (int64_t b = g * group / kBlock; b < std::min(nb, (g + 1) * group / kBlock); ++b) {
          int64_t s = 0, qs = 0;
          for (int64_t i = b * kBlock; i < std::min(in, (b + 1) * kBlock); ++i) {
            s += int64_t{code[i]} * q[t * in + i];
            qs += q[t * in + i];
          }
          dot += d[t * nb + b] * static_cast<double>(s);
          xsum += d[t * nb + b] * static_cast<double>(qs);
        }
        if (w.bits == 8) acc += dot * scale[o];
        else acc += scale[o * groups + g] * (dot - w.zero.data_ptr<uint8_t>()[o * groups + g] * xsum);
      }
      ya[t][o] = acc + (bias.defined() ? bias.data_ptr<float>()[o] : 0.0);
    }
  }
  return y.to(at::kFloat);
}

at::Tensor run_qgemm(const QWeight& w, const at::Tensor& x, const at::Tensor& bias) {
  at::Tensor y = at::full({x.size(0), w.out}, std::numeric_limits<float>::quiet_NaN());
  kernels::qgemm(w.bits, w.data(), w.scale.data_ptr<float>(), w.zero_ptr(), w.group, x.data_ptr<float>(),
                 y.data_ptr<float>(), bias.defined() ? bias.data_ptr<float>() : nullptr, x.size(0), w.out, w.in);
  return y;
}


std::string shape_name(const QWeight& w, int64_t m, bool bias) {
  std::ostringstream s;
  s << "int" << w.bits << " m " << m << " in " << w.in << " out " << w.out << " group " << w.group << " bias "
    << bias;
  return s.str();
}

// Every (m, in, out) with tails; int8 and int4 with groups 32 / 64 / 128 (partial last groups where in is not a
// multiple), bias on every other shape.
void check_against_reference(double tolerance) {
  torch::manual_seed(0);
  int n = 0;
  for (const auto& [bits, group] : std::vector<std::pair<int, int64_t>>{{8, 0}, {4, 32}, {4, 64}, {4, 128}})
    for (int64_t in : {4, 31, 33, 64, 100, 768})
      for (int64_t out : {1, 5, 16, 33, 256}) {
        const QWeight w = random_weight(bits, out, in, group);
        for (int64_t m : {1, 3, 16, 17, 37, 128}) {
          // The 768 x 256 x 128 shape once per weight kind keeps the suite fast.
          if (in == 768 && out == 256 && m != 128 && m != 37) continue;
          const bool with_bias = (n++ % 2) == 1;
          at::Tensor x = at::randn({m, in}), bias = with_bias ? at::randn({out}) : at::Tensor();
          at::Tensor y = run_qgemm(w, x, bias), expected = reference(w, x, bias);
          ASSERT_FALSE(at::isnan(y).any().item<bool>()) << shape_name(w, m, with_bias);
          EXPECT_LT(rel_err(y, expected), tolerance) << shape_name(w, m, with_bias);
        }
      }
}

}  // namespace

TEST(KernelsQgemm, MatchesIntegerReferenceAcrossShapes) {
  QgemmSettings restore;
  at::set_num_threads(1);
  check_against_reference(1e-5);
}

TEST(KernelsQgemm, ScalarPathMatchesIntegerReference) {
  QgemmSettings restore;
  at::set_num_threads(1);
  kernels::set_qgemm_scalar(true);
  EXPECT_STREQ(kernels::qgemm_isa(), "scalar");
  check_against_reference(1e-5);
}

TEST(KernelsQgemm, TwoThreadsGiveTheSameBits) {
  QgemmSettings restore;
  torch::manual_seed(1);
  for (int bits : {8, 4}) {
    const QWeight w = random_weight(bits, 777, 384, 64);
    at::Tensor x = at::randn({45, 384}), bias = at::randn({777});
    at::set_num_threads(1);
    at::Tensor one = run_qgemm(w, x, bias);
    at::set_num_threads(2);
    at::Tensor two = run_qgemm(w, x, bias);
    EXPECT_TRUE(at::equal(one, two)) << "int" << bits << " max diff " << max_abs_diff(one, two);
    EXPECT_LT(rel_err(two, reference(w, x, bias)), 1e-5) << "int" << bits;
  }
}

TEST(KernelsQgemm, CloseToTheDequantizedFloatProduct) {
  QgemmSettings restore;
  c10::InferenceMode guard;
  torch::manual_seed(2);
  for (const auto& [bits, group] : std::vector<std::pair<int, int64_t>>{{8, 0}, {4, 32}, {4, 128}})
    for (int64_t in : {33, 768}) {
      nn::Linear l(in, 200, true);
      l.weight.normal_(0, 0.05);
      l.bias.normal_(0, 0.1);
      quantize_linear(l, bits, group);
      at::Tensor w = dequantize_linear_weight(l);
      at::Tensor x = at::randn({37, in});
      at::Tensor y = at::empty({37, 200});
      kernels::qgemm(bits, l.weight.data_ptr(), l.weight_scale.data_ptr<float>(),
                     bits == 4 ? l.weight_zero.data_ptr<uint8_t>() : nullptr, l.quant_group_size, x.data_ptr<float>(),
                     y.data_ptr<float>(), l.bias.data_ptr<float>(), 37, 200, in);
      const double err = rel_err(y, at::linear(x, w, l.bias));
      EXPECT_LT(err, 1e-2) << "int" << bits << " group " << group << " in " << in;
      EXPECT_GT(err, 0.0) << "the activations are quantized";
    }
}

TEST(KernelsQgemm, LinearForwardOnSeveralRowsUsesQgemm) {
  c10::InferenceMode guard;
  torch::manual_seed(4);
  for (const auto& [bits, group] : std::vector<std::pair<int, int64_t>>{{8, 0}, {4, 64}}) {
    nn::Linear l(100, 37, true);
    l.weight.normal_(0, 0.2);
    l.bias.normal_(0, 0.1);
    quantize_linear(l, bits, group);
    at::Tensor x = at::randn({2, 5, 100});
    at::Tensor y = at::empty({10, 37});
    kernels::qgemm(bits, l.weight.data_ptr(), l.weight_scale.data_ptr<float>(),
                   bits == 4 ? l.weight_zero.data_ptr<uint8_t>() : nullptr, l.quant_group_size, x.data_ptr<float>(),
                   y.data_ptr<float>(), l.bias.data_ptr<float>(), 10, 37, 100);
    at::Tensor forward = l.forward(x);
    EXPECT_EQ(forward.sizes(), (std::vector<int64_t>{2, 5, 37}));
    EXPECT_TRUE(at::equal(forward.reshape({10, 37}), y)) << "int" << bits;
  }
}

TEST(KernelsQgemm, ZeroHugeAndNonFiniteInputsDoNotCrash) {
  QgemmSettings restore;
  torch::manual_seed(5);
  for (bool scalar : {false, true}) {
    kernels::set_qgemm_scalar(scalar);
    for (int bits : {8, 4}) {
      const QWeight w = random_weight(bits, 40, 70, 32);
      at::Tensor bias = at::randn({40});
      // All zero: exactly the bias.
      EXPECT_TRUE(at::equal(run_qgemm(w, at::zeros({19, 70}), bias), bias.expand({19, 40})));
      // Huge (scale-invariant quantization): the same relative result as moderate inputs.
      at::Tensor x = at::randn({19, 70});
      at::Tensor huge = run_qgemm(w, x * 1e30, at::Tensor());
      EXPECT_TRUE(at::isfinite(huge).all().item<bool>());
      EXPECT_LT(rel_err(huge / 1e30, run_qgemm(w, x, at::Tensor())), 1e-2);
      // A NaN or inf poisons its own row only.
      at::Tensor bad = x.clone();
      bad[3][5] = std::numeric_limits<float>::quiet_NaN();
      bad[7][69] = std::numeric_limits<float>::infinity();
      at::Tensor y = run_qgemm(w, bad, bias), clean = run_qgemm(w, x, bias);
      EXPECT_TRUE(at::isnan(y[3]).all().item<bool>()) << "int" << bits << " scalar " << scalar;
      EXPECT_FALSE(at::isfinite(y[7]).all().item<bool>());
      for (int64_t r = 0; r < 19; ++r)
        if (r != 3 && r != 7) {
          EXPECT_TRUE(at::equal(y[r], clean[r])) << "row " << r;
        }
    }
  }
  // Empty inner dimension: y = bias.
  const QWeight w = random_weight(8, 3, 0, 0);
  at::Tensor bias = at::randn({3});
  EXPECT_TRUE(at::equal(run_qgemm(w, at::zeros({4, 0}), bias), bias.expand({4, 3})));
}
