// Activation checkpointing (torch.utils.checkpoint, non-reentrant semantics): run `fn` without keeping its
// activations; recompute them in backward. Gradients equal those of the plain graph.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

namespace transformers {

// `fn` maps the hidden states to new hidden states and is called again in backward, so it must capture by value; every other tensor it uses (masks, position ids) must not
// require grad; parameters it uses receive their gradients during the recomputation. The default CPU RNG state is
// replayed so dropout masks match.
at::Tensor checkpoint(const std::function<at::Tensor(const at::Tensor&)>& fn, const at::Tensor& hidden_states);

}  // namespace transformers
