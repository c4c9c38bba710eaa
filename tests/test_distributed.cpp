// Distributed inference (distributed.h): tensor-parallel ranks on 127.0.0.1 give the single-process results, hold
// about 1/N of the weights, and fail with an error (not a hang) when a rank dies or the rendezvous is unreachable.
// The ranks are separate tfcpp processes (`--nproc N`): the test process never forks after torch has threads.
#include "test_util.h"

#include "transformers/distributed.h"
#include "transformers/errors.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

using namespace transformers;
using namespace tfcpp_test;

namespace {

const char* kQuiet = " 2>&1";

std::string case_dir(const std::string& name) {
  for (const auto& dir : fixture_cases(name))
    if (std::filesystem::path(dir).filename() == name) return dir;
  return fixture(name);
}

// `tfcpp dist-check` of a fixture case's forward entry on `nproc` ranks: the outputs rank 0 wrote and the report.
std::pair<std::map<std::string, at::Tensor>, json> dist_check(const std::string& dir, int nproc, const TempDir& tmp,
                                                              const std::string& parallel = "tp") {
  const std::string out = tmp / ("out" + std::to_string(nproc) + ".safetensors");
  json expected = read_json(dir + "/expected.json");
  const std::string cmd = "TFCPP_DIST_TIMEOUT=20 " + tfcpp_bin() + " dist-check --model " + dir + "/model --class " +
                          expected["class"].get<std::string>() + " --inputs " + dir + "/inputs.json --out " + out +
                          " --nproc " + std::to_string(nproc) + " --parallel " + parallel + kQuiet;
  auto [code, output] = run_command(cmd);
  EXPECT_EQ(code, 0) << cmd << "\n" << output;
  if (code != 0) return {};
  json report = json::parse(output.substr(output.rfind("{\"")));
  return {read_tensors(out), report};
}

// Outputs that are replicated on every rank (key/value caches and attention maps hold this rank's heads only).
bool replicated_output(const std::string& name) {
  return name.rfind("past_key_values", 0) != 0 && name.find("attentions") == std::string::npos;
}

void expect_forward_matches(const std::string& name, int nproc, const std::string& parallel = "tp") {
  const std::string dir = case_dir(name);
  TempDir tmp;
  auto [outputs, report] = dist_check(dir, nproc, tmp, parallel);
  ASSERT_FALSE(outputs.empty()) << name;
  EXPECT_EQ(report["world_size"], nproc);
  json expected_json = read_json(dir + "/expected.json");
  const double atol = expected_json["tolerance"]["atol"].get<double>(), rtol = expected_json["tolerance"]["rtol"].get<double>();
  auto expected = read_tensors(dir + "/expected.safetensors");
  int compared = 0;
  for (const auto& [key, t] : expected) {
    if (!replicated_output(key) || !outputs.count(key)) continue;
    if (parallel == "pp" && key != "logits") continue;  // a stage's hidden states are its own
    EXPECT_TRUE(tensors_close(name + " " + key + " (" + std::to_string(nproc) + " ranks)", outputs[key], t, atol, rtol));
    ++compared;
  }
  EXPECT_TRUE(outputs.count("logits") || outputs.count("last_hidden_state")) << name;
  EXPECT_GT(compared, 0) << name;
}

std::string generate_json(const std::string& dir, int nproc, const std::string& extra_env = "") {
  const std::string cmd = extra_env + " TFCPP_DIST_TIMEOUT=20 " + tfcpp_bin() + " generate --model " + dir +
                          "/model --inputs " + dir + "/inputs.json --name greedy --json" +
                          (nproc > 1 ? " --nproc " + std::to_string(nproc) : std::string()) + " 2>/dev/null";
  auto [code, output] = run_command(cmd);
  EXPECT_EQ(code, 0) << cmd << "\n" << output;
  return output;
}

}  // namespace

TEST(DistributedPlan, BalancedSliceCoversEveryRow) {
  for (int64_t size : {1, 37, 99, 128})
    for (int world : {1, 2, 3, 4}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        auto [start, length] = distributed::balanced_slice(size, r, world);
        EXPECT_EQ(start, next);
        EXPECT_GE(length, size / world);
        EXPECT_LE(length, size / world + 1);
        next = start + length;
      }
      EXPECT_EQ(next, size);
    }
}

