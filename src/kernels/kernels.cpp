// Fused CPU inference kernels (include/transformers/kernels.h). Raw loops over contiguous float32 / bfloat16 /
// float16 data: no dispatcher round trips and no temporaries, which is what a decode step of a small model is made of.
// AVX-512 (and AVX-512 BF16) variants are chosen at run time; every kernel has a portable scalar fallback.
#include "pch.h"

#include "transformers/kernels.h"

#include "kernels/internal.h"
#include "kernels/parallel.h"
#include "kernels/simd.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <unordered_set>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace transformers::kernels {

namespace {

std::atomic<int> enabled_state{-1};  // -1: not read from the environment yet
// 256 KB: measured on 2 cores (110M Llama decode, 2 threads), 1 MB → 256 KB took int4 from 292 to 378 tok/s (its
// 768 x 768 and 768 x 2048 codes are 0.3 and 0.8 MB) and left float32 / bf16 / the 260K model where they were.
// TFCPP_MIN_PARALLEL_BYTES overrides it (set_min_parallel_bytes at run time).
int64_t initial_parallel_bytes() {
  const char* env = std::getenv("TFCPP_MIN_PARALLEL_BYTES");
  return env && *env ? std::max<int64_t>(0, std::atoll(env)) : int64_t{256} << 10;
}
std::atomic<int64_t> parallel_bytes{initial_parallel_bytes()};

bool cpu_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return yes;
}

bool cpu_avx512_bf16() {
  // __builtin_cpu_supports has no "avx512bf16" in GCC 12: CPUID leaf 7 subleaf 1, EAX bit 5.
  static const bool yes = [] {
    if (!cpu_avx512()) return false;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(1));
    return ((eax >> 5) & 1u) != 0;
  }();
  return yes;
}

using simd::hsum;

inline float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// ---- GEMV row kernels: y[o] = dot(W[o, :], x) (+ bias[o]) for o in [r0, r1) ----

void gemv_f32_scalar(const float* w, const float* x, float* y, const float* bias, int64_t in, int64_t r0, int64_t r1) {
  for (int64_t o = r0; o < r1; ++o) {
    const float* row = w + o * in;
    float acc = 0;
    for (int64_t i = 0; i < in; ++i) acc += row[i] * x[i];
    y[o] = acc + (bias ? bias[o] : 0.0f);
  }
}

// One weight row at a time (a single sequential stream, which the hardware prefetcher follows: measured ~1.5x the
// GB/s of four interleaved rows from DRAM on Zen 4), four accumulators over 64-float chunks.
__attribute__((target("avx512f"))) void gemv_f32_avx512(const float* w, const float* x, float* y, const float* bias,
                                                         int64_t in, int64_t r0, int64_t r1) {
  const int64_t full = in & ~int64_t{15}, full64 = in & ~int64_t{63};
  const __mmask16 tail = static_cast<__mmask16>((1u << (in & 15)) - 1);
  for (int64_t o = r0; o < r1; ++o) {
    const float* w0 = w + o * in;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i < full64; i += 64) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i), _mm512_loadu_ps(x + i), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i + 16), _mm512_loadu_ps(x + i + 16), a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i + 32), _mm512_loadu_ps(x + i + 32), a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i < full; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i), _mm512_loadu_ps(x + i), a0);
    if (tail) a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w0 + full), _mm512_maskz_loadu_ps(tail, x + full), a0);
    y[o] = hsum(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))) + (bias ? bias[o] : 0.0f);
  }
}

// bf16 weights and bf16 activations, float32 accumulation.
void gemv_bf16_scalar(const uint16_t* w, const uint16_t* x, float* y, const float* bias, int64_t in, int64_t r0,
                      int64_t r1) {
  for (int64_t o = r0; o < r1; ++o) {
    const uint16_t* row = w + o * in;
    float acc = 0;
    for (int64_t i = 0; i < in; ++i) acc += bf16_to_float(row[i]) * bf16_to_float(x[i]);
    y[o] = acc + (bias ? bias[o] : 0.0f);
  }
}

// AVX-512F: widen bf16 to fp32 (a 16-bit shift) and FMA.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 load_bf16_masked(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void gemv_bf16_avx512(const uint16_t* w, const uint16_t* x,
                                                                            float* y, const float* bias, int64_t in,
                                                                            int64_t r0, int64_t r1) {
  const int64_t full = in & ~int64_t{15};
  const __mmask16 tail = static_cast<__mmask16>((1u << (in & 15)) - 1);
  for (int64_t o = r0; o < r1; ++o) {
    const uint16_t* row = w + o * in;
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t i = 0; i < full; i += 16) a0 = _mm512_fmadd_ps(load_bf16(row + i), load_bf16(x + i), a0);
    if (tail) a0 = _mm512_fmadd_ps(load_bf16_masked(row + full, tail), load_bf16_masked(x + full, tail), a0);
    y[o] = hsum(a0) + (bias ? bias[o] : 0.0f);
  }
}

