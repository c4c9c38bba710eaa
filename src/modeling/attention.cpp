// Attention implementations, as the eager/sdpa classes of transformers' model files.
#include "transformers/attention.h"

#include "transformers/compat.h"
#include "transformers/errors.h"
#include "transformers/kernels.h"

#include <ATen/ATen.h>

#include <limits>
#include <map>
#include <mutex>
#include <thread>

namespace transformers {

namespace {

std::map<std::string, AttentionFunction>& registry() {
  static std::map<std::string, AttentionFunction> table;
  return table;
}

// LlamaAttention.forward: softmax in float32, cast back, dropout, weighted sum.
std::pair<at::Tensor, at::Tensor> eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& mask, const AttentionArgs& args) {
  at::Tensor weights = at::matmul(q, k.transpose(2, 3));
  if (args.scale_divisor > 0) weights.div_(args.scale_divisor);
  else if (args.scaling != 1.0) weights.mul_(args.scaling);
  if (mask.defined()) weights = weights + mask;
  weights = at::softmax(weights, -1, at::kFloat).to(q.scalar_type());
  if (args.training && args.dropout > 0) weights = at::dropout(weights, args.dropout, true);
  at::Tensor out = at::matmul(weights, v);
  return {out, args.output_attentions ? weights : at::Tensor()};
}

std::pair<at::Tensor, at::Tensor> sdpa_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& mask, const AttentionArgs& args) {
  // transformers falls back to eager when attention weights are requested.
  if (args.output_attentions) return eager_attention(q, k, v, mask, args);
  double dropout = args.training ? args.dropout : 0.0;
  return {compat::scaled_dot_product_attention(q, k, v, mask, dropout, false, args.scaling), at::Tensor()};
}

// Tiled attention with an online softmax (FlashAttention-2's schedule on CPU): per block of queries, a running max
// and sum over blocks of keys; scores exist only as [B, H, block, block]. Padded query rows come out as zeros.
std::pair<at::Tensor, at::Tensor> flash_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& mask, const AttentionArgs& args) {
  const int64_t tq = q.size(2), tk = k.size(2);
  const int64_t offset = tk - tq;  // bottom-right causal alignment: query i sees keys <= offset + i
  auto float_opts = q.options().dtype(at::kFloat);
  if (mask.defined() && mask.dim() != 2)
    throw ValueError("flash_attention_2 expects a 2-D padding mask [batch, keys], got " + std::to_string(mask.dim()) + "-D");
  if (args.output_attentions) {
    // Weights were asked for: the eager path with the equivalent additive mask.
    at::Tensor additive = at::zeros({q.size(0), 1, tq, tk}, float_opts);
    if (args.is_causal) {
      at::Tensor causal = at::ones({tq, tk}, float_opts.dtype(at::kBool)).triu(offset + 1);
      additive.masked_fill_(causal, std::numeric_limits<float>::lowest());
    }
    if (mask.defined()) additive.masked_fill_(mask.eq(0).view({q.size(0), 1, 1, tk}), std::numeric_limits<float>::lowest());
    return eager_attention(q, k, v, additive.to(q.scalar_type()), args);
  }
  // float32 inference on an AVX-512 CPU: the blocked kernel (kernels::flash_attention, no mask tensor built).
  if (kernels::usable(q) && q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat &&
      v.scalar_type() == at::kFloat && q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1 &&
      !(args.training && args.dropout > 0)) {
    at::Tensor fused = kernels::flash_attention(q, k, v, mask, args.is_causal, args.scaling);
    if (fused.defined()) return {fused.view({q.size(0), tq, q.size(1), q.size(3)}).transpose(1, 2), at::Tensor()};
  }
  constexpr int64_t kBlock = 128;
  at::Tensor key_bias;  // [B, 1, 1, Tk]: 0 or -inf
  if (mask.defined()) {
    key_bias = at::zeros({mask.size(0), 1, 1, tk}, float_opts)
                   .masked_fill_(mask.narrow(-1, mask.size(-1) - tk, tk).eq(0).view({mask.size(0), 1, 1, tk}), -INFINITY);
  }
  at::Tensor out = at::empty_like(q);
  at::Tensor scaled_q = q.to(at::kFloat).mul(args.scaling);
  at::Tensor kf = k.to(at::kFloat), vf = v.to(at::kFloat);
  for (int64_t q0 = 0; q0 < tq; q0 += kBlock) {
    const int64_t bq = std::min(kBlock, tq - q0);
    at::Tensor qb = scaled_q.narrow(2, q0, bq);
    at::Tensor m = at::full({q.size(0), q.size(1), bq, 1}, -INFINITY, float_opts);
    at::Tensor l = at::zeros({q.size(0), q.size(1), bq, 1}, float_opts);
    at::Tensor acc = at::zeros({q.size(0), q.size(1), bq, q.size(3)}, float_opts);
    const int64_t k_end = args.is_causal ? std::min(tk, offset + q0 + bq) : tk;
    for (int64_t k0 = 0; k0 < k_end; k0 += kBlock) {
      const int64_t bk = std::min(kBlock, k_end - k0);
      at::Tensor s = at::matmul(qb, kf.narrow(2, k0, bk).transpose(2, 3));  // [B, H, bq, bk]
      if (key_bias.defined()) s.add_(key_bias.narrow(3, k0, bk));
      if (args.is_causal && k0 + bk - 1 > offset + q0) {
        at::Tensor rows = at::arange(q0, q0 + bq, float_opts.dtype(at::kLong)).unsqueeze(1) + offset;
        at::Tensor cols = at::arange(k0, k0 + bk, float_opts.dtype(at::kLong)).unsqueeze(0);
        s.masked_fill_(cols.gt(rows), -INFINITY);
      }
      at::Tensor m_new = at::maximum(m, std::get<0>(s.max(-1, true)));
      at::Tensor safe_m = at::where(at::isinf(m_new), at::zeros_like(m_new), m_new);  // all-masked rows so far
      at::Tensor p = at::exp(s - safe_m);
      at::Tensor alpha = at::exp(m - safe_m);
      l = l * alpha + p.sum(-1, true);
      acc = acc * alpha + at::matmul(p, vf.narrow(2, k0, bk));
      m = m_new;
    }
    at::Tensor block = at::where(l.gt(0), acc / l, at::zeros_like(acc));
    out.narrow(2, q0, bq).copy_(block.to(q.scalar_type()));
  }
  return {out, at::Tensor()};
}

