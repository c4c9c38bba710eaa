// One-row GEMV on weight-only int8 / int4 codes with integer dot products (include/transformers/kernels.h, "Weight-only
// quantized Linears"). The activation row is quantized once per call per block of kQBlock inputs (llama.cpp's Q8_0);
// each row then meets it with AVX-512 VNNI vpdpbusd (u8 × s8 → int32, 64 inputs per instruction), and the int32 lanes
// are scaled in fp32 per block. A scalar fallback computes the same integer sums on any CPU.
#include "pch.h"

#include "transformers/kernels.h"

#include "kernels/internal.h"
#include "kernels/parallel.h"
#include "kernels/simd.h"

#include <ATen/Parallel.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

namespace transformers::kernels {

namespace {

using raw::kQBlock;
constexpr int64_t kChunk = 64;   // int8: inputs per vpdpbusd (two blocks)
constexpr int64_t kSuper = 128;  // int4: inputs per 64 packed bytes (four blocks); the scratch is padded to these

// Per-call state, reused across calls: decode runs this ~100 times per token. Everything is padded to whole
// super-chunks with zeros (codes past `in` then meet q = 0 and d = 0).
struct Scratch {
  std::vector<int8_t> q;          // [supers * 128] natural order
  std::vector<int8_t> qd;         // int4: per super-chunk [even inputs | odd inputs], as the unpacked codes
  std::vector<float> d;           // [supers * 4] block scales
  std::vector<int32_t> sums;      // [supers * 4]
  std::vector<float> lane_scale;  // [chunks * 16]: the block scale of each int32 lane of a (super-)chunk's product
  std::vector<float> xsum;        // int4: Σ x̃ per group
  std::vector<int32_t> lidx, gbase;
  std::vector<uint16_t> gmask;
};
thread_local Scratch tls;
std::atomic<bool> force_scalar{false};

// Rows per parallel chunk: the whole matrix on the calling thread below min_parallel_bytes() (as the float GEMV).
int64_t grain_rows(int64_t rows, int64_t row_bytes) {
  if (rows * row_bytes < min_parallel_bytes() || at::get_num_threads() <= 1) return rows + 1;
  return std::max<int64_t>(16, rows / (4 * at::get_num_threads()));
}

inline float finish(float dot, float* y, const float* bias, int64_t o, bool accumulate) {
  const float v = dot + (bias ? bias[o] : 0.0f);
  return accumulate ? y[o] + v : v;
}

// ---- activation quantization ----

// d = max|x| / 127 over the block; NaN anywhere makes d NaN; d zero or not finite leaves q = 0 (the block then adds
// 0 · 0 = 0 or NaN, never a wrong finite value).
inline bool usable_scale(float d) { return d > 0 && std::isfinite(d); }

void quantize_row_scalar(const float* x, int64_t n, int8_t* q, float* d, int32_t* sums) {
  for (int64_t b0 = 0, blk = 0; b0 < n; b0 += kQBlock, ++blk) {
    const int64_t len = std::min(kQBlock, n - b0);
    float amax = 0;
    bool nan = false;
    for (int64_t i = 0; i < len; ++i) {
      const float a = std::fabs(x[b0 + i]);
      nan = nan || std::isnan(a);
      amax = std::max(amax, a);
    }
    const float db = nan ? std::numeric_limits<float>::quiet_NaN() : amax / 127.0f;
    int32_t s = 0;
    for (int64_t i = 0; i < len; ++i) {
      int32_t v = 0;
      if (usable_scale(db)) v = static_cast<int32_t>(std::clamp(std::nearbyint(x[b0 + i] / db), -127.0f, 127.0f));
      q[b0 + i] = static_cast<int8_t>(v);
      s += v;
    }
    d[blk] = db;
    sums[blk] = s;
  }
}

#if defined(__x86_64__)

bool cpu_vnni() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return yes && !force_scalar.load(std::memory_order_relaxed);
}

using simd::hmax;
using simd::hsum;

__attribute__((target("avx512f"))) inline int32_t hsum_epi32(__m512i v) {
  __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
  return _mm_cvtsi128_si32(s4);
}

// The same numbers as quantize_row_scalar: IEEE division and round-to-nearest-even (vcvtps2dq under the default MXCSR,
// std::nearbyint under the default rounding mode).
__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_row_avx512(const float* x, int64_t n, int8_t* q,
                                                                               float* d, int32_t* sums) {
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  for (int64_t b0 = 0, blk = 0; b0 < n; b0 += kQBlock, ++blk) {
    const int64_t len = std::min(kQBlock, n - b0);
    const __mmask16 m0 = static_cast<__mmask16>(len >= 16 ? 0xffff : (1u << len) - 1);
    const __mmask16 m1 = static_cast<__mmask16>(len >= 32 ? 0xffff : len > 16 ? (1u << (len - 16)) - 1 : 0);
    const __m512 x0 = _mm512_maskz_loadu_ps(m0, x + b0), x1 = _mm512_maskz_loadu_ps(m1, x + b0 + 16);
    const bool nan = (_mm512_cmp_ps_mask(x0, x0, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x1, x1, _CMP_UNORD_Q)) != 0;
    const float amax = hmax(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float db = nan ? std::numeric_limits<float>::quiet_NaN() : amax / 127.0f;
    __m512i q0 = _mm512_setzero_si512(), q1 = _mm512_setzero_si512();
    if (usable_scale(db)) {
      const __m512 dv = _mm512_set1_ps(db);
      q0 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_div_ps(x0, dv)), lo), hi);
      q1 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_div_ps(x1, dv)), lo), hi);
    }
    _mm512_mask_cvtsepi32_storeu_epi8(q + b0, m0, q0);
    _mm512_mask_cvtsepi32_storeu_epi8(q + b0 + 16, m1, q1);
    d[blk] = db;
    sums[blk] = hsum_epi32(_mm512_add_epi32(q0, q1));
  }
}

