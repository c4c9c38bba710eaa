// What a tensor- or pipeline-parallel plan did to a model (PreTrainedModel::_tp_state): the slice of each parameter
// this rank holds, so the loader narrows the checkpoint's tensors the same way.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace transformers::distributed {

// This rank's part of one parameter: the concatenation of `pieces` (start, length) along `dim`; no pieces of
// length > 0 means the rank holds none of it (another pipeline stage's weight).
struct Slice {
  int64_t dim = 0;
  std::vector<std::pair<int64_t, int64_t>> pieces;
};

struct PlanState {
  std::map<std::string, Slice> slices;  // parameter key (model naming) -> slice
  std::string base_prefix;
  std::vector<std::pair<std::string, std::string>> renames;
};

inline std::string join_path(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : name.empty() ? prefix : prefix + "." + name;
}

}  // namespace transformers::distributed