// AVX-512 BF16: vdpbf16ps multiplies 32 bf16 pairs and adds them into 16 fp32 lanes. One row at a time with four
// accumulators: the weight is read as one sequential stream, which the hardware prefetcher follows best. Measured on
// Zen 4 from DRAM (32000 x 768, 1 thread): ~22-28 GB/s against 4-13 GB/s for four rows at a time (with or without
// software prefetch of the next rows), so a bf16 weight now streams at least as fast as an fp32 one.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void gemv_bf16_dp(const uint16_t* w, const uint16_t* x,
                                                                         float* y, const float* bias, int64_t in,
                                                                         int64_t r0, int64_t r1) {
  const int64_t block = in & ~int64_t{127};
  const int64_t full = in & ~int64_t{31};
  const __mmask32 tail = static_cast<__mmask32>((uint64_t{1} << (in & 31)) - 1);
  for (int64_t o = r0; o < r1; ++o) {
    const uint16_t* row = w + o * in;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i < block; i += 128) {
      a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(row + i), (__m512bh)_mm512_loadu_si512(x + i));
      a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(row + i + 32), (__m512bh)_mm512_loadu_si512(x + i + 32));
      a2 = _mm512_dpbf16_ps(a2, (__m512bh)_mm512_loadu_si512(row + i + 64), (__m512bh)_mm512_loadu_si512(x + i + 64));
      a3 = _mm512_dpbf16_ps(a3, (__m512bh)_mm512_loadu_si512(row + i + 96), (__m512bh)_mm512_loadu_si512(x + i + 96));
    }
    for (; i < full; i += 32)
      a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(row + i), (__m512bh)_mm512_loadu_si512(x + i));
    if (tail)
      a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_maskz_loadu_epi16(tail, row + full),
                            (__m512bh)_mm512_maskz_loadu_epi16(tail, x + full));
    y[o] = hsum(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))) + (bias ? bias[o] : 0.0f);
  }
}

// fp16 weights, fp32 activations (F16C conversion in the loop).
void gemv_f16_scalar(const uint16_t* w, const float* x, float* y, const float* bias, int64_t in, int64_t r0,
                     int64_t r1) {
  for (int64_t o = r0; o < r1; ++o) {
    const c10::Half* row = reinterpret_cast<const c10::Half*>(w + o * in);
    float acc = 0;
    for (int64_t i = 0; i < in; ++i) acc += static_cast<float>(row[i]) * x[i];
    y[o] = acc + (bias ? bias[o] : 0.0f);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void gemv_f16_avx512(const uint16_t* w, const float* x,
                                                                                float* y, const float* bias,
                                                                                int64_t in, int64_t r0, int64_t r1) {
  const int64_t full = in & ~int64_t{15};
  const __mmask16 tail = static_cast<__mmask16>((1u << (in & 15)) - 1);
  for (int64_t o = r0; o < r1; ++o) {
    const uint16_t* row = w + o * in;
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t i = 0; i < full; i += 16)
      a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i))),
                           _mm512_loadu_ps(x + i), a0);
    if (tail)
      a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tail, row + full)),
                           _mm512_maskz_loadu_ps(tail, x + full), a0);
    y[o] = hsum(a0) + (bias ? bias[o] : 0.0f);
  }
}

// Rows per parallel chunk: the whole matrix in one chunk below the threshold (no thread wake-up for small layers).
int64_t grain_rows(int64_t rows, int64_t row_bytes) {
  const int64_t total = rows * row_bytes;
  if (total < parallel_bytes.load(std::memory_order_relaxed) || at::get_num_threads() <= 1) return rows + 1;
  return std::max<int64_t>(16, rows / (4 * at::get_num_threads()));
}

thread_local std::vector<float> tls_scores;

}  // namespace

namespace {
std::atomic<int> prompt_attention_state{-1};  // -1: not read from the environment yet

// An on/off switch: on unless the environment variable is "0", read on first use; set_* overrides it.
bool switch_on(std::atomic<int>& state, const char* variable) {
  int value = state.load(std::memory_order_relaxed);
  if (value < 0) {
    const char* env = std::getenv(variable);
    value = (env && std::string(env) == "0") ? 0 : 1;
    state.store(value, std::memory_order_relaxed);
  }
  return value == 1;
}
}  // namespace

bool enabled() { return switch_on(enabled_state, "TFCPP_KERNELS"); }

void set_enabled(bool on) { enabled_state.store(on ? 1 : 0, std::memory_order_relaxed); }

bool prompt_attention_enabled() { return switch_on(prompt_attention_state, "TFCPP_PROMPT_ATTENTION"); }

void set_prompt_attention(bool on) { prompt_attention_state.store(on ? 1 : 0, std::memory_order_relaxed); }

void set_min_parallel_bytes(int64_t bytes) { parallel_bytes.store(std::max<int64_t>(0, bytes)); }
int64_t min_parallel_bytes() { return parallel_bytes.load(); }

bool usable(const at::Tensor& t) {
  return enabled() && t.defined() && t.device().is_cpu() && !at::GradMode::is_enabled() && t.layout() == at::kStrided;
}

const char* isa() {
  if (cpu_avx512_bf16()) return "avx512_bf16";
  if (cpu_avx512()) return "avx512";
  return "scalar";
}