// int4 reads four rows side by side (sharing the activation loads, which pays on its heavier unpacking), with a
// software prefetch kPrefetch bytes ahead in the (contiguous) codes, one line per 64 bytes consumed: interleaved short
// rows defeat the hardware prefetcher (the 110M Llama's int4 Linears: ~5-7 GB/s without, ~12 with; one row per pass:
// about the same from DRAM, 20% slower from cache).
constexpr int kQ4Rows = 4;
constexpr int64_t kPrefetch = 4096;
inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p) + kPrefetch, _MM_HINT_T0); }

// acc + float(Σ₄ (w XOR 0x80) · q per int32 lane) · lane scales
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline __m512 step_q8(__m512i wv, __m512i xv, __m512 sv,
                                                                             __m512 acc) {
  const __m512i u = _mm512_xor_si512(wv, _mm512_set1_epi8(static_cast<char>(0x80)));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, xv)), sv, acc);
}

// ---- int8: vpdpbusd on (w XOR 0x80) = w + 128 as u8 against q as s8; the extra 128 · Σq per block is taken off
// once per row (`corr` = 128 Σ_b d_b sums_b). One row at a time, in order: decode streams every weight from DRAM,
// and one sequential stream, which the hardware prefetcher follows, read the 110M Llama's int8 Linears at ~17 GB/s
// against ~11 with four rows side by side and software prefetch (which wins only on cache-resident weights) ----
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void gemv_q8_vnni(
    const int8_t* w, const float* scale, const int8_t* qa, const float* ls, float corr, float* y, const float* bias,
    int64_t in, int64_t r0, int64_t r1, bool accumulate) {
  const int64_t full = in / kChunk;
  const __mmask64 tail = (in % kChunk) ? (~uint64_t{0} >> (64 - in % kChunk)) : 0;
  for (int64_t o = r0; o < r1; ++o) {
    const int8_t* row = w + o * in;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 2 <= full; c += 2) {
      const int64_t i = c * kChunk;
      a0 = step_q8(_mm512_loadu_si512(row + i), _mm512_loadu_si512(qa + i), _mm512_loadu_ps(ls + c * 16), a0);
      a1 = step_q8(_mm512_loadu_si512(row + i + kChunk), _mm512_loadu_si512(qa + i + kChunk),
                   _mm512_loadu_ps(ls + c * 16 + 16), a1);
    }
    if (c < full)
      a0 = step_q8(_mm512_loadu_si512(row + c * kChunk), _mm512_loadu_si512(qa + c * kChunk),
                   _mm512_loadu_ps(ls + c * 16), a0);
    if (tail)
      a1 = step_q8(_mm512_maskz_loadu_epi8(tail, row + full * kChunk), _mm512_loadu_si512(qa + full * kChunk),
                   _mm512_loadu_ps(ls + full * 16), a1);
    y[o] = finish(scale[o] * (hsum(_mm512_add_ps(a0, a1)) - corr), y, bias, o, accumulate);
  }
}

