// The shared model suite (in the spirit of transformers' ModelTesterMixin), run over every fixture case of every
// family that is implemented: save/load round trip, sharded round trip, and that save_pretrained stores exactly the
// tensors transformers stored for the same model (tied weights once, nothing extra, nothing missing).
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"

#include <filesystem>

namespace fs = std::filesystem;
using namespace transformers;
using namespace tfcpp_test;

namespace {

struct Case {
  std::string dir, class_name;
  FromPretrainedOptions options;
};

// Every case (shared and repo-made) whose class is registered and which has a forward entry.
std::vector<Case> implemented_cases() {
  std::vector<std::string> classes = registered_classes();
  std::vector<Case> out;
  for (const auto& dir : fixture_cases("")) {
    if (!fs::exists(dir + "/expected.json") || !fs::exists(dir + "/model/config.json")) continue;
    json expected = read_json(dir + "/expected.json");
    json inputs = read_json(dir + "/inputs.json");
    std::string cls = expected.value("class", "");
    if (!inputs.contains("forward") || std::find(classes.begin(), classes.end(), cls) == classes.end()) continue;
    Case c{dir, cls, {}};
    const json& kwargs = expected["load"]["kwargs"];
    if (kwargs.contains("variant")) c.options.variant = kwargs["variant"].get<std::string>();
    out.push_back(c);
  }
  return out;
}

// Keys of every safetensors file in `dir`, with the model's legacy-name table applied (as loading does), so that
// e.g. parametrizations.weight.original0 and weight_g compare equal.
std::set<std::string> checkpoint_keys(const std::string& dir, const PreTrainedModel& model) {
  std::set<std::string> keys;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (name.size() <= 12 || name.substr(name.size() - 12) != ".safetensors") continue;
    for (std::string k : safetensors::SafeOpen(entry.path().string()).keys()) {
      for (const auto& [from, to] : model.checkpoint_key_renames) {
        auto pos = k.find(from);
        if (pos != std::string::npos) {
          k.replace(pos, from.size(), to);
          break;
        }
      }
      keys.insert(k);
    }
  }
  return keys;
}

std::map<std::string, at::Tensor> forward(PreTrainedModel& model, const std::string& dir) {
  auto outputs = run_forward_case(model, read_case_inputs(dir + "/inputs.json"));
  return {outputs.begin(), outputs.end()};
}

void expect_same(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(t.sizes() == b.at(name).sizes() && at::equal(t.to(at::kDouble), b.at(name).to(at::kDouble)))
        << name << " max|diff| " << max_abs_diff(t, b.at(name));
  }
}

class CommonModelTest : public ::testing::TestWithParam<Case> {};

TEST_P(CommonModelTest, SaveLoadRoundTripStoresWhatTransformersStores) {
  const Case& c = GetParam();
  auto model = model_from_pretrained(c.dir + "/model", c.class_name, c.options);
  auto before = forward(*model, c.dir);
  TempDir tmp;
  model->save_pretrained(tmp.str());
  // A checkpoint of this very class (not a base<->head case) is stored with exactly the same tensors.
  if (model->loading_info.missing_keys.empty() && model->loading_info.unexpected_keys.empty()) {
    EXPECT_EQ(checkpoint_keys(tmp.str(), *model), checkpoint_keys(c.dir + "/model", *model));
  }
  auto reloaded = model_from_pretrained(tmp.str(), c.class_name);
  EXPECT_TRUE(reloaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(reloaded->loading_info.unexpected_keys.empty());
  expect_same(forward(*reloaded, c.dir), before);
}

TEST_P(CommonModelTest, ShardedRoundTrip) {
  const Case& c = GetParam();
  auto model = model_from_pretrained(c.dir + "/model", c.class_name, c.options);
  int64_t bytes = model->get_memory_footprint();
  SavePretrainedOptions options;
  options.max_shard_size = std::to_string(std::max<int64_t>(bytes / 3, 1));
  TempDir tmp;
  model->save_pretrained(tmp.str(), options);
  ASSERT_TRUE(fs::exists(tmp / "model.safetensors.index.json"));
  auto reloaded = model_from_pretrained(tmp.str(), c.class_name);
  EXPECT_TRUE(reloaded->loading_info.missing_keys.empty());
  expect_same(forward(*reloaded, c.dir), forward(*model, c.dir));
}

INSTANTIATE_TEST_SUITE_P(EveryFamily, CommonModelTest, ::testing::ValuesIn(implemented_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string n = fs::path(info.param.dir).filename().string();
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

}  // namespace
