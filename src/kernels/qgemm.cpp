// Prompt processing on weight-only int8 / int4 Linears (kernels.h qgemm): the activations are quantized per row and
// kQBlock block (Q8_0), then an integer GEMM with int32 accumulation per block and fp32 scaling.
// AVX-512 VNNI: the weight is the broadcast operand (4 consecutive codes as u8: int8 codes XOR 0x80, int4 codes
// unpacked) and 16 tokens' activations the s8 vector operand, so the weight needs no layout of its own: a tile of
// rows is converted on the fly into a buffer that stays in cache and serves every block of tokens.
// Without VNNI a scalar loop computes the same numbers.
#include "pch.h"

#include "transformers/kernels.h"

#include <ATen/Parallel.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>

namespace transformers::kernels {

using raw::kQBlock;

namespace {

constexpr int64_t kTokens = 32;    // tokens per packed activation block (two vectors of 16 int32 lanes)
constexpr int kRows = 4;           // weight rows per micro-kernel
constexpr int64_t kTileRows = 64;  // weight rows converted per tile (a multiple of kRows)

std::atomic<bool> force_scalar{false};

bool cpu_vnni() {
#if defined(__x86_64__)
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return yes && !force_scalar.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

// 64-byte aligned scratch (std::vector gives no alignment guarantee past 16 bytes).
template <typename T>
struct Buffer {
  std::unique_ptr<unsigned char[]> raw;
  T* data = nullptr;
  explicit Buffer(int64_t n) : raw(new unsigned char[static_cast<size_t>(n) * sizeof(T) + 64]()) {
    auto p = reinterpret_cast<uintptr_t>(raw.get());
    data = reinterpret_cast<T*>((p + 63) & ~uintptr_t{63});
  }
};

// The quantized activations of all m rows, packed for the micro-kernel: per block of kTokens tokens, the codes as
// [in_pad / 4][kTokens][4] (4 consecutive inputs of one token form the s8 quadruple vpdpbusd multiplies), the
// per-block scales d [nb][kTokens], -128 · sums [nb][kTokens] (int8: the XOR 0x80 offset of the weight) and, per
// weight group, Σ_b d · sums [groups][kTokens] (int4: the zero point's term). Padding tokens are all zero.
// int4 stores each block's inputs in the order its unpacked codes have: the 16 low nibbles (inputs 0, 2, .., 30)
// then the 16 high nibbles (1, 3, .., 31).
struct Panel {
  int64_t m, in, in_pad, nb, blocks, groups, bpg;
  Buffer<int8_t> q;
  Buffer<float> d;
  Buffer<int32_t> negsum;
  Buffer<float> gsum;
  Panel(int64_t m_, int64_t in_, int64_t group_blocks)
      : m(m_),
        in(in_),
        in_pad((in_ + kQBlock - 1) / kQBlock * kQBlock),
        nb(in_pad / kQBlock),
        blocks((m_ + kTokens - 1) / kTokens),
        groups((nb + group_blocks - 1) / group_blocks),
        bpg(group_blocks),
        q(blocks * in_pad * kTokens),
        d(blocks * nb * kTokens),
        negsum(blocks * nb * kTokens),
        gsum(blocks * groups * kTokens) {}
};

void pack_activations(Panel& p, const float* x, bool int4) {
  const int64_t in_pad = p.in_pad, nb = p.nb;
  at::parallel_for(0, p.m, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(in_pad, 1)),
                   [&](int64_t t0, int64_t t1) {
                     Buffer<int8_t> row(in_pad), perm(in_pad);
                     Buffer<float> d(nb);
                     Buffer<int32_t> sums(nb);
                     for (int64_t t = t0; t < t1; ++t) {
                       raw::quantize_row_q8(x + t * p.in, p.in, row.data, d.data, sums.data);
                       const int8_t* src = row.data;
                       if (int4) {
                         for (int64_t b = 0; b < nb; ++b)
                           for (int64_t j = 0; j < 16; ++j) {
                             perm.data[b * kQBlock + j] = row.data[b * kQBlock + 2 * j];
                             perm.data[b * kQBlock + 16 + j] = row.data[b * kQBlock + 2 * j + 1];
                           }
                         src = perm.data;
                       }
                       const int64_t tb = t / kTokens, lane = t % kTokens;
                       int8_t* dst = p.q.data + tb * in_pad * kTokens + lane * 4;
                       for (int64_t k = 0; k < in_pad / 4; ++k) std::memcpy(dst + k * kTokens * 4, src + 4 * k, 4);
                       float* dd = p.d.data + tb * nb * kTokens + lane;
                       int32_t* ns = p.negsum.data + tb * nb * kTokens + lane;
                       float* gs = p.gsum.data + tb * p.groups * kTokens + lane;
                       for (int64_t b = 0; b < nb; ++b) {
                         dd[b * kTokens] = d.data[b];
                         ns[b * kTokens] = -128 * sums.data[b];
                       }
                       for (int64_t g = 0; g < p.groups; ++g) {
                         float acc = 0;
                         for (int64_t b = g * p.bpg; b < std::min(nb, (g + 1) * p.bpg); ++b)
                           acc += d.data[b] * static_cast<float>(sums.data[b]);
                         gs[g * kTokens] = acc;
                       }
                     }
                   });
}

#if defined(__x86_64__)
// Rows [o0, o0 + rows) of the weight as u8 codes [rows][in_pad] for the broadcast operand: int8 XOR 0x80, int4
// unpacked per block in the panel's order; zero past `in`. (Plain loops, vectorised by the compiler for AVX-512.)
__attribute__((target("avx512f,avx512bw,avx512vl"))) void convert_tile(int bits, const void* w, int64_t in, int64_t in_pad, int64_t o0, int64_t rows, uint8_t* dst) {
  if (bits == 8) {
    const auto* src = static_cast<const uint8_t*>(w) + o0 * in;
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* s = src + r * in;
      uint8_t* o = dst + r * in_pad;
      for (int64_t i = 0; i < in; ++i) o[i] = static_cast<uint8_t>(s[i] ^ 0x80u);
      std::memset(o + in, 0, static_cast<size_t>(in_pad - in));
    }
    return;
  }
  const int64_t row_bytes = (in + 1) / 2;
  const auto* src = static_cast<const uint8_t*>(w) + o0 * row_bytes;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* s = src + r * row_bytes;
    uint8_t* o = dst + r * in_pad;
    const int64_t full = row_bytes / 16;  // blocks whose 16 bytes all lie in the row
    for (int64_t b = 0; b < full; ++b)
      for (int64_t j = 0; j < 16; ++j) {
        const uint8_t byte = s[b * 16 + j];
        o[b * kQBlock + j] = byte & 15u;
        o[b * kQBlock + 16 + j] = static_cast<uint8_t>(byte >> 4);
      }
    for (int64_t b = full; b < in_pad / kQBlock; ++b)
      for (int64_t j = 0; j < 16; ++j) {
        const int64_t k = b * 16 + j;
        const uint8_t byte = k < row_bytes ? s[k] : 0;
        o[b * kQBlock + j] = byte & 15u;
        o[b * kQBlock + 16 + j] = static_cast<uint8_t>(byte >> 4);
      }
  }
}

