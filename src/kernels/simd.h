// Horizontal reductions of one AVX-512 register, shared by the kernel files (x86-64 only; each function carries its
// own target attribute, so the including file needs no -mavx512f).
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>

namespace transformers::kernels::simd {

// Σ of the 16 lanes: halves added 256 → 128 → 64 → 32 bits (the summation order every kernel's results assume).
__attribute__((target("avx512f"))) inline float hsum(__m512 v) {
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
  return _mm_cvtss_f32(s4);
}

// max of the 16 lanes, in hsum's order.
__attribute__((target("avx512f"))) inline float hmax(__m512 v) {
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  __m256 m8 = _mm256_max_ps(_mm512_castps512_ps256(v), hi);
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  return _mm_cvtss_f32(m4);
}

}  // namespace transformers::kernels::simd
#endif