TEST(DistributedPlan, EnvironmentIsValidated) {
  setenv("WORLD_SIZE", "2", 1);
  setenv("RANK", "2", 1);
  EXPECT_THROW(distributed::options_from_env(), ValueError);
  setenv("RANK", "1", 1);
  setenv("MASTER_PORT", "http", 1);
  EXPECT_THROW(distributed::options_from_env(), ValueError);
  setenv("MASTER_PORT", "29511", 1);
  setenv("TFCPP_DIST_TIMEOUT", "-1", 1);
  EXPECT_THROW(distributed::options_from_env(), ValueError);
  setenv("TFCPP_DIST_TIMEOUT", "2.5", 1);
  auto o = distributed::options_from_env();
  EXPECT_EQ(o.rank, 1);
  EXPECT_EQ(o.world_size, 2);
  EXPECT_EQ(o.master_port, 29511);
  EXPECT_DOUBLE_EQ(o.timeout_s, 2.5);
  EXPECT_TRUE(distributed::env_requests_distributed());
  for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_PORT", "TFCPP_DIST_TIMEOUT"}) unsetenv(v);
  EXPECT_FALSE(distributed::env_requests_distributed());
  EXPECT_EQ(distributed::get_world_size(), 1);
}

TEST(DistributedTensorParallel, ForwardMatchesFixturesOnTwoRanks) {
  for (const char* name : {"llama-for-causal-lm", "llama-for-causal-lm-gqa", "gpt2-lm-head-model", "bert-model",
                           "camembert-for-masked-lm", "t5-for-conditional-generation"})
    expect_forward_matches(name, 2);
}

TEST(DistributedTensorParallel, ForwardMatchesFixturesOnFourRanks) {
  // GQA with 2 key/value heads over 4 ranks: each key/value head is replicated on two ranks.
  for (const char* name : {"llama-for-causal-lm-gqa", "gpt2-lm-head-model"}) expect_forward_matches(name, 4);
}

TEST(DistributedTensorParallel, GreedyIdsEqualSingleProcess) {
  // The fixtures' greedy ids are Python's single-process run.
  for (const auto& [name, nproc] : std::vector<std::pair<std::string, int>>{
           {"llama-for-causal-lm-gqa", 4}, {"gpt2-lm-head-model", 2}, {"t5-for-conditional-generation", 2}}) {
    const std::string dir = case_dir(name);
    json expected = read_json(dir + "/expected.json")["generate"]["greedy"]["ids"];
    std::string sharded = generate_json(dir, nproc);
    ASSERT_FALSE(sharded.empty()) << name;
    EXPECT_EQ(json::parse(sharded)["sequences"], expected) << name << " on " << nproc << " ranks";
  }
}

// stories260K (8 heads, 4 key/value heads, 5 layers, tied embeddings): the same text on tensor-parallel and
// pipeline ranks as in one process.
TEST(DistributedTensorParallel, EmbeddedModelTextEqualsSingleProcess) {
  const std::string base = tfcpp_bin() + " generate --model " + source_dir() +
                           "/models/stories260K --prompt 'Once upon a time' --max-new-tokens 24";
  auto [code1, single] = run_command(base + " 2>/dev/null");
  auto [code2, sharded] = run_command("TFCPP_DIST_TIMEOUT=20 " + base + " --nproc 2 2>/dev/null");
  auto [code3, piped] = run_command("TFCPP_DIST_TIMEOUT=20 " + base + " --nproc 3 --parallel pp 2>/dev/null");
  ASSERT_EQ(code1, 0) << single;
  EXPECT_EQ(code2, 0) << sharded;
  EXPECT_EQ(code3, 0) << piped;
  EXPECT_EQ(sharded, single);
  EXPECT_EQ(piped, single);
  EXPECT_NE(single.find("Once upon a time"), std::string::npos) << single;
}

