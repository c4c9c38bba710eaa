// Quantized one-row GEMV (kernels.h "Weight-only quantized Linears", src/kernels/qgemv.cpp): the VNNI and scalar
// paths against a reference of the same integer math written here (shapes with vector tails, odd `in`, partial int4
// groups, accumulate / bias, 1 and 2 threads), against the float product with the dequantized weight, and on edge
// values (zeros, 1e30, NaN, inf).
#include "test_util.h"

#include "transformers/kernels.h"
#include "transformers/quantization.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

using namespace transformers;
using namespace tfcpp_test;
using kernels::raw::kQBlock;

namespace {

// Restores the path, thread count and parallel threshold a test changes.
struct QgemvSettings {
  int threads = at::get_num_threads();
  int64_t parallel_bytes = kernels::min_parallel_bytes();
  ~QgemvSettings() {
    kernels::set_qgemv_scalar(false);
    at::set_num_threads(threads);
    kernels::set_min_parallel_bytes(parallel_bytes);
  }
};

// Each configuration the kernels run in: VNNI (where the CPU has it) or scalar, on 1 or 2 threads (split rows).
template <typename F>
void for_each_path(F&& body) {
  QgemvSettings restore;
  for (bool scalar : {false, true})
    for (int threads : {1, 2}) {
      kernels::set_qgemv_scalar(scalar);
      at::set_num_threads(threads);
      kernels::set_min_parallel_bytes(threads == 1 ? int64_t{1} << 40 : 0);
      body(std::string(kernels::qgemv_isa()) + " threads " + std::to_string(threads));
    }
}

struct QRow {
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<int32_t> sums;
};

// The activation quantization of kernels.h: per block d = max|x| / 127, q = nearbyint(x / d) (round half to even),
// clamped to ±127; an all-zero block (or a NaN / infinite scale) gets q = 0.
QRow ref_quantize(const float* x, int64_t n) {
  QRow r;
  r.q.assign(static_cast<size_t>(n), 0);
  for (int64_t b0 = 0; b0 < n; b0 += kQBlock) {
    const int64_t b1 = std::min(n, b0 + kQBlock);
    float amax = 0;
    bool nan = false;
    for (int64_t i = b0; i < b1; ++i) {
      nan = nan || std::isnan(x[i]);
      amax = std::max(amax, std::fabs(x[i]));
    }
    const float d = nan ? std::numeric_limits<float>::quiet_NaN() : amax / 127.0f;
    int32_t s = 0;
    if (d > 0 && std::isfinite(d))
      for (int64_t i = b0; i < b1; ++i) {
        r.q[i] = static_cast<int8_t>(std::clamp(std::nearbyint(x[i] / d), -127.0f, 127.0f));
        s += r.q[i];
      }
    r.d.push_back(d);
    r.sums.push_back(s);
  }
  return r;
}

std::vector<float> random_x(std::mt19937& rng, int64_t n) {
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = nd(rng);
  if (n > 2 * kQBlock) std::fill(x.begin() + kQBlock, x.begin() + 2 * kQBlock, 0.0f);  // an all-zero block
  return x;
}

// Expected y and a bound on its float rounding (|terms| summed, relative 1e-5).
struct Expected {
  std::vector<double> y, bound;
};

Expected ref_gemv_q8(const std::vector<int8_t>& w, const std::vector<float>& scale, const float* x,
                     const float* bias, const std::vector<float>& y0, int64_t out, int64_t in) {
  const QRow a = ref_quantize(x, in);
  Expected e;
  for (int64_t o = 0; o < out; ++o) {
    double acc = 0, mag = 0;
    for (int64_t b = 0; b * kQBlock < in; ++b) {
      int64_t dot = 0, absdot = 0;
      for (int64_t i = b * kQBlock; i < std::min(in, (b + 1) * kQBlock); ++i) {
        dot += int64_t{w[o * in + i]} * a.q[i];
        absdot += std::abs(int64_t{w[o * in + i]} * a.q[i]);
      }
      acc += double{a.d[b]} * static_cast<double>(dot);
      mag += std::fabs(double{a.d[b]}) * static_cast<double>(absdot + 128 * std::abs(a.sums[b]));
    }
    double y = scale[o] * acc, bound = std::fabs(scale[o]) * mag;
    if (bias) y += bias[o], bound += std::fabs(bias[o]);
    if (!y0.empty()) y += y0[o], bound += std::fabs(y0[o]);
    e.y.push_back(y);
    e.bound.push_back(1e-5 * bound + 1e-30);
  }
  return e;
}

Expected ref_gemv_q4(const std::vector<uint8_t>& packed, const std::vector<float>& scale,
                     const std::vector<uint8_t>& zero, int64_t gs, const float* x, const float* bias,
                     const std::vector<float>& y0, int64_t out, int64_t in) {
  const QRow a = ref_quantize(x, in);
  const int64_t rb = (in + 1) / 2, groups = (in + gs - 1) / gs;
  Expected e;
  for (int64_t o = 0; o < out; ++o) {
    double y = 0, mag = 0;
    for (int64_t g = 0; g < groups; ++g) {
      double dots = 0, xs = 0, gmag = 0, xmag = 0;
      for (int64_t b = g * gs / kQBlock; b * kQBlock < std::min(in, (g + 1) * gs); ++b) {
        int64_t dot = 0, absdot = 0;
        for (int64_t i = b * kQBlock; i < std::min(in, (b + 1) * kQBlock); ++i) {
          const uint8_t byte = packed[o * rb + i / 2];
          const int64_t code = (i % 2) ? (byte >> 4) : (byte & 15);
          dot += code * a.q[i];
          absdot += std::abs(code * a.q[i]);
        }
        dots += double{a.d[b]} * static_cast<double>(dot);
        xs += double{a.d[b]} * a.sums[b];
        gmag += std::fabs(double{a.d[b]}) * static_cast<double>(absdot);
        xmag += std::fabs(double{a.d[b]} * a.sums[b]);
      }
      const double s = scale[o * groups + g], z = zero[o * groups + g];
      y += s * (dots - z * xs);
      mag += std::fabs(s) * (gmag + z * xmag);
    }
    if (bias) y += bias[o], mag += std::fabs(bias[o]);
    if (!y0.empty()) y += y0[o], mag += std::fabs(y0[o]);
    e.y.push_back(y);
    e.bound.push_back(1e-5 * mag + 1e-30);
  }
  return e;
}

::testing::AssertionResult matches(const std::string& name, const std::vector<float>& y, const Expected& e) {
  double worst = 0;
  for (size_t o = 0; o < y.size(); ++o) {
    const double diff = std::fabs(double{y[o]} - e.y[o]);
    worst = std::max(worst, diff / e.bound[o]);
    if (!(diff <= e.bound[o]))
      return ::testing::AssertionFailure() << name << ": row " << o << " got " << y[o] << " expected " << e.y[o]
                                           << " (|diff| " << diff << " > bound " << e.bound[o] << ")";
  }
  return ::testing::AssertionSuccess() << name << " worst |diff| / bound " << worst;
}

const std::vector<int64_t> kIns = {1, 31, 33, 64, 100, 768, 2048};
const std::vector<int64_t> kOuts = {1, 3, 17, 256};

}  // namespace

