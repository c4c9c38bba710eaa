// Fused CPU kernels for inference (src/kernels): GEMV for one-row Linears (fp32, bf16 and fp16 weights), RMSNorm,
// rotary embedding, SiLU-gate product and decode attention over a KV cache. The shared layers and families call them
// behind their usual module interfaces when `usable()` says so; otherwise the plain ATen path runs. Every kernel
// computes what the ATen reference computes (float32 accumulation), up to summation order.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

namespace transformers::kernels {

// Whether the fast paths are taken (default on; TFCPP_KERNELS=0 in the environment or set_enabled(false) selects the
// plain ATen path everywhere, e.g. to compare the two).
bool enabled();
void set_enabled(bool on);

// Kernels apply to CPU, contiguous tensors that need no autograd graph (inference / no-grad) and `enabled()`.
bool usable(const at::Tensor& t);

// y = x Wᵀ (+ b) for x holding exactly one row (numel == in): W [out, in] float32, bfloat16 (AVX-512 BF16
// vdpbf16ps when the CPU has it) or float16, x of the weight's dtype or float32; the result has x's dtype and shape
// [..., out]. Splits output rows over at::get_num_threads() threads once the weight exceeds a few hundred KB
// (`min_parallel_bytes`). Returns an undefined tensor when the case is not covered (the caller then uses at::linear).
at::Tensor gemv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
void set_min_parallel_bytes(int64_t bytes);
int64_t min_parallel_bytes();

// LlamaRMSNorm (and T5LayerNorm) for float32 x [..., D] and weight [D]: weight * (x * rsqrt(mean(x²) + eps)).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// silu(gate) * up (SwiGLU's gate product) for contiguous float32 tensors of one shape.
at::Tensor silu_mul(const at::Tensor& gate, const at::Tensor& up);

// Rotary embedding (rotate_half convention), in place on q [B, T, Hq*D] and k [B, T, Hk*D] float32 contiguous:
// angle = (position / position_scale) * inv_freq[j], as LlamaRotaryEmbedding + apply_rotary_pos_emb.
// position_ids [B, T] or [1, T] int64.
void rotary_(const at::Tensor& q, const at::Tensor& k, const at::Tensor& position_ids, const at::Tensor& inv_freq,
             int64_t head_dim, double position_scale);

// One query per sequence over the cached keys: q [B, Hq, 1, D], k/v [B, Hk, T, D] (any strides with the last dim
// contiguous; Hq a multiple of Hk: grouped-query heads read their key/value head directly, no repeat_kv copy),
// additive mask [B, 1, 1, T] (float32) or undefined. softmax(q·kᵀ·scale + mask)·v in float32; returns [B, 1, Hq*D].
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                            double scale);
// decode_attention's general form, several queries: q [B, Hq, Tq, D] over k/v [B, Hk, Tk, D] with the additive mask
// [B or 1, 1, Tq or 1, Tk] (any strides) or none; returns [B, Tq, Hq*D], o_proj's input. Keys masked with float32
// lowest or -inf are skipped (exact: their softmax weight is 0 in float32), so a causal mask costs half the square;
// a row with every key masked comes out as eager's softmax makes it (uniform). Several queries on AVX-512 take a
// blocked kernel (src/kernels/attention.cpp: 16 queries x 64 keys, online softmax, key blocks masked for all 16
// queries skipped, no [Tq, Tk] score tensor); one query, or a CPU without AVX-512, goes row by row.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                     double scale);
// transformers' flash_attention_2 contract on the same blocked kernel, for float32 q [B, H, Tq, D] and k/v
// [B, Hk, Tk, D] (last dims contiguous): causal bottom-right aligned (query i sees keys j <= Tk - Tq + i) when
// `causal`, keys whose 2-D padding_mask [B, Tk'] (the last Tk columns; 1 = attend) is 0 hidden, and a query with no
// visible key comes out as zeros, with no mask tensor built. Returns [B, Tq, H*D], or an undefined tensor where the
// kernel does not run (no AVX-512; the caller then uses its tensor path).
at::Tensor flash_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& padding_mask, bool causal, double scale);

// Whether LlamaAttention runs a float32 prompt's attention through attention() (default on; TFCPP_PROMPT_ATTENTION=0
// or set_prompt_attention(false) keep the eager/sdpa tensor path, e.g. to compare the two).
bool prompt_attention_enabled();
void set_prompt_attention(bool on);

// The additive mask of a single decode query from transformers' 2-D padding mask [B, Tk] (1 = attend):
// [B, 1, 1, Tk] float32 with 0 or float32 lowest (what update_causal_mask builds for one query at the last position).
at::Tensor decode_mask(const at::Tensor& attention_mask_2d);

// KV cache write: src [B, H, T, D] into positions [offset, offset + T) of dim 2 of the contiguous buffer
// dst [B, H, capacity, D] (same dtype, src's last dim contiguous), by row copies. False (nothing written) when the
// tensors do not have that form; the caller then uses narrow().copy_().
bool write_cache_rows(const at::Tensor& dst, int64_t offset, const at::Tensor& src);

