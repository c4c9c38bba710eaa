// Prompt processing on float32 Linears (kernels.h sgemm_packed): y [m, out] = x [m, in] Wᵀ (+ b) with W repacked
// once into panels of 32 output rows, [ceil(out / 32)][in][32], so that the AVX-512 micro-kernel reads each panel as
// one sequential stream and never copies the weight again. OpenBLAS's sgemm repacks W on every call (13 % of a 110M
// Llama prefill on one Zen 4 core, measured with perf); with the weight packed once the same micro-kernel rate covers
// the whole call (bench/README.md).
//
// Micro-kernel: kMr (≤ 14) token rows × 32 outputs in 28 zmm accumulators; per input k two vector loads of the panel
// and one broadcast per token row. The activations are packed per call (cheap: m · in floats) into blocks of kMr rows
// laid out [in][rows], so the broadcasts read consecutive floats.
#include "pch.h"

#include "transformers/kernels.h"

#include "kernels/internal.h"

#include <ATen/Parallel.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace transformers::kernels {

namespace {

constexpr int64_t kNr = 32;   // output features per panel (two zmm)
constexpr int kMr = 14;       // token rows per micro-kernel (2 · 14 accumulators + 2 panel vectors + 1 broadcast)
constexpr int64_t kKc = 1024; // inputs per pass over C (a 32 · 1024 · 4 = 128 KB panel slice stays in L2)

std::atomic<int> prepack_state{-1};  // -1: not read from the environment yet


#if defined(__x86_64__)
// C[rows, 0:nvalid] (+)= A_packed [kc][MR] · B_panel [kc][32] (+ bias on the first pass over the inputs).
template <int MR>
__attribute__((target("avx512f"))) void micro_kernel(int64_t kc, const float* a, const float* b, float* c,
                                                     int64_t ldc, bool accumulate, const float* bias, int nvalid) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
    }
    a += MR;
    b += kNr;
  }
  const __mmask16 m0 = nvalid >= 16 ? 0xffff : static_cast<__mmask16>((1u << nvalid) - 1);
  const __mmask16 m1 = nvalid <= 16 ? 0 : nvalid >= 32 ? 0xffff : static_cast<__mmask16>((1u << (nvalid - 16)) - 1);
  __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps();
  if (bias && !accumulate) bias0 = _mm512_maskz_loadu_ps(m0, bias), bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    __m512 lo = _mm512_add_ps(c0[i], accumulate ? _mm512_maskz_loadu_ps(m0, ci) : bias0);
    __m512 hi = _mm512_add_ps(c1[i], accumulate ? _mm512_maskz_loadu_ps(m1, ci + 16) : bias1);
    _mm512_mask_storeu_ps(ci, m0, lo);
    _mm512_mask_storeu_ps(ci + 16, m1, hi);
  }
}

using MicroKernel = void (*)(int64_t, const float*, const float*, float*, int64_t, bool, const float*, int);
template <int... I>
constexpr std::array<MicroKernel, sizeof...(I)> micro_kernels(std::integer_sequence<int, I...>) {
  return {&micro_kernel<I + 1>...};
}
const std::array<MicroKernel, kMr> kMicroKernels = micro_kernels(std::make_integer_sequence<int, kMr>{});
#endif

}  // namespace

bool prepack_enabled() {
  int state = prepack_state.load(std::memory_order_relaxed);
  if (state < 0) {
    const char* env = std::getenv("TFCPP_PREPACK");
    state = env && std::string(env) == "0" ? 0 : 1;
    prepack_state.store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

void set_prepack(bool on) { prepack_state.store(on ? 1 : 0, std::memory_order_relaxed); }

bool sgemm_supported() { return cpu_avx512f() && prepack_enabled() && enabled(); }

namespace {

// Panel p of W [out, in] (rows p·32 .. p·32+31) as [in][32], zero-padded past `out`.
void pack_panel(const float* w, int64_t out, int64_t in, int64_t p, float* panel) {
  const int64_t rows = std::min(kNr, out - p * kNr);
  if (rows < kNr) std::memset(panel, 0, sizeof(float) * in * kNr);
  // 8 inputs of every row at a time: the reads stay sequential per row and each written line is filled whole.
  for (int64_t k0 = 0; k0 < in; k0 += 8) {
    const int64_t kn = std::min<int64_t>(8, in - k0);
    for (int64_t j = 0; j < rows; ++j) {
      const float* row = w + (p * kNr + j) * in + k0;
      for (int64_t k = 0; k < kn; ++k) panel[(k0 + k) * kNr + j] = row[k];
    }
  }
}

}  // namespace

at::Tensor pack_sgemm_weight(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kFloat, "pack_sgemm_weight: a float32 [out, in] weight");
  const at::Tensor w = weight.contiguous();
  const int64_t out = w.size(0), in = w.size(1), panels = (out + kNr - 1) / kNr;
  at::Tensor packed = at::empty({panels, in, kNr}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = packed.data_ptr<float>();
  at::parallel_for(0, panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) pack_panel(src, out, in, p, dst + p * in * kNr);
  });
  return packed;
}

