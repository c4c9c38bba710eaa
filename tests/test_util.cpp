#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/generation.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <sys/wait.h>

namespace tfcpp_test {

std::vector<std::string> fixture_cases(const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& root : {shared_dir() + "/fixtures/hf", source_dir() + "/tests/fixtures/hf"})
    for (const auto& entry : std::filesystem::directory_iterator(root))
      if (entry.is_directory() && entry.path().filename().string().rfind(prefix, 0) == 0)
        out.push_back(entry.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::shared_ptr<transformers::PreTrainedModel> load_case_model(const std::string& dir, const transformers::json& expected) {
  auto model = transformers::model_from_pretrained(dir + "/model", expected["class"].get<std::string>());
  if (expected.contains("prune_heads")) {
    std::map<int64_t, std::vector<int64_t>> heads;
    for (const auto& [layer, list] : expected["prune_heads"].items())
      heads[std::stoll(layer)] = list.get<std::vector<int64_t>>();
    model->prune_heads(heads);
  }
  return model;
}

std::vector<GenerateCase> generate_cases(const std::vector<std::string>& dirs) {
  std::vector<GenerateCase> out;
  for (const auto& dir : dirs)
    for (const auto& entry : read_json(dir + "/inputs.json").value("generate", transformers::json::array()))
      out.push_back({dir, entry.at("name").get<std::string>()});
  return out;
}

void expect_generate_entry_matches(const GenerateCase& c) {
  using namespace transformers;
  json expected = read_json(c.dir + "/expected.json");
  auto model = load_case_model(c.dir, expected);
  GenerateOutput out = run_generate_case(*model, read_case_inputs(c.dir + "/inputs.json"), c.entry);
  const json& want = expected["generate"][c.entry];
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();

  EXPECT_EQ(tensor_to_json(out.sequences), want["ids"]) << "sequences\n" << out.sequences;
  if (want.contains("sequences_scores")) {
    ASSERT_TRUE(out.sequences_scores.defined());
    at::Tensor ref = at::tensor(want["sequences_scores"].get<std::vector<double>>(), at::kDouble);
    EXPECT_TRUE(tensors_close("sequences_scores", out.sequences_scores, ref, atol, rtol));
  }
  auto produced = out.named_tensors();
  std::map<std::string, at::Tensor> actual(produced.begin(), produced.end());
  const std::string prefix = "generate." + c.entry + ".";
  int compared = 0;
  for (const auto& [name, ref] : read_tensors(c.dir + "/expected.safetensors")) {
    if (name.rfind(prefix, 0) != 0) continue;
    std::string field = name.substr(prefix.size());
    ASSERT_TRUE(actual.count(field)) << field << " not produced";
    if (ref.scalar_type() == at::kLong) {
      EXPECT_TRUE(actual[field].equal(ref)) << field << "\ngot\n" << actual[field] << "\nwant\n" << ref;
    } else {
      at::Tensor a = actual[field].to(at::kDouble), e = ref.to(at::kDouble);
      ASSERT_EQ(a.sizes(), e.sizes()) << field;
      bool close = at::isclose(a, e, rtol, atol, /*equal_nan=*/true).all().item<bool>();
      at::Tensor finite = at::isfinite(e);
      double diff = finite.any().item<bool>() ? (a - e).abs().masked_select(finite).max().item<double>() : 0.0;
      EXPECT_TRUE(close) << field << " max|diff| " << diff;
    }
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

std::pair<int, std::string> run_command(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {-1, ""};
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace tfcpp_test
