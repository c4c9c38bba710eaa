// Fused CPU kernels for inference (src/kernels): GEMV for one-row Linears (fp32, bf16 and fp16 weights), RMSNorm,
// rotary embedding, SiLU-gate product and decode attention over a KV cache. The shared layers and families call them
// behind their usual module interfaces when `usable()` says so; otherwise the plain ATen path runs. Every kernel
// computes what the ATen reference computes (float32 accumulation), up to summation order.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

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

// The additive mask of a single decode query from transformers' 2-D padding mask [B, Tk] (1 = attend):
// [B, 1, 1, Tk] float32 with 0 or float32 lowest (what update_causal_mask builds for one query at the last position).
at::Tensor decode_mask(const at::Tensor& attention_mask_2d);

// KV cache write: src [B, H, T, D] into positions [offset, offset + T) of dim 2 of the contiguous buffer
// dst [B, H, capacity, D] (same dtype, src's last dim contiguous), by row copies. False (nothing written) when the
// tensors do not have that form; the caller then uses narrow().copy_().
bool write_cache_rows(const at::Tensor& dst, int64_t offset, const at::Tensor& src);

// The same kernels on raw float32 pointers, for a model's fused decode step (no tensors, no allocations).
namespace raw {
// y[o] (+)= W[o, :] · x (+ bias[o]) for W [out, in] row-major; rows split over threads past min_parallel_bytes().
void gemv_f32(const float* w, const float* x, float* y, const float* bias, int64_t out, int64_t in, bool accumulate);
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
                          float* out);
}  // namespace raw

// Which instruction set the GEMV kernels use on this CPU ("avx512_bf16", "avx512", "scalar").
const char* isa();

}  // namespace transformers::kernels