bool register_builtin() {
  registry()["eager"] = eager_attention;
  registry()["sdpa"] = sdpa_attention;
  registry()["flash_attention_2"] = flash_attention;
  return true;
}
const bool builtin_registered = register_builtin();

}  // namespace

void register_attention(const std::string& name, AttentionFunction fn) { registry()[name] = std::move(fn); }

const AttentionFunction& attention_function(const std::string& name) {
  (void)builtin_registered;
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& n : attention_implementations()) known += (known.empty() ? "" : ", ") + n;
    throw ValueError("unknown attn_implementation '" + name + "'; available: " + known);
  }
  return it->second;
}

std::vector<std::string> attention_implementations() {
  std::vector<std::string> names;
  for (const auto& [name, fn] : registry()) names.push_back(name);
  return names;
}

namespace compat {

at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const at::Tensor& mask, double dropout_p, bool is_causal, double scale) {
#if TFCPP_TORCH_AT_LEAST(2, 1)
  return at::scaled_dot_product_attention(q, k, v, mask.defined() ? c10::optional<at::Tensor>(mask) : c10::nullopt,
                                          dropout_p, is_causal, scale);
#else
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)).mul_(scale);
  if (is_causal) {
    int64_t tq = q.size(-2), tk = k.size(-2);
    scores.masked_fill_(at::ones({tq, tk}, q.options().dtype(at::kBool)).triu(tk - tq + 1), -INFINITY);
  }
  if (mask.defined()) scores = scores + mask;
  at::Tensor weights = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  if (dropout_p > 0) weights = at::dropout(weights, dropout_p, true);
  return at::matmul(weights, v);
#endif
}

int physical_cores() {
  // Count distinct (physical id, core id) pairs; fall back to the logical count.
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::set<std::pair<int, int>> cores;
  char line[512];
  int physical = 0;
  while (std::fgets(line, sizeof line, f)) {
    int value;
    if (std::sscanf(line, "physical id : %d", &value) == 1) physical = value;
    if (std::sscanf(line, "core id : %d", &value) == 1) cores.insert({physical, value});
  }
  std::fclose(f);
  int n = static_cast<int>(cores.size());
  return n > 0 ? n : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace compat
}  // namespace transformers