// ---- A caller's own parallel region (a decode step: one region per token instead of one per kernel) ----
// run_team(n, body) runs body(tid, threads) on `threads` <= n threads at once (OpenMP, the pool ATen's parallel_for
// uses; n <= 1, or a build without OpenMP, calls body(0, 1) on the calling thread, tid 0 being the calling thread).
// Inside it, team_barrier() waits for every thread of the team, and the raw kernels below take a Part: the rows (or
// heads) this thread computes, alone, without a nested parallel_for. An exception must not leave body (the region
// would terminate the process): catch it and let every thread reach the same barriers.
void run_team(int n, const std::function<void(int tid, int threads)>& body);
void team_barrier();

// Rows (or heads) [begin, end) of a raw kernel's output for the calling thread; the default, all(), means every row,
// split over ATen's threads by the kernel itself.
struct Part {
  int64_t begin = 0, end = -1;
  bool all() const { return end < 0; }
  int64_t size() const { return end - begin; }
};
// Thread tid's share of n rows split over `threads`: contiguous, in whole multiples of `align` rows (the last thread
// takes the rest; a share may be empty).
Part part_of(int64_t n, int tid, int threads, int64_t align = 16);

// The same kernels on raw float32 pointers, for a model's fused decode step (no tensors, no allocations).
namespace raw {
// y[o] (+)= W[o, :] · x (+ bias[o]) for W [out, in] row-major; rows split over threads past min_parallel_bytes().
void gemv_f32(const float* w, const float* x, float* y, const float* bias, int64_t out, int64_t in, bool accumulate,
              Part part = {});
void rms_norm_f32(const float* x, const float* weight, float* out, int64_t d, float eps);
void silu_mul_f32(const float* gate, const float* up, float* out, int64_t n);
// cos_sin [2 * half]: cos(position * inv_freq[j]) then sin(...).
void rope_angles(float position, const float* inv_freq, int64_t half, float* cos_sin);
// rotate_half RoPE in place on `heads` consecutive vectors of head_dim.
void rotate_heads(float* x, int64_t heads, int64_t head_dim, const float* cos_sin);
// One query per head: q [heads, D], keys/values of kv head g at k + g * k_head_stride + j * k_stride (j < t),
// additive mask[j * mask_stride] or null; out [heads, D].
void decode_attention_f32(const float* q, int64_t heads, int64_t kv_heads, int64_t head_dim, const float* k,
                          int64_t k_head_stride, int64_t k_stride, const float* v, int64_t v_head_stride,
                          int64_t v_stride, int64_t t, const float* mask, int64_t mask_stride, float scale,
                          float* out, Part heads_part = {});

// ---- Weight-only quantized Linears (quantization.h layouts) with integer dot products (src/kernels/qgemv.cpp) ----
// Activations are quantized per block of kQBlock inputs (the last block may be partial), as llama.cpp's Q8_0:
// d[b] = max|x| / 127 over the block (0 for an all-zero block), q[i] = round(x[i] / d[b]) in [-127, 127],
// sums[b] = Σ q over the block. The product then runs on int8 × int8 (int4 codes × int8) with int32 accumulation
// (AVX-512 VNNI vpdpbusd where the CPU has it) and fp32 scales.
constexpr int64_t kQBlock = 32;
void quantize_row_q8(const float* x, int64_t n, int8_t* q, float* d, int32_t* sums);
// y[o] (+)= scale[o] * Σ_i w[o, i] · x[i] (+ bias[o]): w int8 [out, in] row-major (tfcpp_int8).
// With a Part, x is quantized again on each call (per thread; ~1 µs for 2048 inputs).
void gemv_q8(const int8_t* w, const float* scale, const float* x, float* y, const float* bias, int64_t out,
             int64_t in, bool accumulate, Part part = {});
// y[o] (+)= Σ_g scale[o, g] * Σ_{i in g} (code[o, i] - zero[o, g]) · x[i] (+ bias[o]): tfcpp_int4 (packed
// [out, ceil(in/2)], input 2j in the low nibble of byte j; groups of group_size inputs, group_size % kQBlock == 0).
void gemv_q4(const uint8_t* packed, const float* scale, const uint8_t* zero, int64_t group_size, const float* x,
             float* y, const float* bias, int64_t out, int64_t in, bool accumulate, Part part = {});
}  // namespace raw

// ---- Prompt processing on float32 Linears (src/kernels/sgemm.cpp) ----
// The weight W [out, in] repacked once into panels of 32 output rows, [ceil(out / 32)][in][32] (zero-padded), the
// layout sgemm_packed's AVX-512 micro-kernel streams. nn::Linear runs sgemm() on its first several-row forward (a
// single prompt pays no packing and holds no copy), then packs and keeps the panels (one more copy of the weight)
// until the weight changes; both give the same bits.
at::Tensor pack_sgemm_weight(const at::Tensor& weight);
// y [..., out] = x [..., in] Wᵀ (+ b), x float32, from pack_sgemm_weight(W); threads over panels.
at::Tensor sgemm_packed(const at::Tensor& x, const at::Tensor& packed, int64_t out_features, const at::Tensor& bias);
// The same product from W [out, in] itself, each thread packing the panel it is about to use into a cache-resident
// buffer: bit for bit sgemm_packed's result, without a second copy of the weight (about OpenBLAS's speed).
at::Tensor sgemm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
// Whether Linear takes the packed path: AVX-512F, enabled(), and prepacking on (default; TFCPP_PREPACK=0 in the
// environment or set_prepack(false) keep every several-row float32 Linear on at::linear and no second copy).
bool sgemm_supported();
bool prepack_enabled();
void set_prepack(bool on);

