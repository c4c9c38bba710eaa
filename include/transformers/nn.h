// Module base and the shared layers every family builds on (src/layers).
// Parameters are bound to members so tying, resizing and pruning can swap them and the forward pass follows.
#pragma once

#include <torch/nn/module.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace transformers::nn {

class Module : public torch::nn::Module {
 public:
  using torch::nn::Module::Module;

  // Registers `value` as parameter `name` and keeps `*slot` pointing at whatever tensor is registered under it.
  void bind_parameter(const std::string& name, at::Tensor* slot, const at::Tensor& value, bool requires_grad = true);
  void bind_buffer(const std::string& name, at::Tensor* slot, const at::Tensor& value);
  // Swaps in another tensor (another shape, or a tensor shared with another module: tying).
  void replace_parameter(const std::string& name, const at::Tensor& value);
  bool has_parameter(const std::string& name) const;
  // Registers, replaces or (undefined `value`) removes buffer `name`, keeping `*slot` in sync.
  void set_buffer(const std::string& name, at::Tensor* slot, const at::Tensor& value);
  // Non-persistent buffers are left out of the state dict, as `register_buffer(..., persistent=False)`.
  void set_non_persistent(const std::string& name) { non_persistent_.insert(name); }
  // Points parameter `name`'s slot at `slot` (another member, possibly of a helper object) and stores the
  // registered tensor there; replace_parameter then updates `*slot`.
  void rebind_parameter_slot(const std::string& name, at::Tensor* slot);
  bool is_persistent(const std::string& name) const { return !non_persistent_.count(name); }
  // Tensor parallelism (transformers/distributed.h): set by a plan, it replaces the layer's forward with one that
  // computes with this rank's shard of the weights and combines the ranks' results (Linear, Embedding, Conv1D).
  std::function<at::Tensor(const at::Tensor&)> tp_forward;

 private:
  std::map<std::string, at::Tensor*> slots_;
  std::set<std::string> non_persistent_;
};

// torch.nn.ModuleList: children named "0", "1", ... so keys read "layers.3.mlp.up_proj.weight".
template <typename M>
class ModuleList : public Module {
 public:
  void push_back(std::shared_ptr<M> module) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(module)));
  }
  size_t size() const { return items_.size(); }
  const std::shared_ptr<M>& operator[](size_t i) const { return items_[i]; }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

// torch.nn.Linear: y = x W^T + b, W [out, in].
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t in_features, out_features;
  at::Tensor weight, bias;  // bias undefined when absent
  // Weight-only quantization (transformers/quantization.h). quant_bits 8: `weight` holds int8 codes [out, in] and
  // the `weight_scale` buffer [out]; 4: `weight` holds uint8 [out, ceil(in/2)] (two codes per byte) with
  // `weight_scale` and `weight_zero` [out, groups]. 0: a float Linear.
  int quant_bits = 0;
  int64_t quant_group_size = 0;
  at::Tensor weight_scale, weight_zero;

  // The prefill GEMM's copy of `weight` (kernels.h pack_sgemm_weight), built on the second float32 inference forward
  // of several rows (the first packs panel by panel on the fly, same bits) and rebuilt the same way when `weight` is
  // another tensor or was written in place (its version counter moved).
  struct PackedWeight;

 private:
  at::Tensor forward_impl(const at::Tensor& x) const;
  at::Tensor packed_forward(const at::Tensor& x) const;  // undefined when the packed path does not apply
  mutable std::shared_ptr<const PackedWeight> packed_;
};
// Forward of a quantized Linear (src/core/quantization_kernels.cpp).
at::Tensor quantized_linear_forward(const Linear& layer, const at::Tensor& x);

// pytorch_utils.Conv1D (GPT-2, Clvp): a linear layer whose weight is stored transposed, [nx (in), nf (out)], as in
// the checkpoints; y = addmm(bias, x, weight).
class Conv1D : public Module {
 public:
  Conv1D(int64_t nf, int64_t nx);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t nf, nx;
  at::Tensor weight, bias;
  // Weight-only quantization (transformers/quantization.h): a bias-free Linear [nf, nx] holding the codes. Its
  // tensors are this module's "weight", "weight_scale" and "weight_zero" (the state dict keeps Conv1D's names, the
  // codes in Linear's [out, in] layout); `weight` above is undefined meanwhile. Null for a float layer.
  std::shared_ptr<Linear> quantized;
};

// Disk offload (transformers/device_map.h): the shared layers call these around their forward while any model is
// offloaded, so the offloaded block's memory-mapped weights are paged in before and released after.
namespace offload {
extern std::atomic<int> active_models;
void pre_forward(const Module& module);
void post_forward(const Module& module);
}  // namespace offload

// torch.nn.Embedding with padding_idx (its row is zeroed at init and gets no gradient).
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx = std::nullopt);
  at::Tensor forward(const at::Tensor& ids) const;
  int64_t num_embeddings, embedding_dim;
  std::optional<int64_t> padding_idx;
  at::Tensor weight;
  bool output_requires_grad = false;  // enable_input_require_grads
};

// torch.nn.LayerNorm (elementwise affine, optional bias).
class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, double eps = 1e-5, bool bias = true);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t dim;
  double eps;
  at::Tensor weight, bias;
};

// pytorch_utils.prune_linear_layer, in place: keeps entries `index` of the weight along `dim` (0: outputs, 1: inputs).
void prune_linear_layer(Linear& layer, const at::Tensor& index, int64_t dim = 0);
// pytorch_utils.find_pruneable_heads_and_indices: (heads still to prune, kept indices of the n_heads*head_size dim).
std::pair<std::set<int64_t>, at::Tensor> find_pruneable_heads_and_indices(const std::vector<int64_t>& heads,
                                                                          int64_t n_heads, int64_t head_size,
                                                                          const std::set<int64_t>& already_pruned);

// nn.functional.dropout: identity unless training with p > 0.
at::Tensor dropout(const at::Tensor& x, double p, bool training);

// ACT2FN: "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"/"swish", "tanh", "sigmoid", "quick_gelu", ...
// Throws ValueError listing the supported names.
using Activation = at::Tensor (*)(const at::Tensor&);
Activation get_activation(const std::string& name);

}  // namespace transformers::nn