TEST(KernelsQuant, QuantizeRowMatchesReference) {
  std::mt19937 rng(7);
  for_each_path([&](const std::string& path) {
    for (int64_t n : {1, 31, 32, 33, 64, 100, 2048}) {
      std::vector<float> x = random_x(rng, n);
      if (n >= kQBlock) {  // block 0: d = 127 / 127 = 1 and halves, so every x / d is a rounding tie
        x[0] = 127.0f;
        for (int64_t i = 1; i < kQBlock; ++i) x[i] = static_cast<float>(i % 20) - 9.5f;
      }
      const QRow e = ref_quantize(x.data(), n);
      const int64_t blocks = (n + kQBlock - 1) / kQBlock;
      std::vector<int8_t> q(static_cast<size_t>(n), 99);
      std::vector<float> d(static_cast<size_t>(blocks), -1);
      std::vector<int32_t> sums(static_cast<size_t>(blocks), -1);
      kernels::raw::quantize_row_q8(x.data(), n, q.data(), d.data(), sums.data());
      EXPECT_EQ(q, e.q) << path << " n " << n;
      EXPECT_EQ(d, e.d) << path << " n " << n;
      EXPECT_EQ(sums, e.sums) << path << " n " << n;
    }
  });
}

TEST(KernelsQuant, Int8GemvMatchesIntegerReference) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> code(-127, 127);
  std::uniform_real_distribution<float> pos(0.001f, 0.02f), any(-1.0f, 1.0f);
  for (int64_t in : kIns)
    for (int64_t out : kOuts) {
      std::vector<int8_t> w(static_cast<size_t>(out * in));
      for (auto& v : w) v = static_cast<int8_t>(code(rng));
      std::vector<float> scale(static_cast<size_t>(out)), bias(static_cast<size_t>(out)), y0(static_cast<size_t>(out));
      for (auto& v : scale) v = pos(rng);
      for (auto& v : bias) v = any(rng);
      for (auto& v : y0) v = any(rng);
      const std::vector<float> x = random_x(rng, in);
      for_each_path([&](const std::string& path) {
        for (bool accumulate : {false, true})
          for (bool with_bias : {false, true}) {
            std::vector<float> y = accumulate ? y0 : std::vector<float>(static_cast<size_t>(out), 1e9f);
            const float* b = with_bias ? bias.data() : nullptr;
            kernels::raw::gemv_q8(w.data(), scale.data(), x.data(), y.data(), b, out, in, accumulate);
            const Expected e = ref_gemv_q8(w, scale, x.data(), b, accumulate ? y0 : std::vector<float>{}, out, in);
            EXPECT_TRUE(matches(path + " in " + std::to_string(in) + " out " + std::to_string(out) + " accumulate " +
                                    std::to_string(accumulate) + " bias " + std::to_string(with_bias),
                                y, e));
          }
      });
    }
}