// What a micro-kernel reads besides the codes, and where it writes.
struct TileArgs {
  const int8_t* act;      // the panel's codes of one block of tokens
  const float* d;         // its block scales [nb][kTokens]
  const int32_t* negsum;  // -128 · sums [nb][kTokens]
  const float* gsum;      // Σ_{b∈g} d · sums [groups][kTokens]
  const float* scale;     // int4: [R][groups] scales of the rows (zero for padding rows)
  const float* sz;        // int4: [R][groups] −scale · zero
  int64_t groups, nb, bpg;
  const float* row_scale;  // int8: the rows' scales (rn of them)
  const float* bias;       // the rows' bias (rn of them) or null
  int64_t rn, tn;          // valid rows and tokens
  float* y;                // y + t0 * ldy + o
  int64_t ldy;
};

// y [tn, rn] of R weight rows (u8 codes, row stride ldw) against J vectors of 16 tokens of one activation block.
// int8: scale · Σ_b d · (Σ (w + 128) q − 128 sums); int4: Σ_g (s Σ_{b∈g} d · Σ code q + sz Σ_{b∈g} d sums); + bias.
template <int R, int J, bool Q4>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void micro_kernel(const uint8_t* w, int64_t ldw,
                                                                                  const TileArgs& a) {
  __m512 f[R][J];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) f[r][j] = _mm512_setzero_ps();
  for (int64_t g = 0, b = 0; b < a.nb; ++g) {
    const int64_t bend = std::min(a.nb, b + a.bpg);
    for (; b < bend; ++b) {
      __m512i acc[R][J];
      for (int j = 0; j < J; ++j) {
        const __m512i init = Q4 ? _mm512_setzero_si512() : _mm512_load_si512(a.negsum + b * kTokens + 16 * j);
        for (int r = 0; r < R; ++r) acc[r][j] = init;
      }
      const int8_t* act = a.act + b * kQBlock * kTokens;
      const uint8_t* wb = w + b * kQBlock;
      for (int k = 0; k < kQBlock / 4; ++k) {
        __m512i av[J];
        for (int j = 0; j < J; ++j) av[j] = _mm512_load_si512(act + k * kTokens * 4 + 64 * j);
        for (int r = 0; r < R; ++r) {
          int32_t quad;
          std::memcpy(&quad, wb + r * ldw + 4 * k, 4);
          const __m512i wv = _mm512_set1_epi32(quad);
          for (int j = 0; j < J; ++j) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], wv, av[j]);
        }
      }
      for (int j = 0; j < J; ++j) {
        const __m512 dv = _mm512_load_ps(a.d + b * kTokens + 16 * j);
        for (int r = 0; r < R; ++r) {
          const __m512 v = _mm512_cvtepi32_ps(acc[r][j]);
          if (Q4)
            f[r][j] = _mm512_fmadd_ps(_mm512_mul_ps(v, dv), _mm512_set1_ps(a.scale[r * a.groups + g]), f[r][j]);
          else
            f[r][j] = _mm512_fmadd_ps(v, dv, f[r][j]);
        }
      }
    }
    if (Q4)
      for (int j = 0; j < J; ++j) {
        const __m512 gv = _mm512_load_ps(a.gsum + g * kTokens + 16 * j);
        for (int r = 0; r < R; ++r) f[r][j] = _mm512_fmadd_ps(_mm512_set1_ps(a.sz[r * a.groups + g]), gv, f[r][j]);
      }
  }
  for (int r = 0; r < R; ++r) {
    const __m512 bv = _mm512_set1_ps(a.bias && r < a.rn ? a.bias[r] : 0.0f);
    const __m512 sv = _mm512_set1_ps(Q4 ? 1.0f : r < a.rn ? a.row_scale[r] : 0.0f);
    for (int j = 0; j < J; ++j) f[r][j] = Q4 ? _mm512_add_ps(f[r][j], bv) : _mm512_fmadd_ps(f[r][j], sv, bv);
  }
  if constexpr (R == 4) {
    if (a.rn == R && a.tn == 16 * J) {
      // 4 rows x 16 tokens -> 16 stores of the 4 rows of one token: lane L of u[k] holds token 4 L + k.
      for (int j = 0; j < J; ++j) {
        const __m512 t0 = _mm512_unpacklo_ps(f[0][j], f[1][j]), t1 = _mm512_unpackhi_ps(f[0][j], f[1][j]);
        const __m512 t2 = _mm512_unpacklo_ps(f[2][j], f[3][j]), t3 = _mm512_unpackhi_ps(f[2][j], f[3][j]);
        const __m512 u[4] = {_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2))),
                             _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)))};
        float* y = a.y + 16 * j * a.ldy;
        for (int k = 0; k < 4; ++k) {
          _mm_storeu_ps(y + k * a.ldy, _mm512_castps512_ps128(u[k]));
          _mm_storeu_ps(y + (4 + k) * a.ldy, _mm512_extractf32x4_ps(u[k], 1));
          _mm_storeu_ps(y + (8 + k) * a.ldy, _mm512_extractf32x4_ps(u[k], 2));
          _mm_storeu_ps(y + (12 + k) * a.ldy, _mm512_extractf32x4_ps(u[k], 3));
        }
      }
      return;
    }
  }
  alignas(64) float tmp[R][16 * J];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) _mm512_store_ps(tmp[r] + 16 * j, f[r][j]);
  for (int64_t t = 0; t < a.tn; ++t)
    for (int64_t r = 0; r < a.rn; ++r) a.y[t * a.ldy + r] = tmp[r][t];
}
#endif

