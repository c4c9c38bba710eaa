// Prompt attention (several queries per sequence) on AVX-512, FlashAttention's schedule: for a block of 16 queries,
// blocks of 64 keys with a running max and sum (online softmax), so the [Tq, Tk] score matrix never exists and key
// blocks every query of the block has masked (the causal upper triangle) are skipped whole.
//
// Everything is vectorised across the 16 queries: one zmm holds one key's scores for the 16 rows, so the row max,
// the exponentials and the row sums are plain lane-wise operations, and both products are broadcast FMAs reading
// keys and values in their cache layout (no transposed copy): scores s_j += Qᵀ[d] · k_j[d] over d for 8 keys side by
// side, output Oᵀ[d] += p_j · v_j[d] over the keys for 16 columns d side by side. The query block (Qᵀ [D][16]) and
// the output (Oᵀ [D][16]) stay in L1. The additive mask is laid out [Tk][16] once per task and shared by the task's
// heads.
#include "pch.h"

#include "kernels/internal.h"
#include "kernels/simd.h"

#include <ATen/Parallel.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace transformers::kernels {

namespace {

constexpr int64_t kRows = 16;  // queries per block: one zmm lane each
constexpr int64_t kKeys = 64;  // keys per online-softmax step

struct Scratch {
  std::vector<float> qt, ot, mt, p, row;
  std::vector<char> skip;
};
thread_local Scratch tls;

#if defined(__x86_64__)

using simd::exp16;

// s[j] = Σ_d qt[d] · k_j[d] for 8 keys k_j = k + j * ks: the 16 rows' scores of each key.
__attribute__((target("avx512f"))) inline void scores8(const float* qt, const float* k, int64_t ks, int64_t d,
                                                       __m512* s) {
  const float *k0 = k, *k1 = k + ks, *k2 = k + 2 * ks, *k3 = k + 3 * ks, *k4 = k + 4 * ks, *k5 = k + 5 * ks,
              *k6 = k + 6 * ks, *k7 = k + 7 * ks;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (int64_t i = 0; i < d; ++i) {
    const __m512 q = _mm512_loadu_ps(qt + i * kRows);
    a0 = _mm512_fmadd_ps(q, _mm512_set1_ps(k0[i]), a0);
    a1 = _mm512_fmadd_ps(q, _mm512_set1_ps(k1[i]), a1);
    a2 = _mm512_fmadd_ps(q, _mm512_set1_ps(k2[i]), a2);
    a3 = _mm512_fmadd_ps(q, _mm512_set1_ps(k3[i]), a3);
    a4 = _mm512_fmadd_ps(q, _mm512_set1_ps(k4[i]), a4);
    a5 = _mm512_fmadd_ps(q, _mm512_set1_ps(k5[i]), a5);
    a6 = _mm512_fmadd_ps(q, _mm512_set1_ps(k6[i]), a6);
    a7 = _mm512_fmadd_ps(q, _mm512_set1_ps(k7[i]), a7);
  }
  s[0] = a0, s[1] = a1, s[2] = a2, s[3] = a3, s[4] = a4, s[5] = a5, s[6] = a6, s[7] = a7;
}

// ot[c] = ot[c] · alpha + Σ_j p_j · v_j[c] for C columns c of the output (C ≤ 16 accumulators), nk keys.
template <int C>
__attribute__((target("avx512f"))) inline void accumulate_pv(float* ot, __m512 alpha, const float* p, const float* v,
                                                             int64_t vs, int64_t nk) {
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_mul_ps(_mm512_loadu_ps(ot + c * kRows), alpha);
  for (int64_t j = 0; j < nk; ++j) {
    const __m512 pj = _mm512_loadu_ps(p + j * kRows);
    const float* vr = v + j * vs;
    for (int c = 0; c < C; ++c) acc[c] = _mm512_fmadd_ps(pj, _mm512_set1_ps(vr[c]), acc[c]);
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(ot + c * kRows, acc[c]);
}

__attribute__((target("avx512f"))) void accumulate_pv_any(float* ot, __m512 alpha, const float* p, const float* v,
                                                          int64_t vs, int64_t nk, int64_t cols) {
  for (int64_t c0 = 0; c0 < cols; c0 += 16) {
    switch (std::min<int64_t>(16, cols - c0)) {
      case 16: accumulate_pv<16>(ot + c0 * kRows, alpha, p, v + c0, vs, nk); break;
      case 8: accumulate_pv<8>(ot + c0 * kRows, alpha, p, v + c0, vs, nk); break;
      default:
        for (int64_t c = c0; c < cols; ++c) accumulate_pv<1>(ot + c * kRows, alpha, p, v + c, vs, nk);
    }
  }
}

// One head over one block of `rows` (≤ 16) queries starting at i0 of batch b. mt [tk][16]: the block's additive mask
// (-inf where masked), skip[kb]: key block kb masked for every row.
__attribute__((target("avx512f"))) void attend_block(const AttentionOperands& a, int64_t b, int64_t h, int64_t i0,
                                                     int64_t rows, const float* mt, const char* skip, Scratch& s) {
  const int64_t d = a.d, tk = a.tk, g = h / (a.hq / a.hk);
  const float* q = a.q + b * a.qs0 + h * a.qs1 + i0 * a.qs2;
  const float* k = a.k + b * a.ks0 + g * a.ks1;
  const float* v = a.v + b * a.vs0 + g * a.vs1;
  float* qt = grow(s.qt, d * kRows);
  float* ot = grow(s.ot, d * kRows);
  float* p = grow(s.p, kKeys * kRows);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t r = 0; r < kRows; ++r) qt[i * kRows + r] = r < rows ? q[r * a.qs2 + i] : 0.0f;
  std::fill(ot, ot + d * kRows, 0.0f);
  const __m512 scale = _mm512_set1_ps(a.scale), neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 m = neg_inf, l = _mm512_setzero_ps();
  for (int64_t k0 = 0, kb = 0; k0 < tk; k0 += kKeys, ++kb) {
    if (skip[kb]) continue;
    const int64_t nk = std::min(kKeys, tk - k0);
    __m512 block_max = neg_inf;
    for (int64_t j0 = 0; j0 < nk; j0 += 8) {
      __m512 sc[8];
      // Keys past the end read the last one again; their scores are set to -inf below.
      const int64_t base = std::min(k0 + j0, tk - 8 >= 0 ? tk - 8 : 0);
      if (tk >= 8) {
        scores8(qt, k + base * a.ks2, a.ks2, d, sc);
      } else {
        for (int j = 0; j < 8; ++j) {
          __m512 acc = _mm512_setzero_ps();
          const float* kr = k + std::min<int64_t>(j, tk - 1) * a.ks2;
          for (int64_t i = 0; i < d; ++i) acc = _mm512_fmadd_ps(_mm512_loadu_ps(qt + i * kRows), _mm512_set1_ps(kr[i]), acc);
          sc[j] = acc;
        }
      }
      for (int64_t j = j0; j < std::min(nk, j0 + 8); ++j) {
        const __m512 add = _mm512_loadu_ps(mt + (k0 + j) * kRows);
        const __mmask16 masked = _mm512_cmp_ps_mask(add, neg_inf, _CMP_EQ_OQ);
        const __m512 sv = _mm512_mask_mov_ps(_mm512_add_ps(_mm512_mul_ps(sc[k0 + j - base], scale), add), masked, neg_inf);
        _mm512_storeu_ps(p + j * kRows, sv);
        block_max = _mm512_max_ps(block_max, sv);
      }
    }
    const __m512 m_new = _mm512_max_ps(m, block_max);
    const __m512 safe = _mm512_mask_mov_ps(m_new, _mm512_cmp_ps_mask(m_new, neg_inf, _CMP_EQ_OQ), _mm512_setzero_ps());
    const __m512 alpha = exp16(_mm512_sub_ps(m, safe));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < nk; ++j) {
      const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(p + j * kRows), safe));
      _mm512_storeu_ps(p + j * kRows, e);
      sum = _mm512_add_ps(sum, e);
    }
    l = _mm512_fmadd_ps(l, alpha, sum);
    accumulate_pv_any(ot, alpha, p, v + k0 * a.vs2, a.vs2, nk, d);
    m = m_new;
  }
  alignas(64) float lsum[kRows];
  _mm512_store_ps(lsum, l);
  for (int64_t i = 0; i < d; ++i) _mm512_storeu_ps(ot + i * kRows, _mm512_div_ps(_mm512_loadu_ps(ot + i * kRows), l));
  for (int64_t r = 0; r < rows; ++r) {
    float* o = a.out + (b * a.tq + i0 + r) * a.hq * d + h * d;
    if (lsum[r] > 0) {
      for (int64_t i = 0; i < d; ++i) o[i] = ot[i * kRows + r];
    } else if (a.empty_rows_zero) {
      std::fill(o, o + d, 0.0f);
    } else {  // no visible key (or NaN): the row-wise kernel reproduces eager's softmax of such a row
      float* scores = grow(s.row, tk);
      raw::attend_one(q + r * a.qs2, k, a.ks2, v, a.vs2, tk, d,
                      a.mask ? a.mask + b * a.ms0 + (i0 + r) * a.ms2 : nullptr, a.ms3, a.scale, o, scores);
    }
  }
}