TEST(KernelsQuant, Int4GemvMatchesIntegerReference) {
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> byte(0, 255), zp(0, 15);
  std::uniform_real_distribution<float> pos(0.001f, 0.02f), any(-1.0f, 1.0f);
  EXPECT_TRUE(kernels::q4_group_supported(32));
  EXPECT_TRUE(kernels::q4_group_supported(128));
  EXPECT_FALSE(kernels::q4_group_supported(50));
  EXPECT_FALSE(kernels::q4_group_supported(0));
  for (int64_t gs : {32, 64, 96, 128})
    for (int64_t in : kIns)
      for (int64_t out : kOuts) {
        const int64_t rb = (in + 1) / 2, groups = (in + gs - 1) / gs;
        // Random bytes: with odd `in` the unused high nibble of each row's last byte holds garbage the kernel ignores.
        std::vector<uint8_t> packed(static_cast<size_t>(out * rb)), zero(static_cast<size_t>(out * groups));
        for (auto& v : packed) v = static_cast<uint8_t>(byte(rng));
        for (auto& v : zero) v = static_cast<uint8_t>(zp(rng));
        std::vector<float> scale(static_cast<size_t>(out * groups)), bias(static_cast<size_t>(out)),
            y0(static_cast<size_t>(out));
        for (auto& v : scale) v = pos(rng);
        for (auto& v : bias) v = any(rng);
        for (auto& v : y0) v = any(rng);
        const std::vector<float> x = random_x(rng, in);
        for_each_path([&](const std::string& path) {
          for (bool accumulate : {false, true})
            for (bool with_bias : {false, true}) {
              std::vector<float> y = accumulate ? y0 : std::vector<float>(static_cast<size_t>(out), 1e9f);
              const float* b = with_bias ? bias.data() : nullptr;
              kernels::raw::gemv_q4(packed.data(), scale.data(), zero.data(), gs, x.data(), y.data(), b, out, in,
                                    accumulate);
              const Expected e = ref_gemv_q4(packed, scale, zero, gs, x.data(), b,
                                             accumulate ? y0 : std::vector<float>{}, out, in);
              EXPECT_TRUE(matches(path + " group " + std::to_string(gs) + " in " + std::to_string(in) + " out " +
                                      std::to_string(out) + " accumulate " + std::to_string(accumulate) + " bias " +
                                      std::to_string(with_bias),
                                  y, e));
            }
        });
      }
  EXPECT_THROW(kernels::raw::gemv_q4(nullptr, nullptr, nullptr, 50, nullptr, nullptr, nullptr, 1, 64, false),
               c10::Error);
}

// Only the activation quantization separates the result from the float product with the dequantized weight.
TEST(KernelsQuant, CloseToDequantizedFloatProduct) {
  torch::manual_seed(5);
  for (int64_t in : {100, 768, 2048}) {
    const int64_t out = 192;
    at::Tensor w = at::randn({out, in}), x = at::randn({in});
    at::Tensor q8, s8;
    std::tie(q8, s8) = quantize_int8_per_channel(w);
    at::Tensor w8 = q8.to(at::kFloat) * s8.unsqueeze(1);
    for (int64_t gs : {32, 128}) {
      at::Tensor p4, s4, z4;
      std::tie(p4, s4, z4) = quantize_int4_groupwise(w, gs);
      at::Tensor zero = z4.to(at::kFloat).repeat_interleave(gs, 1).narrow(1, 0, in);
      at::Tensor w4 = (unpack_int4(p4, in).to(at::kFloat) - zero) * s4.repeat_interleave(gs, 1).narrow(1, 0, in);
      for_each_path([&](const std::string& path) {
        at::Tensor y8 = at::empty({out}), y4 = at::empty({out});
        kernels::raw::gemv_q8(q8.data_ptr<int8_t>(), s8.data_ptr<float>(), x.data_ptr<float>(), y8.data_ptr<float>(),
                              nullptr, out, in, false);
        kernels::raw::gemv_q4(p4.data_ptr<uint8_t>(), s4.data_ptr<float>(), z4.data_ptr<uint8_t>(), gs,
                              x.data_ptr<float>(), y4.data_ptr<float>(), nullptr, out, in, false);
        at::Tensor e8 = at::mv(w8, x), e4 = at::mv(w4, x);
        const double r8 = max_abs_diff(y8, e8) / e8.abs().max().item<double>();
        const double r4 = max_abs_diff(y4, e4) / e4.abs().max().item<double>();
        EXPECT_LT(r8, 1e-2) << path << " int8 in " << in;
        EXPECT_LT(r4, 1e-2) << path << " int4 group " << gs << " in " << in;
        EXPECT_GT(r8, 0.0) << "activations are quantized";
      });
    }
  }
}

