// Resolving the weight files of a local model folder, as transformers' from_pretrained does.
#pragma once

#include <string>
#include <vector>

namespace transformers {

// "model.safetensors" + "fp16" -> "model.fp16.safetensors"
std::string add_variant(const std::string& name, const std::string& variant);

struct WeightFiles {
  std::vector<std::string> files;  // absolute paths, in load order
  std::string description;         // for errors
};

// transformers' order: model.safetensors, its index, pytorch_model.bin, its index (each with the variant). The shard
// names of an index must be file names inside `dir` (no absolute path, no "..") and a shard that is a link must
// resolve inside `dir` — or, in a Hugging Face cache snapshot, inside the repository's blobs/ folder.
// CheckpointError naming the file otherwise, or when no weights file exists.
WeightFiles find_weight_files(const std::string& dir, const std::string& variant);

}  // namespace transformers
