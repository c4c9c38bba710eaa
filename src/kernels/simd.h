// Horizontal reductions of one AVX-512 register and a 16-lane exp, shared by the kernel files (x86-64 only; each function carries its
// own target attribute, so the including file needs no -mavx512f).
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

namespace transformers::kernels::simd {

// The 16 lanes folded with one operation, halves combined 256 → 128 → 64 → 32 bits (the summation order every
// kernel's results assume): Op supplies it for 256-bit, 128-bit and scalar-lane registers.
template <typename Op>
__attribute__((target("avx512f"))) inline float reduce(__m512 v) {
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  const __m256 s8 = Op::ymm(_mm512_castps512_ps256(v), hi);
  __m128 s4 = Op::xmm(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s4 = Op::xmm(s4, _mm_movehl_ps(s4, s4));
  s4 = Op::ss(s4, _mm_movehdup_ps(s4));
  return _mm_cvtss_f32(s4);
}

struct AddOp {
  __attribute__((target("avx512f"))) static __m256 ymm(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
  __attribute__((target("avx512f"))) static __m128 xmm(__m128 a, __m128 b) { return _mm_add_ps(a, b); }
  __attribute__((target("avx512f"))) static __m128 ss(__m128 a, __m128 b) { return _mm_add_ss(a, b); }
};
struct MaxOp {
  __attribute__((target("avx512f"))) static __m256 ymm(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }
  __attribute__((target("avx512f"))) static __m128 xmm(__m128 a, __m128 b) { return _mm_max_ps(a, b); }
  __attribute__((target("avx512f"))) static __m128 ss(__m128 a, __m128 b) { return _mm_max_ss(a, b); }
};

// Σ and max of the 16 lanes.
__attribute__((target("avx512f"))) inline float hsum(__m512 v) { return reduce<AddOp>(v); }
__attribute__((target("avx512f"))) inline float hmax(__m512 v) { return reduce<MaxOp>(v); }

// e^x on 16 lanes: Cephes expf (x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial, ×2ⁿ by vscalefps), within 2 ulp of
// std::exp; exactly 0 below -103.97 (e^x < the smallest denormal) and for -inf, NaN kept.
__attribute__((target("avx512f"))) inline __m512 exp16(__m512 x) {
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-103.97f), _CMP_LT_OQ);
  const __m512 xc = _mm512_max_ps(_mm512_set1_ps(-103.97f), x);  // max(c, NaN) = NaN
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), _mm512_scalef_ps(y, n));
}

}  // namespace transformers::kernels::simd
#endif
