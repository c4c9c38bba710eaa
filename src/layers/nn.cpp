#include "transformers/nn.h"

#include "transformers/errors.h"
#include "transformers/kernels.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace transformers::nn {

void Module::bind_parameter(const std::string& name, at::Tensor* slot, const at::Tensor& value, bool requires_grad) {
  *slot = register_parameter(name, value, requires_grad);
  slots_[name] = slot;
}

void Module::bind_buffer(const std::string& name, at::Tensor* slot, const at::Tensor& value) {
  *slot = register_buffer(name, value);
  slots_[name] = slot;
}

void Module::replace_parameter(const std::string& name, const at::Tensor& value) {
  at::Tensor* entry = parameters_.find(name);
  if (!entry) throw ValueError("module has no parameter '" + name + "'");
  *entry = value;
  auto slot = slots_.find(name);
  if (slot != slots_.end()) *slot->second = value;
}

bool Module::has_parameter(const std::string& name) const { return parameters_.contains(name); }

void Module::rebind_parameter_slot(const std::string& name, at::Tensor* slot) {
  at::Tensor* entry = parameters_.find(name);
  if (!entry) throw ValueError("module has no parameter '" + name + "'");
  *slot = *entry;
  slots_[name] = slot;
}

void Module::set_buffer(const std::string& name, at::Tensor* slot, const at::Tensor& value) {
  // torch::nn::Module keeps buffers_ private: an existing buffer is updated through its handle (set_data), and a
  // "removed" one stays registered, empty and non-persistent (out of the state dict).
  auto known = slots_.find(name);
  if (!slot && known != slots_.end()) slot = known->second;
  at::Tensor existing;
  for (const auto& b : named_buffers(false))
    if (b.key() == name) existing = b.value();
  if (!value.defined()) {
    if (existing.defined()) {
      existing.set_data(at::empty({0}, existing.options()));
      non_persistent_.insert(name);
    }
    if (slot) *slot = at::Tensor();
    return;
  }
  if (existing.defined()) {
    existing.set_data(value);
    non_persistent_.erase(name);
    if (slot) *slot = existing;
  } else {
    at::Tensor& registered = register_buffer(name, value);
    if (slot) *slot = registered;
  }
  if (slot) slots_[name] = slot;
}

namespace {
// Runs `f` between the disk offload hooks of `m`; nothing extra while no model is offloaded.
template <typename F>
at::Tensor with_offload_hooks(const Module& m, F&& f) {
  if (!offload::active_models.load(std::memory_order_relaxed)) return f();
  offload::pre_forward(m);
  at::Tensor y = f();
  offload::post_forward(m);
  return y;
}
}  // namespace

Linear::Linear(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  bind_parameter("weight", &weight, at::empty({out, in}));
  if (with_bias) bind_parameter("bias", &bias, at::empty({out}));
}

at::Tensor Linear::forward(const at::Tensor& x) const {
  if (tp_forward) return tp_forward(x);
  return with_offload_hooks(*this, [&] { return forward_impl(x); });
}

namespace {
int64_t version_of(const at::Tensor& t) { return t.is_inference() ? 0 : t._version(); }
}  // namespace

struct Linear::PackedWeight {
  explicit PackedWeight(const at::Tensor& weight, bool pack)
      : source(weight.storage().getWeakStorageImpl()), data(weight.data_ptr()), version(version_of(weight)),
        panels(pack ? kernels::pack_sgemm_weight(weight) : at::Tensor()) {}
  bool same_weight(const at::Tensor& weight) const {
    return source.lock().get() == weight.storage().unsafeGetStorageImpl() && data == weight.data_ptr() &&
           version == version_of(weight);
  }
  // Weak: the old weight's memory is not kept alive, yet its StorageImpl address cannot be reused while this is held.
  c10::weak_intrusive_ptr<c10::StorageImpl> source;
  const void* data;
  int64_t version;
  at::Tensor panels;
};