at::Tensor gemv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (!usable(x) || weight.dim() != 2 || !weight.is_contiguous() || !x.is_contiguous() || weight.is_quantized())
    return {};
  const int64_t out = weight.size(0), in = weight.size(1);
  if (x.numel() != in || x.dim() < 1 || x.size(-1) != in) return {};
  const auto wt = weight.scalar_type(), xt = x.scalar_type();
  const bool f32 = wt == at::kFloat && xt == at::kFloat;
  const bool bf16 = wt == at::kBFloat16 && xt == at::kBFloat16;
  const bool f16 = wt == at::kHalf && (xt == at::kFloat || xt == at::kHalf);
  if (!f32 && !bf16 && !f16) return {};
  at::Tensor b;
  if (bias.defined()) {
    if (bias.numel() != out) return {};
    b = bias.scalar_type() == at::kFloat ? bias.contiguous() : bias.to(at::kFloat).contiguous();
  }
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out;
  at::Tensor y = at::empty(shape, x.options().dtype(at::kFloat));
  float* yp = y.data_ptr<float>();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  const int64_t grain = grain_rows(out, in * static_cast<int64_t>(weight.element_size()));
  if (f32) {
    const float* wp = weight.data_ptr<float>();
    const float* xp = x.data_ptr<float>();
    auto kernel = cpu_avx512() ? gemv_f32_avx512 : gemv_f32_scalar;
    at::parallel_for(0, out, grain, [&](int64_t r0, int64_t r1) { kernel(wp, xp, yp, bp, in, r0, r1); });
    return y;
  }
  if (bf16) {
    const auto* wp = reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>());
    const auto* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
    auto kernel = cpu_avx512_bf16() ? gemv_bf16_dp : cpu_avx512() ? gemv_bf16_avx512 : gemv_bf16_scalar;
    prefer_huge_pages(weight);
    at::parallel_for(0, out, grain, [&](int64_t r0, int64_t r1) { kernel(wp, xp, yp, bp, in, r0, r1); });
    return y.to(at::kBFloat16);
  }
  at::Tensor xf = xt == at::kFloat ? x : x.to(at::kFloat);
  const auto* wp = reinterpret_cast<const uint16_t*>(weight.data_ptr<at::Half>());
  const float* xp = xf.data_ptr<float>();
  auto kernel = cpu_avx512() ? gemv_f16_avx512 : gemv_f16_scalar;
  at::parallel_for(0, out, grain, [&](int64_t r0, int64_t r1) { kernel(wp, xp, yp, bp, in, r0, r1); });
  return xt == at::kFloat ? y : y.to(xt);
}

void run_team(int n, const std::function<void(int, int)>& body) {
#if defined(_OPENMP)
  if (n > 1) {
#pragma omp parallel num_threads(n)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  body(0, 1);
}

void team_barrier() {
#if defined(_OPENMP)
#pragma omp barrier
#endif
}

Part part_of(int64_t n, int tid, int threads, int64_t align) {
  if (threads <= 1) return {0, n};
  align = std::max<int64_t>(1, align);
  const int64_t share = (n + threads - 1) / threads;
  const int64_t step = (share + align - 1) / align * align;
  const int64_t begin = std::min(n, step * tid);
  return {begin, tid == threads - 1 ? n : std::min(n, begin + step)};
}

namespace raw {

void gemv_f32(const float* w, const float* x, float* y, const float* bias, int64_t out, int64_t in, bool accumulate,
              Part part) {
  const int64_t grain = grain_rows(out, in * static_cast<int64_t>(sizeof(float)));
  auto kernel = cpu_avx512() ? gemv_f32_avx512 : gemv_f32_scalar;
  if (!accumulate) {
    for_part(out, grain, part, [&](int64_t r0, int64_t r1) { kernel(w, x, y, bias, in, r0, r1); });
    return;
  }
  for_part(out, grain, part, [&](int64_t r0, int64_t r1) {
    float tmp[64];
    for (int64_t c0 = r0; c0 < r1; c0 += 64) {
      const int64_t c1 = std::min(r1, c0 + 64);
      kernel(w + c0 * in, x, tmp, bias ? bias + c0 : nullptr, in, 0, c1 - c0);
      for (int64_t o = c0; o < c1; ++o) y[o] = y[o] + tmp[o - c0];
    }
  });
}

void rms_norm_f32(const float* row, const float* weight, float* o, int64_t d, float eps) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= d; i += 16)
    for (int j = 0; j < 16; ++j) lanes[j] += row[i + j] * row[i + j];
  float sum = 0;
  for (float l : lanes) sum += l;
  for (; i < d; ++i) sum += row[i] * row[i];
  const float inv = 1.0f / std::sqrt(sum / static_cast<float>(d) + eps);
  for (int64_t j = 0; j < d; ++j) o[j] = weight[j] * (row[j] * inv);
}

namespace {
// silu(g) · u = g / (1 + e^-g) · u on 16 lanes (simd::exp16, within 2 ulp of std::exp): ~8x the scalar loop, which
// was 3 % of a 110M float32 prefill.
__attribute__((target("avx512f"))) void silu_mul_avx512(const float* g, const float* u, float* o, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 e = simd::exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
    _mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, u + i)));
  }
}
}  // namespace

