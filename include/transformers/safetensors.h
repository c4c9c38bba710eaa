// Safetensors: mmap reader with zero-copy tensors and strict validation, and a writer whose files Python loads.
// Format: https://github.com/huggingface/safetensors (u64 LE header length, JSON header, raw little-endian data).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace transformers::safetensors {

struct TensorInfo {
  std::string name;
  std::string dtype;            // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;           // byte offsets relative to the start of the data section
  uint64_t end = 0;
};

// Largest header we accept (the reference implementation uses 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

class MappedFile;

// An opened .safetensors file. Tensors handed out alias the mapping (copy-on-write, MAP_PRIVATE) and keep it alive.
class SafeOpen {
 public:
  // Validates everything before returning: throws CheckpointError naming the file (and tensor) on any violation.
  explicit SafeOpen(const std::string& path);
  ~SafeOpen();

  const std::string& path() const { return path_; }
  std::vector<std::string> keys() const;  // in header order sorted by name, as safe_open().keys()
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by offset
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Zero-copy tensor over the mapping. Throws CheckpointError if the name is absent.
  at::Tensor get_tensor(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Reads every tensor of a file (zero-copy), in name order.
std::vector<std::pair<std::string, at::Tensor>> load_file(const std::string& path);

// Writes tensors in the given order with `{"__metadata__": metadata}` (default {"format": "pt"}).
// Non-contiguous tensors are made contiguous. Written to a temporary file and renamed, so a failure never leaves a
// half-written file behind. Two names that alias the same storage are both written (callers dedupe tied weights).
void save_file(const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::string& path,
               const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// "F32" <-> at::kFloat, ... Throws CheckpointError for an unknown name / unsupported dtype.
c10::ScalarType dtype_from_string(const std::string& name);
std::string dtype_to_string(c10::ScalarType type);
size_t dtype_size(const std::string& name);

}  // namespace transformers::safetensors