#endif  // __x86_64__

}  // namespace

bool blocked_attention_supported() {
#if defined(__x86_64__)
  return cpu_avx512f();
#else
  return false;
#endif
}

void blocked_attention(const AttentionOperands& a) {
#if defined(__x86_64__)
  TORCH_CHECK(cpu_avx512f(), "kernels::blocked_attention needs AVX-512F");
  const int64_t blocks = (a.tq + kRows - 1) / kRows, key_blocks = (a.tk + kKeys - 1) / kKeys;
  // Tasks: (batch, query block, chunk of heads). Query blocks in zig-zag order (0, last, 1, last - 1, ...), so the
  // contiguous ranges parallel_for hands out pair the short causal rows with the long ones. Heads are chunked only
  // when there are too few query blocks to keep every thread busy (a chunk shares one mask layout).
  const int64_t threads = at::get_num_threads();
  const int64_t chunks = std::clamp<int64_t>((4 * threads + a.batch * blocks - 1) / (a.batch * blocks), 1, a.hq);
  const int64_t per_chunk = (a.hq + chunks - 1) / chunks;
  const int64_t tasks = a.batch * blocks * chunks;
  const int64_t work = std::max<int64_t>(1, kRows * a.tk * a.d * per_chunk);
  at::parallel_for(0, tasks, std::max<int64_t>(1, (1 << 18) / work), [&](int64_t t0, int64_t t1) {
    Scratch& s = tls;
    float* mt = grow(s.mt, key_blocks * kKeys * kRows);
    char* skip = grow(s.skip, key_blocks);
    constexpr float lowest = std::numeric_limits<float>::lowest();
    const float inf = std::numeric_limits<float>::infinity();
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t b = task / (blocks * chunks), z = (task / chunks) % blocks, chunk = task % chunks;
      const int64_t qb = (z % 2 == 0) ? z / 2 : blocks - 1 - z / 2;
      const int64_t i0 = qb * kRows, rows = std::min(kRows, a.tq - i0);
      for (int64_t kb = 0; kb < key_blocks; ++kb) {
        bool all_masked = true;
        for (int64_t j = kb * kKeys; j < std::min(a.tk, (kb + 1) * kKeys); ++j)
          for (int64_t r = 0; r < kRows; ++r) {
            float add = 0.0f;
            if (r < rows) {
              if (a.mask) add = a.mask[b * a.ms0 + (i0 + r) * a.ms2 + j * a.ms3];
              if ((a.causal && j > a.causal_offset + i0 + r) || (a.key_keep && !a.key_keep[b * a.keep_s0 + j]))
                add = -inf;
              if (add <= lowest) add = -inf;
            }
            mt[j * kRows + r] = add;
            all_masked = all_masked && (r >= rows || add == -inf);
          }
        skip[kb] = all_masked;
      }
      for (int64_t h = chunk * per_chunk; h < std::min(a.hq, (chunk + 1) * per_chunk); ++h)
        attend_block(a, b, h, i0, rows, mt, skip, s);
    }
  });
#else
  (void)a;
  TORCH_CHECK(false, "kernels::blocked_attention needs x86-64 AVX-512F");
#endif
}

}  // namespace transformers::kernels
