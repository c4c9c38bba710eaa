// Shared helpers for the parity tests: fixture paths, temp dirs, tensor comparison that reports max |diff|.
#pragma once

#include "transformers/config.h"
#include "transformers/kernels.h"
#include "transformers/safetensors.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>

namespace transformers {
class PreTrainedModel;
}

namespace tfcpp_test {

inline std::string source_dir() { return TFCPP_SOURCE_DIR; }
inline std::string shared_dir() { return std::string(TFCPP_SOURCE_DIR) + "/../shared"; }
inline std::string fixture(const std::string& name) { return shared_dir() + "/fixtures/hf/" + name; }
inline std::string tfcpp_bin() { return TFCPP_TFCPP_BIN; }

// A fresh directory under the test temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::path(testing::TempDir()) / ("tfcpp_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// max|a - b| / max|b| (in double).
inline double rel_err(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(1e-6, b.to(at::kDouble).abs().max().item<double>());
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / scale;
}

// Restores the kernel switches and thread count a test changes (kernels.h).
struct KernelSettings {
  int threads = at::get_num_threads();
  int64_t parallel_bytes = transformers::kernels::min_parallel_bytes();
  bool on = transformers::kernels::enabled();
  ~KernelSettings() {
    at::set_num_threads(threads);
    transformers::kernels::set_min_parallel_bytes(parallel_bytes);
    transformers::kernels::set_enabled(on);
  }
};

// allclose(actual, expected, rtol, atol) with a message naming the tensor and the max |diff|.
inline ::testing::AssertionResult tensors_close(const std::string& name, const at::Tensor& actual,
                                                const at::Tensor& expected, double atol, double rtol) {
  if (actual.sizes() != expected.sizes())
    return ::testing::AssertionFailure() << name << ": shape " << actual.sizes() << " vs expected " << expected.sizes();
  at::Tensor a = actual.to(at::kDouble), e = expected.to(at::kDouble);
  double diff = (a - e).abs().max().item<double>();
  bool ok = at::allclose(a, e, rtol, atol);
  if (ok) return ::testing::AssertionSuccess() << name << " max|diff| " << diff;
  return ::testing::AssertionFailure() << name << ": max|diff| " << diff << " exceeds atol " << atol << " rtol " << rtol;
}

inline transformers::json read_json(const std::string& path) { return transformers::read_json_file(path, "test"); }

inline std::map<std::string, at::Tensor> read_tensors(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  for (auto& [k, t] : transformers::safetensors::load_file(path)) out[k] = t;
  return out;
}

// Case folders whose name starts with `prefix`, in ../shared/fixtures/hf and in the repo's tests/fixtures/hf.
std::vector<std::string> fixture_cases(const std::string& prefix);

// The case's model (expected.json "class"); a case with "prune_heads" describes the outputs after pruning the
// loaded checkpoint, so those heads are pruned.
std::shared_ptr<transformers::PreTrainedModel> load_case_model(const std::string& dir, const transformers::json& expected);

// One generate entry of a fixture case (inputs.json "generate": [{"name": ...}]).
struct GenerateCase {
  std::string dir, entry;
};
// Every generate entry of every case folder in `dirs`.
std::vector<GenerateCase> generate_cases(const std::vector<std::string>& dirs);
// Runs the entry through run_generate_case (the path of `tfcpp generate --inputs`) and checks, against
// expected.json / expected.safetensors: the ids, sequences_scores, and every generate.ENTRY.* tensor (scores,
// beam_indices, per-step attentions and hidden states; -inf where processors banned tokens must match too).
void expect_generate_entry_matches(const GenerateCase& c);

// Runs a shell command, returns (exit code, stdout).
std::pair<int, std::string> run_command(const std::string& command);

}  // namespace tfcpp_test