// ---- int4: 64 packed bytes (128 inputs, a "super-chunk") → low nibbles = 64 even inputs, high nibbles = 64 odd
// inputs, each met by the activations deinterleaved the same way. Codes are u8 already, so vpdpbusd takes them as
// they are, and lane l of both products covers inputs of block l / 4: the two accumulate into one int32 vector. ----
template <bool kWhole>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline __m512 q4_dot(const uint8_t* p, __m512i xlo,
                                                                                      __m512i xhi, __mmask64 tail) {
  const __m512i v = kWhole ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(tail, p);
  const __m512i m = _mm512_set1_epi8(0x0f);
  const __m512i lo = _mm512_and_si512(v, m), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m);
  return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo), hi, xhi));
}

// R rows (p[r]) over super-chunks [c0, c1) of one group: g[r] += codes · q · d (per lane).
template <int R, bool kWhole>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline void q4_group(
    const uint8_t* const* p, const int8_t* qa, const float* ls, int64_t c0, int64_t c1, __mmask64 tail, __m512* g) {
  for (int64_t c = c0; c < c1; ++c) {
    if (kWhole)
      for (int k = 0; k < R; ++k) prefetch(p[0] + c * 64 * R + 64 * k);
    const __m512i xlo = _mm512_loadu_si512(qa + c * kSuper), xhi = _mm512_loadu_si512(qa + c * kSuper + 64);
    const __m512 sv = _mm512_loadu_ps(ls + c * 16);
    for (int r = 0; r < R; ++r) g[r] = _mm512_fmadd_ps(q4_dot<kWhole>(p[r] + c * 64, xlo, xhi, tail), sv, g[r]);
  }
}

// Four rows over super-chunks [c0, c1) when group_size % 128 != 0: the four blocks of a super-chunk lie in up to four
// consecutive groups from gbase[c]; lane l takes the scale of group gbase[c] + lidx[16c + l] (a permute of the row's
// scales loaded from there, gmask[c] of them).
template <int R, bool kWhole>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline void q4_lanes(
    const uint8_t* const* p, const float* const* s, const int8_t* qa, const float* ls, const int32_t* lidx,
    const int32_t* gbase, const uint16_t* gmask, int64_t c0, int64_t c1, __mmask64 tail, __m512* acc) {
  for (int64_t c = c0; c < c1; ++c) {
    if (kWhole)
      for (int k = 0; k < R; ++k) prefetch(p[0] + c * 64 * R + 64 * k);
    const __m512i xlo = _mm512_loadu_si512(qa + c * kSuper), xhi = _mm512_loadu_si512(qa + c * kSuper + 64);
    const __m512 sv = _mm512_loadu_ps(ls + c * 16);
    const __m512i idx = _mm512_loadu_si512(lidx + c * 16);
    const __mmask16 m = gmask[c];
    for (int r = 0; r < R; ++r) {
      const __m512 gs = _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(m, s[r] + gbase[c]));
      acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(q4_dot<kWhole>(p[r] + c * 64, xlo, xhi, tail), sv), gs, acc[r]);
    }
  }
}

struct Q4Layout {  // per-call tables of gemv_q4's VNNI path
  const int8_t* qa;       // activations deinterleaved per super-chunk
  const float* ls;        // [supers * 16] block scale of each lane
  const int32_t* lidx;    // [supers * 16] group of each lane, relative to gbase
  const int32_t* gbase;   // [supers]
  const uint16_t* gmask;  // [supers] groups spanned, as a load mask
  const float* xsum;      // [groups]
};

