// tfcpp end to end: the fixture contract (forward/generate), the demo, info, and usage errors.
#include "test_util.h"

#include <filesystem>

namespace fs = std::filesystem;
using namespace tfcpp_test;

namespace {

std::string tfcpp(const std::string& args) { return tfcpp_bin() + " " + args + " 2>&1"; }

TEST(Cli, ForwardWritesEveryExpectedTensor) {
  TempDir tmp;
  std::string dir = fixture("llama-for-causal-lm-gqa");
  auto [rc, output] = run_command(tfcpp("forward --model " + dir + "/model --class LlamaForCausalLM --inputs " + dir +
                                        "/inputs.json --out " + tmp / "out.safetensors"));
  ASSERT_EQ(rc, 0) << output;
  auto actual = read_tensors(tmp / "out.safetensors");
  auto expected = read_tensors(dir + "/expected.safetensors");
  for (const auto& [name, want] : expected) {
    if (name.rfind("generate.", 0) == 0) continue;
    ASSERT_TRUE(actual.count(name)) << name;
    EXPECT_TRUE(tensors_close(name, actual[name], want, 1e-4, 1e-4));
  }
}

TEST(Cli, GenerateJsonMatchesFixtureIds) {
  std::string dir = fixture("llama-for-causal-lm-gqa");
  transformers::json expected = read_json(dir + "/expected.json");
  for (const char* name : {"greedy", "beam"}) {
    auto [rc, output] = run_command(tfcpp("generate --model " + dir + "/model --class LlamaForCausalLM --inputs " + dir +
                                          "/inputs.json --name " + name + " --json"));
    ASSERT_EQ(rc, 0) << output;
    transformers::json got = transformers::json::parse(output.substr(output.find('{')));
    EXPECT_EQ(got["sequences"], expected["generate"][name]["ids"]) << name;
    if (expected["generate"][name].contains("sequences_scores")) {
      ASSERT_TRUE(got.contains("sequences_scores"));
      for (size_t i = 0; i < got["sequences_scores"].size(); ++i)
        EXPECT_NEAR(got["sequences_scores"][i].get<double>(),
                    expected["generate"][name]["sequences_scores"][i].get<double>(), 1e-4);
    }
  }
}

TEST(Cli, DemoPrintsWhatTransformersPrints) {
  auto [rc, output] = run_command(tfcpp_bin() + " generate --model " + source_dir() +
                                  "/models/stories260K --prompt \"Once upon a time\" --max-new-tokens 64 2>/dev/null");
  ASSERT_EQ(rc, 0) << output;
  EXPECT_EQ(output,
            "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
            "saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said\n");
}

TEST(Cli, InfoReportsArchitectureAndTiedWeights) {
  auto [rc, output] = run_command(tfcpp("info --model " + source_dir() + "/models/stories260K --json"));
  ASSERT_EQ(rc, 0) << output;
  transformers::json info = transformers::json::parse(output.substr(output.find('{')));
  EXPECT_EQ(info["class"], "LlamaForCausalLM");
  EXPECT_EQ(info["num_parameters"], 260032);
  EXPECT_EQ(info["tied_weights"][0], "model.embed_tokens.weight = lm_head.weight");
}

TEST(Cli, UsageErrorsExitNonZero) {
  EXPECT_EQ(run_command(tfcpp("--help")).first, 0);
  EXPECT_EQ(run_command(tfcpp("generate --help")).first, 0);
  EXPECT_EQ(run_command(tfcpp("")).first, 2);
  EXPECT_EQ(run_command(tfcpp("generate --model x --no-such-flag")).first, 2);
  EXPECT_EQ(run_command(tfcpp("frobnicate")).first, 2);
  EXPECT_EQ(run_command(tfcpp("generate --model " + source_dir() + "/models/stories260K")).first, 2);
  EXPECT_EQ(run_command(tfcpp("generate --model x --prompt hi --max-new-tokens many")).first, 2);
}

TEST(Cli, MissingModelIsAClearError) {
  auto [rc, output] = run_command(tfcpp("generate --model /nonexistent/model --prompt hi"));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(output.find("error:"), std::string::npos) << output;
  EXPECT_NE(output.find("/nonexistent/model"), std::string::npos) << output;
}

}  // namespace