namespace {

// y = x Wᵀ (+ b) from packed panels (`packed`), or from W itself (`weight`), each thread packing the panel it is about
// to use into a buffer that stays in cache: the same micro-kernel calls in the same order, so both give the same bits.
at::Tensor sgemm_impl(const at::Tensor& x, const float* packed, const float* weight, int64_t in, int64_t out_features,
                      const at::Tensor& bias) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out_features;
  at::Tensor y = at::empty(shape, x.options());
  const int64_t m = in ? x.numel() / in : 0;
  if (m == 0 || out_features == 0) return y;
  if (in == 0) return bias.defined() ? y.copy_(bias.expand_as(y)) : y.zero_();
#if defined(__x86_64__)
  const at::Tensor xc = x.contiguous();
  const float* a = xc.data_ptr<float>();
  const float* bias_data = bias.defined() ? bias.data_ptr<float>() : nullptr;
  float* c = y.data_ptr<float>();
  const int64_t blocks = (m + kMr - 1) / kMr, panels = (out_features + kNr - 1) / kNr;
  // The activations in blocks of kMr rows, each [in][rows] (the last block has m mod kMr rows).
  at::Tensor a_packed_t = at::empty({m * in}, x.options());
  float* ap = a_packed_t.data_ptr<float>();
  // Small products (m · in · out under 4M multiply-adds) stay on the calling thread.
  const bool serial = m * in * out_features < (int64_t{1} << 22);
  at::parallel_for(0, blocks, serial ? blocks : 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t r0 = blk * kMr, rows = std::min<int64_t>(kMr, m - r0);
      float* dst = ap + r0 * in;
      for (int64_t i = 0; i < rows; ++i) {
        const float* src = a + (r0 + i) * in;
        for (int64_t k = 0; k < in; ++k) dst[k * rows + i] = src[k];
      }
    }
  });
  at::parallel_for(0, panels, serial ? panels : 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> scratch(packed ? 0 : static_cast<size_t>(in * kNr));
    for (int64_t p = p0; p < p1; ++p) {
      const int nvalid = static_cast<int>(std::min(kNr, out_features - p * kNr));
      const float* panel = packed ? packed + p * in * kNr : scratch.data();
      if (!packed) pack_panel(weight, out_features, in, p, scratch.data());
      for (int64_t k0 = 0; k0 < in; k0 += kKc) {
        const int64_t kc = std::min(kKc, in - k0);
        for (int64_t r0 = 0; r0 < m; r0 += kMr) {
          const int64_t rows = std::min<int64_t>(kMr, m - r0);
          kMicroKernels[rows - 1](kc, ap + r0 * in + k0 * rows, panel + k0 * kNr, c + r0 * out_features + p * kNr,
                                  out_features, k0 > 0, bias_data ? bias_data + p * kNr : nullptr, nvalid);
        }
      }
    }
  });
  return y;
#else
  TORCH_CHECK(false, "kernels::sgemm: needs an x86-64 CPU with AVX-512 (check sgemm_supported())");
#endif
}

}  // namespace

at::Tensor sgemm_packed(const at::Tensor& x, const at::Tensor& packed, int64_t out_features, const at::Tensor& bias) {
  const int64_t in = packed.size(1);
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.size(-1) == in && packed.size(2) == kNr &&
                  packed.size(0) == (out_features + kNr - 1) / kNr && packed.is_contiguous(),
              "sgemm_packed: x [..., ", in, "] float32 and panels of ", out_features, " outputs");
  return sgemm_impl(x, packed.data_ptr<float>(), nullptr, in, out_features, bias);
}

at::Tensor sgemm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kFloat && x.scalar_type() == at::kFloat &&
                  x.size(-1) == weight.size(1),
              "kernels::sgemm: x [..., in] and weight [out, in], float32");
  const at::Tensor w = weight.contiguous();
  return sgemm_impl(x, nullptr, w.data_ptr<float>(), w.size(1), w.size(0), bias);
}

}  // namespace transformers::kernels