TEST(KernelsQuant, EdgeValuesDoNotCrash) {
  const int64_t in = 100, out = 9, gs = 32, rb = (in + 1) / 2, groups = (in + gs - 1) / gs;
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> code(-127, 127), byte(0, 255);
  std::vector<int8_t> w(static_cast<size_t>(out * in));
  for (auto& v : w) v = static_cast<int8_t>(code(rng));
  std::vector<uint8_t> packed(static_cast<size_t>(out * rb)), zero(static_cast<size_t>(out * groups), 8);
  for (auto& v : packed) v = static_cast<uint8_t>(byte(rng));
  std::vector<float> s8(static_cast<size_t>(out), 0.01f), s4(static_cast<size_t>(out * groups), 0.01f);
  std::vector<float> bias(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) bias[o] = static_cast<float>(o) - 4.0f;
  auto run = [&](const std::vector<float>& x, std::vector<float>& y8, std::vector<float>& y4) {
    y8.assign(static_cast<size_t>(out), 0.0f);
    y4.assign(static_cast<size_t>(out), 0.0f);
    kernels::raw::gemv_q8(w.data(), s8.data(), x.data(), y8.data(), bias.data(), out, in, false);
    kernels::raw::gemv_q4(packed.data(), s4.data(), zero.data(), gs, x.data(), y4.data(), bias.data(), out, in, false);
  };
  for_each_path([&](const std::string& path) {
    std::vector<float> y8, y4;
    // All-zero activations: exactly the bias.
    run(std::vector<float>(static_cast<size_t>(in), 0.0f), y8, y4);
    EXPECT_EQ(y8, bias) << path;
    EXPECT_EQ(y4, bias) << path;
    // All-zero weights: the bias (up to the rounding of the u8 offset the VNNI path takes off).
    {
      const std::vector<int8_t> w0(w.size(), 0);
      const std::vector<float> x0 = random_x(rng, in);
      std::vector<float> y(static_cast<size_t>(out));
      kernels::raw::gemv_q8(w0.data(), s8.data(), x0.data(), y.data(), bias.data(), out, in, false);
      EXPECT_TRUE(matches(path + " zero weights", y, ref_gemv_q8(w0, s8, x0.data(), bias.data(), {}, out, in)));
    }
    // A huge activation: finite, and the integer math still holds.
    std::vector<float> x = random_x(rng, in);
    x[40] = 1e30f;
    run(x, y8, y4);
    const Expected e8 = ref_gemv_q8(w, s8, x.data(), bias.data(), {}, out, in);
    const Expected e4 = ref_gemv_q4(packed, s4, zero, gs, x.data(), bias.data(), {}, out, in);
    for (int64_t o = 0; o < out; ++o) {
      EXPECT_TRUE(std::isfinite(y8[o]) && std::isfinite(y4[o])) << path << " row " << o;
      EXPECT_NEAR(y8[o], e8.y[o], e8.bound[o]) << path;
      EXPECT_NEAR(y4[o], e4.y[o], e4.bound[o]) << path;
    }
    // NaN or inf in the activations propagates as NaN, never as a finite wrong value.
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      x = random_x(rng, in);
      x[99] = bad;  // in the partial last block
      run(x, y8, y4);
      for (int64_t o = 0; o < out; ++o) {
        EXPECT_TRUE(std::isnan(y8[o])) << path << " " << bad << " row " << o << " " << y8[o];
        EXPECT_TRUE(std::isnan(y4[o])) << path << " " << bad << " row " << o << " " << y4[o];
      }
    }
  });
}