TEST(DistributedTensorParallel, EachRankHoldsAboutOneNthOfTheWeights) {
  const std::string model = source_dir() + "/models/stories260K";
  auto report = [&](const std::string& args) {
    auto [code, output] =
        run_command("TFCPP_DIST_TIMEOUT=20 " + tfcpp_bin() + " dist-check --model " + model + " " + args + " 2>&1");
    EXPECT_EQ(code, 0) << output;
    return code == 0 ? json::parse(output.substr(output.rfind("{\""))) : json();
  };
  json one = report(""), four = report("--nproc 4"), stages = report("--nproc 3 --parallel pp");
  ASSERT_FALSE(one.is_null());
  ASSERT_FALSE(four.is_null());
  ASSERT_FALSE(stages.is_null());
  const double full = one["weight_bytes"][0].get<double>();
  ASSERT_EQ(four["weight_bytes"].size(), 4u);
  double sum = 0;
  for (const auto& b : four["weight_bytes"]) {
    // Only the RMSNorm weights are replicated: every rank holds a quarter, plus a little.
    EXPECT_LT(b.get<double>(), full / 4 * 1.05) << four.dump();
    EXPECT_GT(b.get<double>(), full / 4 * 0.95) << four.dump();
    sum += b.get<double>();
  }
  EXPECT_GE(sum, full);
  // Pipeline: 5 layers over 3 stages (2, 2, 1); the tied embedding lives on the first and the last stage.
  ASSERT_EQ(stages["weight_bytes"].size(), 3u);
  for (const auto& b : stages["weight_bytes"]) EXPECT_LT(b.get<double>(), full * 0.75) << stages.dump();
}

TEST(DistributedFault, KilledRankMakesTheOthersFail) {
  const std::string dir = case_dir("llama-for-causal-lm");
  auto start = std::chrono::steady_clock::now();
  auto [code, output] = run_command("TFCPP_DIST_FAULT_RANK=1 TFCPP_DIST_TIMEOUT=5 " + tfcpp_bin() +
                                    " generate --model " + dir + "/model --inputs " + dir +
                                    "/inputs.json --name greedy --nproc 4 2>&1");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(code, 0) << output;
  EXPECT_NE(output.find("rank 1 of 4 exited with status 3"), std::string::npos) << output;
  // The surviving ranks notice by themselves (their error names the failed collective), well within the timeout.
  EXPECT_NE(output.find("failed on rank 0 of 4"), std::string::npos) << output;
  EXPECT_NE(output.find("failed on rank 2 of 4"), std::string::npos) << output;
  EXPECT_EQ(output.find("did not stop"), std::string::npos) << output;
  EXPECT_LT(seconds, 30) << output;
}

TEST(DistributedFault, UnreachableRendezvousTimesOut) {
  const std::string dir = case_dir("llama-for-causal-lm");
  auto start = std::chrono::steady_clock::now();
  // Rank 1 of 2 whose rank 0 never comes.
  auto [code, output] = run_command("RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 TFCPP_DIST_TIMEOUT=2 " +
                                    tfcpp_bin() + " generate --model " + dir + "/model --inputs " + dir +
                                    "/inputs.json --name greedy 2>&1");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(code, 1) << output;
  EXPECT_NE(output.find("could not join the rendezvous at 127.0.0.1:1"), std::string::npos) << output;
  EXPECT_LT(seconds, 20) << output;
}

TEST(DistributedPipeline, LogitsMatchFixtures) {
  expect_forward_matches("llama-for-causal-lm-gqa", 2, "pp");
}

TEST(DistributedPipeline, FamilyWithoutAPlanIsRefused) {
  const std::string dir = case_dir("gpt2-lm-head-model");
  auto [code, output] = run_command("TFCPP_DIST_TIMEOUT=20 " + tfcpp_bin() + " generate --model " + dir +
                                    "/model --inputs " + dir + "/inputs.json --name greedy --nproc 2 --parallel pp 2>&1");
  EXPECT_EQ(code, 1) << output;
  EXPECT_NE(output.find("GPT2LMHeadModel declares no pipeline-parallel plan"), std::string::npos) << output;
}