at::Tensor Linear::packed_forward(const at::Tensor& x) const {
  // Several rows of float32 at inference (eval mode, no autograd graph) on a CPU with the AVX-512 GEMM. Training
  // mode keeps at::linear, so that gradient checkpointing's no-grad pass and its recomputation sum alike.
  if (x.numel() <= in_features || x.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat ||
      !x.device().is_cpu() || !weight.device().is_cpu() || weight.dim() != 2 || is_training() ||
      (bias.defined() && (bias.scalar_type() != at::kFloat || !bias.is_contiguous())) || !kernels::sgemm_supported() ||
      (at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad() ||
                                      (bias.defined() && bias.requires_grad()))))
    return {};
  // While a model is disk-offloaded, no kept copy (it would defeat the offload): each call packs panel by panel.
  if (offload::active_models.load(std::memory_order_relaxed)) return kernels::sgemm(x, weight, bias);
  // Packed on the second several-row forward with the same weight: a single prompt (one `tfcpp generate`) packs
  // each panel on the fly and keeps no copy (a kept copy costs ~0.2 s and the weights' size again on a 110M model);
  // a model that prefills again (serving, chat, benchmarks) packs once and keeps the faster GEMM. Same bits either way.
  std::shared_ptr<const PackedWeight> cached = std::atomic_load(&packed_);
  if (!cached || !cached->same_weight(weight)) {
    std::atomic_store(&packed_, std::make_shared<const PackedWeight>(weight, /*pack=*/false));
    return kernels::sgemm(x, weight, bias);
  }
  if (!cached->panels.defined()) {
    cached = std::make_shared<const PackedWeight>(weight, /*pack=*/true);
    std::atomic_store(&packed_, cached);
  }
  return kernels::sgemm_packed(x, cached->panels, out_features, bias);
}

at::Tensor Linear::forward_impl(const at::Tensor& x) const {
  if (quant_bits) return quantized_linear_forward(*this, x);
  if (at::Tensor y = packed_forward(x); y.defined()) return y;
  // One row (decode) at inference: our multithreaded AVX-512 GEMV for fp32 / bf16 / fp16 weights (kernels.h).
  if (x.numel() == in_features && kernels::usable(x)) {
    at::Tensor y = kernels::gemv(x, weight, bias);
    if (y.defined()) return y;
  }
  // One row in fp32: sgemv streams the weight at memory bandwidth, sgemm with M=1 does not (LIBTORCH.md §3.5).
  if (x.numel() == in_features && x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
      !at::GradMode::is_enabled()) {
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = out_features;
    at::Tensor y = bias.defined() ? at::addmv(bias, weight, x.reshape({in_features})) : at::mv(weight, x.reshape({in_features}));
    return y.view(shape);
  }
  return at::linear(x, weight, bias);
}

Conv1D::Conv1D(int64_t nf_, int64_t nx_) : nf(nf_), nx(nx_) {
  bind_parameter("weight", &weight, at::empty({nx, nf}));
  bind_parameter("bias", &bias, at::zeros({nf}));
}

at::Tensor Conv1D::forward(const at::Tensor& x) const {
  if (tp_forward) return tp_forward(x);  // a tensor-parallel shard (distributed.h)
  return with_offload_hooks(*this, [&] {
    std::vector<int64_t> size_out(x.sizes().begin(), x.sizes().end());
    size_out.back() = nf;
    if (quantized) return (quantized_linear_forward(*quantized, x) + bias).view(size_out);
    return at::addmm(bias, x.reshape({-1, x.size(-1)}), weight).view(size_out);
  });
}

Embedding::Embedding(int64_t num, int64_t dim, std::optional<int64_t> pad)
    : num_embeddings(num), embedding_dim(dim), padding_idx(pad) {
  if (padding_idx && *padding_idx < 0) padding_idx = *padding_idx + num;
  bind_parameter("weight", &weight, at::empty({num, dim}));
}

at::Tensor Embedding::forward(const at::Tensor& ids) const {
  if (tp_forward) return tp_forward(ids);
  at::Tensor out = with_offload_hooks(*this, [&] { return at::embedding(weight, ids, padding_idx.value_or(-1)); });
  if (output_requires_grad && at::GradMode::is_enabled() && !out.requires_grad()) out.requires_grad_(true);
  return out;
}

LayerNorm::LayerNorm(int64_t d, double e, bool with_bias) : dim(d), eps(e) {
  bind_parameter("weight", &weight, at::ones({d}));
  if (with_bias) bind_parameter("bias", &bias, at::zeros({d}));
}

