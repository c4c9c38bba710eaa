// Attention implementations by name (transformers' `_attn_implementation`): "eager", "sdpa", and whatever else
// registers itself. Families call `attention_function(config._attn_implementation())` once per layer.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace transformers {

struct AttentionArgs {
  double scaling = 1.0;        // multiplies q·kᵀ
  // > 0: eager attention divides q·kᵀ by it instead of multiplying by `scaling` (LlamaAttention's
  // "/ math.sqrt(head_dim)"; in bf16 the two round differently when sqrt(head_dim) is not a power of two).
  double scale_divisor = 0.0;
  double dropout = 0.0;        // applied only when `training`
  bool training = false;
  bool output_attentions = false;
  // Causal masking done by the implementation itself (flash_attention_2; queries aligned to the last keys). The
  // eager and sdpa paths get causality through `mask` instead.
  bool is_causal = false;
};

// q [B, H, Tq, D], k/v [B, H, Tk, D] (already repeated for GQA), mask additive [B, 1|H, Tq, Tk] or undefined.
// For "flash_attention_2" the mask is transformers' 2-D padding mask [B, Tk] (1 = attend) or undefined, and
// causality comes from args.is_causal: the T×T score matrix is never built.
// Returns (attn_output [B, H, Tq, D], attn_weights [B, H, Tq, Tk] or undefined).
using AttentionFunction = std::function<std::pair<at::Tensor, at::Tensor>(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask, const AttentionArgs& args)>;

void register_attention(const std::string& name, AttentionFunction fn);
// Throws ValueError listing the registered implementations when `name` is unknown.
const AttentionFunction& attention_function(const std::string& name);
std::vector<std::string> attention_implementations();

}  // namespace transformers