void silu_mul_f32(const float* g, const float* u, float* o, int64_t n) {
  if (cpu_avx512()) return silu_mul_avx512(g, u, o, n);
  for (int64_t i = 0; i < n; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void rope_angles(float position, const float* inv_freq, int64_t half, float* cos_sin) {
  for (int64_t j = 0; j < half; ++j) {
    const float angle = position * inv_freq[j];
    cos_sin[j] = std::cos(angle);
    cos_sin[half + j] = std::sin(angle);
  }
}

void rotate_heads(float* x, int64_t heads, int64_t head_dim, const float* cos_sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t j = 0; j < half; ++j) {
      const float x1 = v[j], x2 = v[j + half], c = cos_sin[j], s = cos_sin[half + j];
      v[j] = x1 * c + (-x2) * s;
      v[j + half] = x2 * c + x1 * s;
    }
  }
}

// Softmax's middle step in place: scores[j] = exp(scores[j] - mx); returns 1 / Σ scores.
static float exp_and_inverse_sum(float* scores, int64_t t, float mx) {
  float sum = 0;
  for (int64_t j = 0; j < t; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  return 1.0f / sum;
}

namespace {

float dot_f32(const float* a, const float* b, int64_t d) {
  float s = 0;
  for (int64_t i = 0; i < d; ++i) s += a[i] * b[i];
  return s;
}

void axpy_f32(float w, const float* x, float* y, int64_t d) {
  for (int64_t i = 0; i < d; ++i) y[i] += w * x[i];
}

// GCC 12 reports the undefined pass-through operand of the AVX-512 cast/extract intrinsics inlined here as used
// uninitialized (a false positive: those lanes are never read).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
__attribute__((target("avx512f"))) float dot_f32_avx512(const float* a, const float* b, int64_t d) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= d; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= d; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  if (i < d) {
    const __mmask16 m = static_cast<__mmask16>((1u << (d - i)) - 1);
    acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc1);
  }
  return hsum(_mm512_add_ps(acc0, acc1));
}
#pragma GCC diagnostic pop

__attribute__((target("avx512f"))) void axpy_f32_avx512(float w, const float* x, float* y, int64_t d) {
  const __m512 wv = _mm512_set1_ps(w);
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < d) {
    const __mmask16 m = static_cast<__mmask16>((1u << (d - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

}  // namespace

// A key whose additive mask is float32 lowest (transformers' finfo.min) or -inf is skipped: once any key of the row
// is visible, exp(s + lowest - max) is exactly 0 in float32. A row with no visible key is what eager makes of it:
// s + lowest rounds to lowest for every such key, so the softmax is uniform over them (and NaN if all are -inf).
void attend_one(const float* q, const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t t,
                int64_t d, const float* mask, int64_t mask_stride, float scale, float* out, float* scores) {
  const bool simd = cpu_avx512();
  constexpr float lowest = std::numeric_limits<float>::lowest();
  float mx = -std::numeric_limits<float>::infinity();
  int64_t visible = 0;
  for (int64_t j = 0; j < t; ++j) {
    const float add = mask ? mask[j * mask_stride] : 0.0f;
    if (add <= lowest) {
      scores[j] = -std::numeric_limits<float>::infinity();
      continue;
    }
    const float* kr = k + j * k_stride;
    float s = (simd ? dot_f32_avx512(q, kr, d) : dot_f32(q, kr, d)) * scale + add;
    scores[j] = s;
    mx = std::max(mx, s);
    ++visible;
  }
  for (int64_t i = 0; i < d; ++i) out[i] = 0;
  if (visible == 0) {
    int64_t finite = 0;
    for (int64_t j = 0; j < t; ++j) finite += mask[j * mask_stride] == lowest;
    for (int64_t j = 0; j < t; ++j) {
      const float w = finite == 0 ? std::numeric_limits<float>::quiet_NaN() : mask[j * mask_stride] == lowest ? 1.0f / finite : 0.0f;
      if (w != 0.0f) simd ? axpy_f32_avx512(w, v + j * v_stride, out, d) : axpy_f32(w, v + j * v_stride, out, d);
    }
    return;
  }
  const float inv = exp_and_inverse_sum(scores, t, mx);
  for (int64_t j = 0; j < t; ++j) {
    const float w = scores[j] * inv;
    if (w == 0.0f) continue;
    simd ? axpy_f32_avx512(w, v + j * v_stride, out, d) : axpy_f32(w, v + j * v_stride, out, d);
  }
}

void decode_attention_f32(const float* q, int64_t heads, int64_t kv_heads, int64_t head_dim, const float* k,
                          int64_t k_head_stride, int64_t k_stride, const float* v, int64_t v_head_stride,
                          int64_t v_stride, int64_t t, const float* mask, int64_t mask_stride, float scale,
                          float* out, Part heads_part) {
  const int64_t rep = heads / kv_heads;
  const int64_t work = std::max<int64_t>(1, 2 * t * head_dim);
  for_part(heads, std::max<int64_t>(1, (1 << 17) / work), heads_part, [&](int64_t h0, int64_t h1) {
    std::vector<float>& p = tls_scores;
    if (static_cast<int64_t>(p.size()) < t) p.resize(static_cast<size_t>(t));
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t g = h / rep;
      attend_one(q + h * head_dim, k + g * k_head_stride, k_stride, v + g * v_head_stride, v_stride, t, head_dim,
                 mask, mask_stride, scale, out + h * head_dim, p.data());
    }
  });
}

}  // namespace raw

// ---- bfloat16 decode (the bf16 fused Llama step): values kept in float32 buffers, rounded to bfloat16 where torch
// rounds a bf16 tensor (round to nearest even, as c10::BFloat16), float32 where transformers upcasts. ----

namespace {

inline uint16_t bf16_bits(float f) {
  if (std::isnan(f)) return 0x7FC0;
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

inline float round_bf16(float f) { return bf16_to_float(bf16_bits(f)); }

// Σ q[i] k[i] in float32 for q float32 (bf16 values) and k bf16.
float dot_bf16_scalar(const float* q, const uint16_t* k, int64_t d) {
  float s = 0;
  for (int64_t i = 0; i < d; ++i) s += q[i] * bf16_to_float(k[i]);
  return s;
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) float dot_bf16_avx512(const float* q, const uint16_t* k,
                                                                            int64_t d) {
  const int64_t full = d & ~int64_t{15};
  const __mmask16 tail = static_cast<__mmask16>((1u << (d & 15)) - 1);
  __m512 a = _mm512_setzero_ps();
  for (int64_t i = 0; i < full; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load_bf16(k + i), a);
  if (tail) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q + full), load_bf16_masked(k + full, tail), a);
  // Lane sum through memory (hsum's 256-bit extract, inlined here, draws a GCC 12 -Wuninitialized false positive).
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, a);
  for (int w = 8; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) lanes[l] += lanes[l + w];
  return lanes[0];
}