// y[o] = Σ_g s[o,g] · (Σ_{b∈g} d_b Σ_{i∈b} code·q − z[o,g] · xsum[g]). With group_size % 128 == 0 a group is whole
// super-chunks and its scale multiplies a per-group accumulator; otherwise the scales are set per lane.
template <int R>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void gemv_q4_vnni(
    const uint8_t* packed, const float* scale, const uint8_t* zero, int64_t gs, const Q4Layout& t, float* y,
    const float* bias, int64_t in, int64_t r0, int64_t r1, bool accumulate) {
  const int64_t rb = (in + 1) / 2, groups = (in + gs - 1) / gs, supers = (in + kSuper - 1) / kSuper;
  const int64_t full = in / kSuper, tail_bytes = rb - full * 64;
  const __mmask64 tail = tail_bytes > 0 ? (~uint64_t{0} >> (64 - tail_bytes)) : 0;
  for (int64_t o = r0; o < r1; o += R) {
    const int64_t nr = std::min<int64_t>(R, r1 - o);
    const uint8_t* p[R];
    const float* s[R];
    __m512 acc[R];
    for (int r = 0; r < R; ++r) {  // past the last row: repeat it (computed, not stored)
      p[r] = packed + (o + std::min<int64_t>(r, nr - 1)) * rb;
      s[r] = scale + (o + std::min<int64_t>(r, nr - 1)) * groups;
      acc[r] = _mm512_setzero_ps();
    }
    if (gs % kSuper == 0) {
      const int64_t per_group = gs / kSuper;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t c0 = g * per_group, c1 = std::min(supers, c0 + per_group);
        __m512 ga[R];
        for (int r = 0; r < R; ++r) ga[r] = _mm512_setzero_ps();
        q4_group<R, true>(p, t.qa, t.ls, c0, std::min(c1, full), tail, ga);
        if (c1 > full) q4_group<R, false>(p, t.qa, t.ls, full, c1, tail, ga);
        for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(ga[r], _mm512_set1_ps(s[r][g]), acc[r]);
      }
    } else {
      q4_lanes<R, true>(p, s, t.qa, t.ls, t.lidx, t.gbase, t.gmask, 0, full, tail, acc);
      if (supers > full) q4_lanes<R, false>(p, s, t.qa, t.ls, t.lidx, t.gbase, t.gmask, full, supers, tail, acc);
    }
    float v[R];
    for (int r = 0; r < R; ++r) v[r] = hsum(acc[r]);
    for (int r = 0; r < nr; ++r) {
      float z = 0;
      for (int64_t g = 0; g < groups; ++g) z += s[r][g] * static_cast<float>(zero[(o + r) * groups + g]) * t.xsum[g];
      y[o + r] = finish(v[r] - z, y, bias, o + r, accumulate);
    }
  }
}

#endif  // __x86_64__

// ---- scalar fallbacks: the same integer sums per block, fp32 scaling ----

void gemv_q8_scalar(const int8_t* w, const float* scale, const int8_t* q, const float* d, float* y,
                    const float* bias, int64_t in, int64_t r0, int64_t r1, bool accumulate) {
  for (int64_t o = r0; o < r1; ++o) {
    const int8_t* row = w + o * in;
    float acc = 0;
    for (int64_t b0 = 0, blk = 0; b0 < in; b0 += kQBlock, ++blk) {
      int32_t s = 0;
      for (int64_t i = b0; i < std::min(in, b0 + kQBlock); ++i) s += int32_t{row[i]} * int32_t{q[i]};
      acc += d[blk] * static_cast<float>(s);
    }
    y[o] = finish(scale[o] * acc, y, bias, o, accumulate);
  }
}

void gemv_q4_scalar(const uint8_t* packed, const float* scale, const uint8_t* zero, int64_t gs, const int8_t* q,
                    const float* d, const float* xsum, float* y, const float* bias, int64_t in, int64_t r0,
                    int64_t r1, bool accumulate) {
  const int64_t rb = (in + 1) / 2, groups = (in + gs - 1) / gs;
  for (int64_t o = r0; o < r1; ++o) {
    const uint8_t* row = packed + o * rb;
    float acc = 0;
    for (int64_t g = 0; g < groups; ++g) {
      float gacc = 0;
      for (int64_t b0 = g * gs; b0 < std::min(in, (g + 1) * gs); b0 += kQBlock) {
        int32_t s = 0;
        for (int64_t i = b0; i < std::min(in, b0 + kQBlock); ++i) {
          const uint8_t byte = row[i / 2];
          s += int32_t{(i % 2) ? (byte >> 4) : (byte & 15)} * int32_t{q[i]};
        }
        gacc += d[b0 / kQBlock] * static_cast<float>(s);
      }
      acc += scale[o * groups + g] * (gacc - static_cast<float>(zero[o * groups + g]) * xsum[g]);
    }
    y[o] = finish(acc, y, bias, o, accumulate);
  }
}

// Quantizes x into the scratch (zero-padded to whole super-chunks); returns the super-chunk count.
int64_t prepare(Scratch& s, const float* x, int64_t in) {
  const int64_t supers = (in + kSuper - 1) / kSuper;
  int8_t* q = grow(s.q, supers * kSuper);
  float* d = grow(s.d, supers * 4);
  int32_t* sums = grow(s.sums, supers * 4);
  std::fill(q + in, q + supers * kSuper, int8_t{0});
  std::fill(d, d + supers * 4, 0.0f);
  std::fill(sums, sums + supers * 4, 0);
  raw::quantize_row_q8(x, in, q, d, sums);
  return supers;
}

}  // namespace

bool q4_group_supported(int64_t group_size) { return group_size > 0 && group_size % kQBlock == 0; }

void set_qgemv_scalar(bool on) { force_scalar.store(on, std::memory_order_relaxed); }

const char* qgemv_isa() {
#if defined(__x86_64__)
  if (cpu_vnni()) return "avx512_vnni";
#endif
  return "scalar";
}