at::Tensor LayerNorm::forward(const at::Tensor& x) const {
  return with_offload_hooks(*this, [&] { return at::layer_norm(x, {dim}, weight, bias, eps); });
}

at::Tensor dropout(const at::Tensor& x, double p, bool training) {
  return training && p > 0 ? at::dropout(x, p, true) : x;
}

void prune_linear_layer(Linear& layer, const at::Tensor& index, int64_t dim) {
  at::NoGradGuard no_grad;
  at::Tensor w = layer.weight.index_select(dim, index).clone().contiguous();
  layer.replace_parameter("weight", w.set_requires_grad(layer.weight.requires_grad()));
  if (layer.bias.defined() && dim == 0)
    layer.replace_parameter("bias", layer.bias.index_select(0, index).clone().set_requires_grad(layer.bias.requires_grad()));
  layer.out_features = layer.weight.size(0);
  layer.in_features = layer.weight.size(1);
}

std::pair<std::set<int64_t>, at::Tensor> find_pruneable_heads_and_indices(const std::vector<int64_t>& heads,
                                                                          int64_t n_heads, int64_t head_size,
                                                                          const std::set<int64_t>& already_pruned) {
  at::Tensor mask = at::ones({n_heads, head_size});
  std::set<int64_t> to_prune;
  for (int64_t h : heads)
    if (!already_pruned.count(h)) to_prune.insert(h);
  for (int64_t head : to_prune) {
    int64_t shift = std::count_if(already_pruned.begin(), already_pruned.end(), [&](int64_t h) { return h < head; });
    mask[head - shift].zero_();
  }
  at::Tensor flat = mask.view(-1).eq(1);
  return {to_prune, at::arange(flat.numel(), at::kLong).masked_select(flat)};
}

namespace {

at::Tensor gelu(const at::Tensor& x) { return at::gelu(x); }
at::Tensor gelu_tanh(const at::Tensor& x) { return at::gelu(x, "tanh"); }
at::Tensor gelu_new(const at::Tensor& x) {
  // NewGELUActivation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  return 0.5 * x * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * at::pow(x, 3.0))));
}
at::Tensor quick_gelu(const at::Tensor& x) { return x * at::sigmoid(1.702 * x); }
at::Tensor relu(const at::Tensor& x) { return at::relu(x); }
at::Tensor silu(const at::Tensor& x) { return at::silu(x); }
at::Tensor tanh_act(const at::Tensor& x) { return at::tanh(x); }
at::Tensor sigmoid(const at::Tensor& x) { return at::sigmoid(x); }
at::Tensor linear_act(const at::Tensor& x) { return x; }
at::Tensor mish(const at::Tensor& x) { return at::mish(x); }
at::Tensor relu6(const at::Tensor& x) { return at::hardtanh(x, 0.0, 6.0); }
at::Tensor gelu_10(const at::Tensor& x) { return at::clamp(at::gelu(x), -10.0, 10.0); }
at::Tensor gelu_fast(const at::Tensor& x) {
  return 0.5 * x * (1.0 + at::tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)));
}

const std::map<std::string, Activation>& activations() {
  // transformers/activations.py ACT2CLS
  static const std::map<std::string, Activation> table{
      {"gelu", gelu},           {"gelu_10", gelu_10},         {"gelu_fast", gelu_fast},
      {"gelu_new", gelu_new},   {"gelu_python", gelu},        {"gelu_pytorch_tanh", gelu_tanh},
      {"gelu_accurate", gelu_new}, {"linear", linear_act},    {"mish", mish},
      {"quick_gelu", quick_gelu}, {"relu", relu},             {"relu6", relu6},
      {"sigmoid", sigmoid},     {"silu", silu},               {"swish", silu},
      {"tanh", tanh_act}};
  return table;
}

}  // namespace

Activation get_activation(const std::string& name) {
  const auto& table = activations();
  auto it = table.find(name);
  if (it != table.end()) return it->second;
  std::string known;
  for (const auto& [n, f] : table) known += (known.empty() ? "" : ", ") + n;
  throw ValueError("activation function '" + name + "' not found in ACT2FN; supported: " + known);
}

}  // namespace transformers::nn