// out[i] += p * v[i] for v bf16.
void axpy_bf16_scalar(float p, const uint16_t* v, float* out, int64_t d) {
  for (int64_t i = 0; i < d; ++i) out[i] += p * bf16_to_float(v[i]);
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void axpy_bf16_avx512(float p, const uint16_t* v, float* out,
                                                                            int64_t d) {
  const int64_t full = d & ~int64_t{15};
  const __m512 pv = _mm512_set1_ps(p);
  int64_t i = 0;
  for (; i < full; i += 16) _mm512_storeu_ps(out + i, _mm512_fmadd_ps(pv, load_bf16(v + i), _mm512_loadu_ps(out + i)));
  for (; i < d; ++i) out[i] += p * bf16_to_float(v[i]);
}

// How torch 1.13 sums a bf16 bmm of one query row ([H, 1, D] x [H, D, T] and [H, 1, T] x [H, T, D]), measured: with
// H·D·T > 4096 oneDNN accumulates in float32 and rounds once; below that, a contraction·columns (D·T) under 400 takes
// ATen's naive kernel, which rounds every product and every partial sum to bf16 in order, and otherwise the per-batch
// CPU gemm sums q·kᵀ in float32 but accumulates p·v in the bf16 output (each product and sum rounded).
struct Bf16Bmm {
  bool scores_in_bf16, output_in_bf16;
};
Bf16Bmm bf16_bmm_rounding(int64_t heads, int64_t d, int64_t t) {
  if (heads * d * t > 4096) return {false, false};
  return {d * t < 400, true};
}

// One head of LlamaAttention's eager / sdpa math in bf16 (transformers 4.40.2 on torch 1.13): scores = q·kᵀ rounded
// to bf16, divided by the bf16 divisor and rounded (div_ by math.sqrt(head_dim)), plus the mask, softmax in float32, probabilities rounded to bf16,
// their weighted sum of v rounded to bf16 (both products summed as torch 1.13 does for these sizes, Bf16Bmm).
void attend_one_bf16(const float* q, const uint16_t* k, int64_t k_stride, const uint16_t* v, int64_t v_stride,
                     int64_t t, int64_t d, const float* mask, int64_t mask_stride, float score_divisor,
                     Bf16Bmm mode, float* out, float* scores) {
  const bool avx512 = cpu_avx512();
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < t; ++j) {
    const uint16_t* kr = k + j * k_stride;
    float dot = 0;
    if (mode.scores_in_bf16) {
      for (int64_t i = 0; i < d; ++i) dot = round_bf16(dot + round_bf16(q[i] * bf16_to_float(kr[i])));
    } else {
      dot = avx512 ? dot_bf16_avx512(q, kr, d) : dot_bf16_scalar(q, kr, d);
    }
    float s = round_bf16(round_bf16(dot) / score_divisor);
    if (mask) s += mask[j * mask_stride];
    scores[j] = s;
    mx = std::max(mx, s);
  }
  const float inv = raw::exp_and_inverse_sum(scores, t, mx);
  for (int64_t i = 0; i < d; ++i) out[i] = 0;
  for (int64_t j = 0; j < t; ++j) {
    const float p = round_bf16(scores[j] * inv);
    const uint16_t* vr = v + j * v_stride;
    if (mode.output_in_bf16) {
      for (int64_t i = 0; i < d; ++i) out[i] = round_bf16(out[i] + round_bf16(p * bf16_to_float(vr[i])));
    } else if (avx512) {
      axpy_bf16_avx512(p, vr, out, d);
    } else {
      axpy_bf16_scalar(p, vr, out, d);
    }
  }
  for (int64_t i = 0; i < d; ++i) out[i] = round_bf16(out[i]);
}

}  // namespace