namespace raw {

void quantize_row_q8(const float* x, int64_t n, int8_t* q, float* d, int32_t* sums) {
#if defined(__x86_64__)
  if (cpu_vnni()) return quantize_row_avx512(x, n, q, d, sums);
#endif
  quantize_row_scalar(x, n, q, d, sums);
}

void gemv_q8(const int8_t* w, const float* scale, const float* x, float* y, const float* bias, int64_t out,
             int64_t in, bool accumulate, Part part) {
  Scratch& s = tls;
  const int64_t chunks = prepare(s, x, in) * (kSuper / kChunk);
  const int8_t* q = s.q.data();
  const float* d = s.d.data();
  const int64_t grain = grain_rows(out, in);
#if defined(__x86_64__)
  if (cpu_vnni()) {
    float* ls = grow(s.lane_scale, chunks * 16);
    float corr = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      std::fill(ls + c * 16, ls + c * 16 + 8, d[2 * c]);
      std::fill(ls + c * 16 + 8, ls + c * 16 + 16, d[2 * c + 1]);
    }
    for (int64_t b = 0; b < 2 * chunks; ++b) corr += d[b] * static_cast<float>(s.sums[b]);
    corr *= 128.0f;
    for_part(out, grain, part, [&](int64_t r0, int64_t r1) {
      gemv_q8_vnni(w, scale, q, ls, corr, y, bias, in, r0, r1, accumulate);
    });
    return;
  }
#endif
  (void)chunks;
  for_part(out, grain, part,
           [&](int64_t r0, int64_t r1) { gemv_q8_scalar(w, scale, q, d, y, bias, in, r0, r1, accumulate); });
}

void gemv_q4(const uint8_t* packed, const float* scale, const uint8_t* zero, int64_t group_size, const float* x,
             float* y, const float* bias, int64_t out, int64_t in, bool accumulate, Part part) {
  TORCH_CHECK(q4_group_supported(group_size), "kernels::raw::gemv_q4: group_size ", group_size,
              " is not a multiple of ", kQBlock);
  Scratch& s = tls;
  const int64_t supers = prepare(s, x, in);
  const int64_t groups = (in + group_size - 1) / group_size;
  const float* d = s.d.data();
  float* xsum = grow(s.xsum, groups);
  std::fill(xsum, xsum + groups, 0.0f);
  for (int64_t b = 0; b < (in + kQBlock - 1) / kQBlock; ++b)
    xsum[b * kQBlock / group_size] += d[b] * static_cast<float>(s.sums[b]);
  const int64_t grain = grain_rows(out, (in + 1) / 2 + groups * 5);
#if defined(__x86_64__)
  if (cpu_vnni()) {
    const int8_t* q = s.q.data();
    int8_t* qd = grow(s.qd, supers * kSuper);
    float* ls = grow(s.lane_scale, supers * 16);
    int32_t* lidx = grow(s.lidx, supers * 16);
    int32_t* gbase = grow(s.gbase, supers);
    uint16_t* gmask = grow(s.gmask, supers);
    auto group_of = [&](int64_t block) { return std::min(groups - 1, block * kQBlock / group_size); };
    for (int64_t c = 0; c < supers; ++c) {
      for (int64_t j = 0; j < kSuper / 2; ++j) {
        qd[c * kSuper + j] = q[c * kSuper + 2 * j];
        qd[c * kSuper + kSuper / 2 + j] = q[c * kSuper + 2 * j + 1];
      }
      gbase[c] = static_cast<int32_t>(group_of(4 * c));
      gmask[c] = static_cast<uint16_t>((1u << (group_of(4 * c + 3) - gbase[c] + 1)) - 1);
      for (int64_t l = 0; l < 16; ++l) {
        ls[c * 16 + l] = d[4 * c + l / 4];
        lidx[c * 16 + l] = static_cast<int32_t>(group_of(4 * c + l / 4) - gbase[c]);
      }
    }
    const Q4Layout layout{qd, ls, lidx, gbase, gmask, xsum};
    for_part(out, grain, part, [&](int64_t r0, int64_t r1) {
      gemv_q4_vnni<kQ4Rows>(packed, scale, zero, group_size, layout, y, bias, in, r0, r1, accumulate);
    });
    return;
  }
#endif
  (void)supers;
  const int8_t* q = s.q.data();
  for_part(out, grain, part, [&](int64_t r0, int64_t r1) {
    gemv_q4_scalar(packed, scale, zero, group_size, q, d, xsum, y, bias, in, r0, r1, accumulate);
  });
}

}  // namespace raw

}  // namespace transformers::kernels
