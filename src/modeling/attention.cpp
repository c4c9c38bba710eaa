// Attention implementations, as the eager/sdpa classes of transformers' model files.
#include "transformers/attention.h"

#include "transformers/compat.h"
#include "transformers/errors.h"

#include <ATen/ATen.h>

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
  if (args.scaling != 1.0) weights.mul_(args.scaling);
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

bool register_builtin() {
  registry()["eager"] = eager_attention;
  registry()["sdpa"] = sdpa_attention;
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