void prefer_huge_pages(const at::Tensor& weight) {
#if defined(__linux__)
  static std::mutex mutex;
  static std::unordered_set<const void*> advised;
  if (!weight.defined() || !weight.device().is_cpu() || weight.nbytes() < (size_t{1} << 20)) return;
  const void* data = weight.data_ptr();
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!advised.insert(data).second) return;
  }
  // The 2 MB pages the tensor touches (neighbouring memory keeps its contents: the kernel only changes the page size).
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + weight.nbytes() + kHuge - 1) & ~(kHuge - 1);
  void* p = reinterpret_cast<void*>(begin);
  const size_t n = static_cast<size_t>(end - begin);
  (void)madvise(p, n, MADV_HUGEPAGE);  // errors (no THP, file-backed pages, holes) only leave the small pages
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
  (void)madvise(p, n, MADV_COLLAPSE);  // Linux >= 6.1: move the already-faulted pages into huge pages now
#else
  (void)weight;
#endif
}

namespace raw {

void to_bf16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = bf16_bits(x[i]);
}

void round_bf16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = kernels::round_bf16(x[i]);
}

void gemv_bf16(const uint16_t* w, const uint16_t* x, float* y, const float* bias, int64_t out, int64_t in,
               Part part) {
  const int64_t grain = grain_rows(out, in * static_cast<int64_t>(sizeof(uint16_t)));
  auto kernel = cpu_avx512_bf16() ? gemv_bf16_dp : cpu_avx512() ? gemv_bf16_avx512 : gemv_bf16_scalar;
  for_part(out, grain, part, [&](int64_t r0, int64_t r1) { kernel(w, x, y, bias, in, r0, r1); });
}

void rms_norm_bf16(const float* x, const uint16_t* weight, float* out, int64_t d, float eps) {
  double sum = 0;  // mean(x²) in float32 by torch's reduction: the exact sum rounded once comes closest
  for (int64_t i = 0; i < d; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float variance = static_cast<float>(sum / static_cast<double>(d));
  const float inv = 1.0f / std::sqrt(variance + eps);
  for (int64_t i = 0; i < d; ++i)
    out[i] = kernels::round_bf16(bf16_to_float(weight[i]) * kernels::round_bf16(x[i] * inv));
}

void add_bf16(float* h, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = kernels::round_bf16(h[i] + y[i]);
}

void silu_mul_bf16(const float* gate, const float* up, float* out, int64_t n) {
  // torch 1.13's silu on bf16 rounds every step of x / (1 + exp(-x)).
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float e = kernels::round_bf16(std::exp(-g));
    const float s = kernels::round_bf16(g / kernels::round_bf16(1.0f + e));
    out[i] = kernels::round_bf16(s * up[i]);
  }
}

void rotate_heads_bf16(float* x, int64_t heads, int64_t head_dim, const float* cos_sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t j = 0; j < half; ++j) {
      const float x1 = v[j], x2 = v[j + half], c = cos_sin[j], s = cos_sin[half + j];
      v[j] = kernels::round_bf16(kernels::round_bf16(x1 * c) + kernels::round_bf16(-x2 * s));
      v[j + half] = kernels::round_bf16(kernels::round_bf16(x2 * c) + kernels::round_bf16(x1 * s));
    }
  }
}

void decode_attention_bf16(const float* q, int64_t heads, int64_t kv_heads, int64_t head_dim, const uint16_t* k,
                           int64_t k_head_stride, int64_t k_stride, const uint16_t* v, int64_t v_head_stride,
                           int64_t v_stride, int64_t t, const float* mask, int64_t mask_stride,
                           float score_divisor, float* out, Part heads_part) {
  const int64_t rep = heads / kv_heads;
  const int64_t work = std::max<int64_t>(1, 2 * t * head_dim);
  const Bf16Bmm mode = bf16_bmm_rounding(heads, head_dim, t);
  for_part(heads, std::max<int64_t>(1, (1 << 17) / work), heads_part, [&](int64_t h0, int64_t h1) {
    std::vector<float>& p = tls_scores;
    if (static_cast<int64_t>(p.size()) < t) p.resize(static_cast<size_t>(t));
    for (int64_t h = h0; h < h1; ++h) {
      const int64_t g = h / rep;
      attend_one_bf16(q + h * head_dim, k + g * k_head_stride, k_stride, v + g * v_head_stride, v_stride, t, head_dim,
                      mask, mask_stride, score_divisor, mode, out + h * head_dim, p.data());
    }
  });
}

}  // namespace raw

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat && x.is_contiguous() &&
                  weight.is_contiguous() && weight.numel() == x.size(-1),
              "kernels::rms_norm: contiguous float32 x [..., D] and weight [D] expected");
  const int64_t d = x.size(-1), rows = x.numel() / std::max<int64_t>(d, 1);
  at::Tensor out = at::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float e = static_cast<float>(eps);
  at::parallel_for(0, rows, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(d, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) raw::rms_norm_f32(xp + r * d, wp, op + r * d, d, e);
  });
  return out;
}