// Whether gemv_q4 / qgemm handle this int4 group size (a multiple of kQBlock).
bool q4_group_supported(int64_t group_size);

// Prompt processing (several rows) on a quantized Linear's codes (src/kernels/qgemm.cpp): y [m, out] = x [m, in]
// Wᵀ (+ bias) in fp32, activations quantized per row and kQBlock block as above, integer GEMM (VNNI) with fp32
// scaling per block. `bits` 8: w int8 [out, in], scale [out]; 4: packed codes, scale/zero [out, groups].
void qgemm(int bits, const void* w, const float* scale, const uint8_t* zero, int64_t group_size, const float* x,
           float* y, const float* bias, int64_t m, int64_t out, int64_t in);

// Which instruction set the GEMV kernels use on this CPU ("avx512_bf16", "avx512", "scalar").
const char* isa();

// ---- qgemm's path (src/kernels/qgemm.cpp) ----
// "avx512_vnni" or "scalar": the path qgemm takes on this CPU. set_qgemm_scalar(true) forces the scalar path (the
// one a CPU without AVX-512 VNNI runs; same numbers up to float summation order), e.g. for tests.
const char* qgemm_isa();
void set_qgemm_scalar(bool on);

// ---- bfloat16 decode on raw buffers (src/kernels/kernels.cpp; the bf16 fused Llama decode step) ----
// Activations live in float32 buffers holding bf16-representable values; each kernel rounds (to nearest even, as
// c10::BFloat16) where torch's bf16 tensor ops round, and computes in float32 where transformers upcasts.
namespace raw {
void to_bf16(const float* x, uint16_t* out, int64_t n);  // bf16 bits of x (round to nearest even)
void round_bf16(float* x, int64_t n);                    // x = float(bf16(x)) in place
// y[o] = W[o, :] · x (+ bias[o]) in float32 (vdpbf16ps where the CPU has it) for bf16 W [out, in] and x; not rounded.
void gemv_bf16(const uint16_t* w, const uint16_t* x, float* y, const float* bias, int64_t out, int64_t in,
               Part part = {});
// LlamaRMSNorm in bf16: bf16(weight * bf16(x * rsqrt(mean(x²) + eps))) with the mean and rsqrt in float32.
void rms_norm_bf16(const float* x, const uint16_t* weight, float* out, int64_t d, float eps);
void add_bf16(float* h, const float* y, int64_t n);  // h = bf16(h + y) (the residual sum)
// bf16(silu(gate) * up) with torch 1.13's bf16 silu: every step of x / (1 + exp(-x)) rounded.
void silu_mul_bf16(const float* gate, const float* up, float* out, int64_t n);
// rotate_half RoPE in bf16 on `heads` vectors: bf16(bf16(x1 c) + bf16(-x2 s)), ...; cos_sin already bf16-rounded.
void rotate_heads_bf16(float* x, int64_t heads, int64_t head_dim, const float* cos_sin);
// decode_attention_f32's contract over bf16 keys/values, with eager attention's bf16 roundings: scores rounded, divided
// by `score_divisor` (LlamaAttention's / math.sqrt(head_dim); pass it bf16-rounded) and rounded, float32 softmax,
// probabilities rounded, output rounded; both products
// summed as libtorch 1.13's bf16 bmm sums them for heads x head_dim x t (in float32, or in bf16 for small products).
void decode_attention_bf16(const float* q, int64_t heads, int64_t kv_heads, int64_t head_dim, const uint16_t* k,
                           int64_t k_head_stride, int64_t k_stride, const uint16_t* v, int64_t v_head_stride,
                           int64_t v_stride, int64_t t, const float* mask, int64_t mask_stride, float score_divisor,
                           float* out, Part heads_part = {});
}  // namespace raw

// Backs a weight of at least 1 MB with 2 MB transparent huge pages (Linux madvise MADV_HUGEPAGE + MADV_COLLAPSE, once
// per tensor; a no-op elsewhere or where the kernel refuses). A one-row GEMV streams the weight from DRAM about twice
// as fast on huge pages on the Zen 4 development machine (4 KB pages cost a TLB walk every 64 cache lines).
void prefer_huge_pages(const at::Tensor& weight);

// ---- qgemv's path (src/kernels/qgemv.cpp) ----
// "avx512_vnni" or "scalar": the path gemv_q8 / gemv_q4 / quantize_row_q8 take on this CPU. set_qgemv_scalar(true)
// forces the scalar path (the same integer sums; float summation order differs), e.g. for tests.
const char* qgemv_isa();
void set_qgemv_scalar(bool on);

}  // namespace transformers::kernels
