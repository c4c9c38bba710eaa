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

TEST(Cli, ConvertCastsAndShards) {
  TempDir tmp;
  auto [rc, output] = run_command(tfcpp("convert --model " + source_dir() + "/models/stories260K --out " + tmp / "out" +
                                        " --dtype bf16 --max-shard-size 200KB"));
  ASSERT_EQ(rc, 0) << output;
  transformers::json index = read_json(tmp / "out/model.safetensors.index.json");
  EXPECT_GT(index["weight_map"].size(), 40u);
  EXPECT_FALSE(index["weight_map"].contains("lm_head.weight"));  // tied: stored once
  EXPECT_EQ(read_json(tmp / "out/config.json")["torch_dtype"], "bfloat16");
  auto [rc2, info] = run_command(tfcpp("info --json --dtype auto --model " + tmp / "out"));
  ASSERT_EQ(rc2, 0) << info;
  EXPECT_EQ(transformers::json::parse(info.substr(info.find('{')))["dtype"], "bfloat16");
}

TEST(Cli, ResizeEmbeddingsAndPruneHeads) {
  TempDir tmp;
  auto [rc, output] = run_command(tfcpp("resize-embeddings --model " + source_dir() + "/models/stories260K --out " +
                                        tmp / "out" + " --new-num-tokens 515 --pad-to-multiple-of 8"));
  ASSERT_EQ(rc, 0) << output;
  EXPECT_EQ(read_json(tmp / "out/config.json")["vocab_size"], 520);
  EXPECT_EQ(run_command(tfcpp("resize-embeddings --model " + source_dir() + "/models/stories260K --out " + tmp / "x")).first, 1);
  // Llama has no head pruning in transformers: a clear error, nothing written.
  auto [rc3, pruned] = run_command(tfcpp("prune-heads --model " + source_dir() + "/models/stories260K --out " +
                                         tmp / "p" + " --heads '{\"0\": [1]}'"));
  EXPECT_EQ(rc3, 1);
  EXPECT_NE(pruned.find("does not support prune_heads"), std::string::npos) << pruned;
  EXPECT_FALSE(std::filesystem::exists(tmp / "p/model.safetensors"));
  EXPECT_EQ(run_command(tfcpp("prune-heads --model x --out y --heads 'not json'")).first, 1);
}

}  // namespace

// tfcpp bench: llama-bench's table for every precision, the quantized rows with their error note, and the time to
// first token cold (the weight file evicted from the page cache first) and warm.
TEST(Cli, BenchPrintsEveryRowAndTimeToFirstToken) {
  auto [rc, output] = run_command(tfcpp("bench -m " + source_dir() +
                                        "/models/stories260K -p 8 -n 4 -t 1 -r 1 --no-roofline --dtype f32,bf16 "
                                        "--quantize int8 --ttft"));
  ASSERT_EQ(rc, 0) << output;
  for (const char* row : {"| float32 | 1 | pp8 |", "| float32 | 1 | tg4 |", "| bfloat16 | 1 | pp8 |",
                          "| bfloat16 | 1 | tg4 |", "| int8 weight-only | 1 | tg4 |",
                          "| stories260K cold | float32 | 1 | 8 |", "| stories260K warm | float32 | 1 | 8 |",
                          "| stories260K warm | bfloat16 | 1 | 8 |", "tfcpp_int8: max|dlogits|"})
    EXPECT_NE(output.find(row), std::string::npos) << row << "\n" << output;
  // Warm: the file was just read, so it is resident.
  EXPECT_NE(output.find("| stories260K warm | float32 | 1 | 8 | 100 % |"), std::string::npos) << output;
  EXPECT_EQ(run_command(tfcpp("bench -m " + source_dir() + "/models/stories260K --dtype f8")).first, 1);
  EXPECT_EQ(run_command(tfcpp("bench -m " + source_dir() + "/models/stories260K --quantize int3")).first, 2);
}
