// PyTorch `torch.save` checkpoints (zip format: pytorch_model.bin). libtorch 1.13's own unpickler turns the
// collections.OrderedDict of a state_dict into None (LIBTORCH.md §3.7), so this is a restricted unpickler of our
// own, in the spirit of torch.load(weights_only=True): it accepts only the opcodes and globals a state dict needs
// (tensor rebuilds, OrderedDict, storage types) and refuses anything else instead of executing it.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace transformers {

// Tensors of a saved state dict, in the file's order; views of one storage share it. CheckpointError naming the
// file for anything else (legacy non-zip files, unknown globals, corrupt records).
std::vector<std::pair<std::string, at::Tensor>> load_torch_bin(const std::string& path);

}  // namespace transformers