// Σ code · q per (token, block) of one weight row, on int16 copies (compilers turn the block's dot into pmaddwd, and
// into vpmaddwd on the AVX2 clone). out [m][nb].
#if defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void block_dots(const int16_t* code, const int16_t* q, int64_t m, int64_t nb, int32_t* out) {
  const int64_t in_pad = nb * kQBlock;
  for (int64_t t = 0; t < m; ++t)
    for (int64_t b = 0; b < nb; ++b) {
      const int16_t* c = code + b * kQBlock;
      const int16_t* x = q + t * in_pad + b * kQBlock;
      int32_t s = 0;
      for (int64_t i = 0; i < kQBlock; ++i) s += static_cast<int32_t>(c[i]) * static_cast<int32_t>(x[i]);
      out[t * nb + b] = s;
    }
}

// Without VNNI: the same numbers from the natural-order codes.
void qgemm_scalar(int bits, const void* w, const float* scale, const uint8_t* zero, int64_t group_size, const float* x,
                  float* y, const float* bias, int64_t m, int64_t out, int64_t in) {
  const int64_t in_pad = (in + kQBlock - 1) / kQBlock * kQBlock, nb = in_pad / kQBlock;
  const int64_t bpg = bits == 4 ? group_size / kQBlock : std::max<int64_t>(nb, 1);
  const int64_t groups = (nb + bpg - 1) / bpg;
  Buffer<int8_t> q8(in_pad);
  Buffer<int16_t> q(m * in_pad);
  Buffer<float> d(m * nb), gsum(m * groups);
  Buffer<int32_t> sums(m * nb);
  for (int64_t t = 0; t < m; ++t) {
    raw::quantize_row_q8(x + t * in, in, q8.data, d.data + t * nb, sums.data + t * nb);
    for (int64_t i = 0; i < in_pad; ++i) q.data[t * in_pad + i] = i < in ? q8.data[i] : 0;
    for (int64_t g = 0; g < groups; ++g) {
      float xs = 0;
      for (int64_t b = g * bpg; b < std::min(nb, (g + 1) * bpg); ++b)
        xs += d.data[t * nb + b] * static_cast<float>(sums.data[t * nb + b]);
      gsum.data[t * groups + g] = xs;
    }
  }
  const int64_t row_bytes = bits == 8 ? in : (in + 1) / 2;
  at::parallel_for(
      0, out, std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, m * in)), [&](int64_t o0, int64_t o1) {
        Buffer<int16_t> codes(in_pad);
        Buffer<int32_t> dots(m * nb);
        for (int64_t o = o0; o < o1; ++o) {
          const auto* row = static_cast<const uint8_t*>(w) + o * row_bytes;
          for (int64_t i = 0; i < in_pad; ++i)
            codes.data[i] = static_cast<int16_t>(i >= in     ? 0
                                                 : bits == 8 ? static_cast<int8_t>(row[i])
                                                 : (i % 2)   ? row[i / 2] >> 4
                                                             : row[i / 2] & 15);
          block_dots(codes.data, q.data, m, nb, dots.data);
          for (int64_t t = 0; t < m; ++t) {
            float acc = 0;
            for (int64_t g = 0; g < groups; ++g) {
              float dot = 0;
              for (int64_t b = g * bpg; b < std::min(nb, (g + 1) * bpg); ++b)
                dot += d.data[t * nb + b] * static_cast<float>(dots.data[t * nb + b]);
              if (bits == 8)
                acc += dot;
              else
                acc += scale[o * groups + g] * dot -
                       scale[o * groups + g] * static_cast<float>(zero[o * groups + g]) * gsum.data[t * groups + g];
            }
            y[t * out + o] = (bits == 8 ? acc * scale[o] : acc) + (bias ? bias[o] : 0.0f);
          }
        }
      });
}

}  // namespace