at::Tensor silu_mul(const at::Tensor& gate, const at::Tensor& up) {
  TORCH_CHECK(gate.scalar_type() == at::kFloat && up.scalar_type() == at::kFloat && gate.is_contiguous() &&
                  up.is_contiguous() && gate.sizes() == up.sizes(),
              "kernels::silu_mul: contiguous float32 tensors of one shape expected");
  at::Tensor out = at::empty_like(gate);
  const float* g = gate.data_ptr<float>();
  const float* u = up.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, gate.numel(), 1 << 15,
                   [&](int64_t i0, int64_t i1) { raw::silu_mul_f32(g + i0, u + i0, o + i0, i1 - i0); });
  return out;
}

void rotary_(const at::Tensor& q, const at::Tensor& k, const at::Tensor& position_ids, const at::Tensor& inv_freq,
             int64_t head_dim, double position_scale) {
  TORCH_CHECK(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && q.is_contiguous() &&
                  k.is_contiguous() && q.dim() == 3 && k.dim() == 3 && head_dim % 2 == 0 &&
                  inv_freq.scalar_type() == at::kFloat && inv_freq.numel() == head_dim / 2 &&
                  position_ids.scalar_type() == at::kLong && position_ids.dim() == 2,
              "kernels::rotary_: float32 q/k [B, T, H*D], inv_freq [D/2] and int64 position_ids [B, T] expected");
  const int64_t batch = q.size(0), t = q.size(1), half = head_dim / 2;
  const int64_t hq = q.size(2) / head_dim, hk = k.size(2) / head_dim;
  TORCH_CHECK(position_ids.size(1) == t && (position_ids.size(0) == batch || position_ids.size(0) == 1),
              "kernels::rotary_: position_ids must be [B, T] or [1, T]");
  at::Tensor inv = inv_freq.contiguous();
  const float* fp = inv.data_ptr<float>();
  const int64_t* pp = position_ids.data_ptr<int64_t>();
  const int64_t ps0 = position_ids.size(0) == 1 ? 0 : position_ids.stride(0), ps1 = position_ids.stride(1);
  float* qp = q.data_ptr<float>();
  float* kp = k.data_ptr<float>();
  const float scale = static_cast<float>(position_scale);
  at::parallel_for(0, batch * t, std::max<int64_t>(1, 4096 / ((hq + hk) * head_dim)), [&](int64_t r0, int64_t r1) {
    std::vector<float> cs(static_cast<size_t>(2 * half));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / t, i = r % t;
      float pos = static_cast<float>(pp[b * ps0 + i * ps1]);
      if (scale != 1.0f) pos = pos / scale;
      raw::rope_angles(pos, fp, half, cs.data());
      raw::rotate_heads(qp + r * hq * head_dim, hq, head_dim, cs.data());
      raw::rotate_heads(kp + r * hk * head_dim, hk, head_dim, cs.data());
    }
  });
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                     double scale) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && q.scalar_type() == at::kFloat &&
                  k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat && q.stride(3) == 1 &&
                  k.stride(3) == 1 && v.stride(3) == 1 && k.sizes() == v.sizes() && q.size(3) == k.size(3) &&
                  q.size(0) == k.size(0) && k.size(1) > 0 && q.size(1) % k.size(1) == 0,
              "kernels::attention: float32 q [B, Hq, Tq, D], k/v [B, Hk, Tk, D] with contiguous last dims");
  const int64_t batch = q.size(0), hq = q.size(1), tq = q.size(2), hk = k.size(1), t = k.size(2), d = q.size(3);
  const int64_t rep = hq / hk;
  const float* mp = nullptr;
  int64_t ms0 = 0, ms2 = 0, ms3 = 0;
  at::Tensor m = mask;
  if (m.defined()) {
    TORCH_CHECK(m.dim() == 4 && m.size(-1) == t && (m.size(2) == tq || m.size(2) == 1) && m.size(1) == 1 &&
                    (m.size(0) == batch || m.size(0) == 1),
                "kernels::attention: mask [B, 1, Tq, Tk] expected");
    if (m.scalar_type() != at::kFloat) m = m.to(at::kFloat);
    mp = m.data_ptr<float>();
    ms0 = m.size(0) == 1 ? 0 : m.stride(0);
    ms2 = m.size(2) == 1 ? 0 : m.stride(2);
    ms3 = m.stride(3);
  }
  at::Tensor out = at::empty({batch, tq, hq * d}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  if (tq > 1 && blocked_attention_supported()) {
    blocked_attention({qp, q.stride(0), q.stride(1), q.stride(2), kp, k.stride(0), k.stride(1), k.stride(2), vp,
                       v.stride(0), v.stride(1), v.stride(2), mp, ms0, ms2, ms3, batch, hq, hk, tq, t, d, sc, op});
    return out;
  }
  const int64_t work = std::max<int64_t>(1, 4 * t * d);
  // Rows in (batch, query, head) order: a thread's consecutive rows share a query's mask row and the same keys.
  at::parallel_for(0, batch * tq * hq, std::max<int64_t>(1, (1 << 17) / work), [&](int64_t r0, int64_t r1) {
    std::vector<float>& p = tls_scores;
    if (static_cast<int64_t>(p.size()) < t) p.resize(static_cast<size_t>(t));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / (tq * hq), i = (r / hq) % tq, h = r % hq, g = h / rep;
      raw::attend_one(qp + b * q.stride(0) + h * q.stride(1) + i * q.stride(2), kp + b * k.stride(0) + g * k.stride(1),
                      k.stride(2), vp + b * v.stride(0) + g * v.stride(1), v.stride(2), t, d,
                      mp ? mp + b * ms0 + i * ms2 : nullptr, ms3, sc, op + (b * tq + i) * hq * d + h * d, p.data());
    }
  });
  return out;
}

