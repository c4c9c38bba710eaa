// Declarations shared between the kernel files (not part of the public kernels.h).
#pragma once

#include <cstdint>
#include <vector>

namespace transformers::kernels {

// Whether the CPU has AVX-512F (the blocked attention and the prompt GEMM need nothing more).
inline bool cpu_avx512f() {
#if defined(__x86_64__)
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
#else
  return false;
#endif
}

// v.data() with room for at least n elements (per-thread scratch, grown once and reused across calls).
template <typename T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

namespace raw {
// softmax(q·k·scale + mask)·v for one query row over t keys (kernels.cpp): keys masked with float32 lowest or -inf
// skipped, a row with no visible key as eager makes it (uniform over the lowest-masked keys). `scores` holds t floats.
void attend_one(const float* q, const float* k, int64_t k_stride, const float* v, int64_t v_stride, int64_t t,
                int64_t d, const float* mask, int64_t mask_stride, float scale, float* out, float* scores);
}  // namespace raw

// Strided views of kernels::attention's operands (element strides; the last dimension contiguous).
struct AttentionOperands {
  const float* q;
  int64_t qs0, qs1, qs2;  // [B, Hq, Tq, D]
  const float* k;
  int64_t ks0, ks1, ks2;  // [B, Hk, Tk, D]
  const float* v;
  int64_t vs0, vs1, vs2;
  const float* mask;      // additive, or null
  int64_t ms0, ms2, ms3;  // batch, query and key strides (0 where broadcast)
  int64_t batch, hq, hk, tq, tk, d;
  float scale;
  float* out;  // [B, Tq, Hq * D] contiguous
  // FlashAttention's masking instead of (or on top of) the additive mask: keys with key_keep[b * keep_s0 + j] == 0
  // hidden, query i sees keys j <= causal_offset + i when causal, and a query with no visible key comes out as zeros
  // (empty_rows_zero) rather than eager's uniform softmax.
  const uint8_t* key_keep = nullptr;
  int64_t keep_s0 = 0;
  bool causal = false;
  int64_t causal_offset = 0;
  bool empty_rows_zero = false;
};

// Whether blocked_attention runs on this CPU (AVX-512F).
bool blocked_attention_supported();
// kernels::attention for several queries (src/kernels/attention.cpp): blocks of 16 queries × 64 keys, online softmax.
void blocked_attention(const AttentionOperands& a);

}  // namespace transformers::kernels