const char* qgemm_isa() { return cpu_vnni() ? "avx512_vnni" : "scalar"; }
void set_qgemm_scalar(bool on) { force_scalar.store(on, std::memory_order_relaxed); }

void qgemm(int bits, const void* w, const float* scale, const uint8_t* zero, int64_t group_size, const float* x,
           float* y, const float* bias, int64_t m, int64_t out, int64_t in) {
  TORCH_CHECK(bits == 8 || bits == 4, "qgemm: bits must be 8 or 4, got ", bits);
  TORCH_CHECK(bits == 8 || (group_size > 0 && group_size % kQBlock == 0),
              "qgemm: int4 group size must be a positive multiple of ", kQBlock, ", got ", group_size);
  if (m <= 0 || out <= 0) return;
  if (!cpu_vnni()) return qgemm_scalar(bits, w, scale, zero, group_size, x, y, bias, m, out, in);
#if defined(__x86_64__)
  const bool q4 = bits == 4;
  const int64_t nb_all = (in + kQBlock - 1) / kQBlock;
  Panel p(m, in, q4 ? group_size / kQBlock : std::max<int64_t>(nb_all, 1));
  pack_activations(p, x, q4);
  const int64_t tiles = (out + kTileRows - 1) / kTileRows;
  // Small products stay on the calling thread.
  const int64_t work = 2 * m * std::max<int64_t>(in, 1) * kTileRows;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 22) / work);
  at::parallel_for(0, tiles, grain, [&](int64_t tile0, int64_t tile1) {
    Buffer<uint8_t> wt(kTileRows * p.in_pad);
    Buffer<float> sc(q4 ? kTileRows * p.groups : 1), sz(q4 ? kTileRows * p.groups : 1);
    for (int64_t tile = tile0; tile < tile1; ++tile) {
      const int64_t o0 = tile * kTileRows, rows = std::min(kTileRows, out - o0);
      const int64_t rows_pad = (rows + kRows - 1) / kRows * kRows;
      convert_tile(bits, w, in, p.in_pad, o0, rows, wt.data);
      std::memset(wt.data + rows * p.in_pad, 0, static_cast<size_t>((rows_pad - rows) * p.in_pad));
      if (q4) {  // padding rows: scale and −scale · zero 0
        for (int64_t i = 0; i < rows * p.groups; ++i) {
          sc.data[i] = scale[o0 * p.groups + i];
          sz.data[i] = -scale[o0 * p.groups + i] * static_cast<float>(zero[o0 * p.groups + i]);
        }
        std::fill(sc.data + rows * p.groups, sc.data + rows_pad * p.groups, 0.0f);
        std::fill(sz.data + rows * p.groups, sz.data + rows_pad * p.groups, 0.0f);
      }
      for (int64_t tb = 0; tb < p.blocks; ++tb) {
        const int64_t t0 = tb * kTokens;
        TileArgs a;
        a.act = p.q.data + tb * p.in_pad * kTokens;
        a.d = p.d.data + tb * p.nb * kTokens;
        a.negsum = p.negsum.data + tb * p.nb * kTokens;
        a.gsum = p.gsum.data + tb * p.groups * kTokens;
        a.groups = p.groups, a.nb = p.nb, a.bpg = p.bpg;
        a.tn = std::min(kTokens, m - t0);
        a.ldy = out;
        for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
          a.scale = sc.data + r0 * p.groups;
          a.sz = sz.data + r0 * p.groups;
          a.row_scale = scale + o0 + r0;
          a.bias = bias ? bias + o0 + r0 : nullptr;
          a.rn = std::min<int64_t>(kRows, rows - r0);
          a.y = y + t0 * out + o0 + r0;
          const uint8_t* wr = wt.data + r0 * p.in_pad;
          if (q4) {
            if (a.tn > 16)
              micro_kernel<kRows, 2, true>(wr, p.in_pad, a);
            else
              micro_kernel<kRows, 1, true>(wr, p.in_pad, a);
          } else {
            if (a.tn > 16)
              micro_kernel<kRows, 2, false>(wr, p.in_pad, a);
            else
              micro_kernel<kRows, 1, false>(wr, p.in_pad, a);
          }
        }
      }
    }
  });
#endif
}

}  // namespace transformers::kernels