at::Tensor flash_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& padding_mask, bool causal, double scale) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && q.scalar_type() == at::kFloat &&
                  k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat && q.stride(3) == 1 &&
                  k.stride(3) == 1 && v.stride(3) == 1 && k.sizes() == v.sizes() && q.size(3) == k.size(3) &&
                  q.size(0) == k.size(0) && k.size(1) > 0 && q.size(1) % k.size(1) == 0,
              "kernels::flash_attention: float32 q [B, H, Tq, D], k/v [B, Hk, Tk, D] with contiguous last dims");
  if (!blocked_attention_supported()) return {};
  const int64_t batch = q.size(0), hq = q.size(1), tq = q.size(2), hk = k.size(1), t = k.size(2), d = q.size(3);
  at::Tensor keep;
  if (padding_mask.defined()) {
    TORCH_CHECK(padding_mask.dim() == 2 && padding_mask.size(0) == batch && padding_mask.size(1) >= t,
                "kernels::flash_attention: padding mask [B, Tk] expected");
    keep = padding_mask.narrow(1, padding_mask.size(1) - t, t).ne(0).to(at::kByte).contiguous();
  }
  at::Tensor out = at::empty({batch, tq, hq * d}, q.options());
  AttentionOperands a{q.data_ptr<float>(), q.stride(0), q.stride(1), q.stride(2), k.data_ptr<float>(), k.stride(0),
                      k.stride(1), k.stride(2), v.data_ptr<float>(), v.stride(0), v.stride(1), v.stride(2), nullptr,
                      0, 0, 0, batch, hq, hk, tq, t, d, static_cast<float>(scale), out.data_ptr<float>()};
  if (keep.defined()) a.key_keep = keep.data_ptr<uint8_t>(), a.keep_s0 = t;
  a.causal = causal;
  a.causal_offset = t - tq;
  a.empty_rows_zero = true;
  blocked_attention(a);
  return out;
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                            double scale) {
  TORCH_CHECK(q.dim() == 4 && q.size(2) == 1, "kernels::decode_attention: one query, q [B, Hq, 1, D]");
  return attention(q, k, v, mask, scale);
}

at::Tensor decode_mask(const at::Tensor& attention_mask_2d) {
  TORCH_CHECK(attention_mask_2d.dim() == 2, "kernels::decode_mask: 2-D [B, T] mask expected");
  at::Tensor mask = attention_mask_2d;
  if (mask.scalar_type() != at::kLong) mask = mask.to(at::kLong);
  const int64_t batch = mask.size(0), t = mask.size(1);
  at::Tensor out = at::empty({batch, 1, 1, t}, at::TensorOptions(at::kFloat));
  const int64_t* src = mask.data_ptr<int64_t>();
  float* dst = out.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < t; ++j)
      dst[b * t + j] = src[b * mask.stride(0) + j * mask.stride(1)] == 0 ? std::numeric_limits<float>::lowest() : 0.0f;
  return out;
}

bool write_cache_rows(const at::Tensor& dst, int64_t offset, const at::Tensor& src) {
  if (!usable(src) || dst.dim() != 4 || src.dim() != 4 || !dst.is_contiguous() || src.stride(3) != 1 ||
      dst.scalar_type() != src.scalar_type() || !dst.device().is_cpu())
    return false;
  const int64_t b = src.size(0), h = src.size(1), t = src.size(2), d = src.size(3), cap = dst.size(2);
  if (dst.size(0) != b || dst.size(1) != h || dst.size(3) != d || offset < 0 || offset + t > cap) return false;
  const int64_t es = static_cast<int64_t>(src.element_size());
  const char* sp = static_cast<const char*>(src.data_ptr());
  char* dp = static_cast<char*>(dst.data_ptr());
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < h; ++j)
      for (int64_t k = 0; k < t; ++k)
        std::memcpy(dp + (((i * h + j) * cap + offset + k) * d) * es,
                    sp + (i * src.stride(0) + j * src.stride(1) + k * src.stride(2)) * es, static_cast<size_t>(d * es));
  return true;
}

}  // namespace transformers::kernels
