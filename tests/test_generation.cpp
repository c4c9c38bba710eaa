// generate() against transformers 4.40.2 fixtures (shared/fixtures/hf), plus logits processors on hand-made tensors.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/safetensors.h"
#include "transformers/tokenizer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

using namespace transformers;

namespace {

const std::string kFixtures = TFCPP_SOURCE_DIR "/../shared/fixtures/hf";
const std::string kStories = TFCPP_SOURCE_DIR "/models/stories260K";

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return json::parse(in);
}

void flatten(const json& data, std::vector<double>& values, std::vector<int64_t>& shape, size_t depth) {
  if (data.is_array()) {
    if (shape.size() <= depth) shape.push_back(static_cast<int64_t>(data.size()));
    for (const auto& item : data) flatten(item, values, shape, depth + 1);
  } else {
    values.push_back(data.get<double>());
  }
}

// {"dtype", "shape", "data"} or a bare nested list -> tensor.
at::Tensor tensor_from(const json& spec, c10::ScalarType fallback = at::kLong) {
  const json& data = spec.is_object() ? spec.at("data") : spec;
  std::vector<double> values;
  std::vector<int64_t> shape;
  flatten(data, values, shape, 0);
  c10::ScalarType type = fallback;
  if (spec.is_object()) type = spec.value("dtype", "float32") == "int64" ? at::kLong : at::kFloat;
  return at::tensor(values, at::kDouble).reshape(shape).to(type);
}

at::Tensor t2(std::vector<std::vector<double>> rows, c10::ScalarType type = at::kFloat) {
  std::vector<at::Tensor> out;
  for (auto& r : rows) out.push_back(at::tensor(r, at::kDouble));
  return at::stack(out).to(type);
}

// max |a - b| over the entries where a and b are not the same infinity.
double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.to(at::kDouble), y = b.to(at::kDouble);
  at::Tensor same = x.eq(y);
  at::Tensor diff = (x - y).abs().masked_fill(same, 0);
  return diff.numel() ? diff.max().item<double>() : 0.0;
}

std::string ids_string(const at::Tensor& t) {
  std::ostringstream s;
  s << t;
  return s.str();
}

struct LoadedCase {
  std::shared_ptr<PreTrainedModel> model;
  json inputs, expected;
  std::unique_ptr<safetensors::SafeOpen> tensors;
};

// `name` is a case folder name under shared/fixtures/hf or a full path. Each call loads the model afresh: dynamic
// RoPE keeps state across calls, as in transformers, and each reference entry was made with a fresh model.
LoadedCase& load_case(const std::string& name) {
  static std::map<std::string, LoadedCase> cache;
  std::string dir = name.find('/') == std::string::npos ? kFixtures + "/" + name : name;
  LoadedCase c;
  c.model = model_from_pretrained(dir + "/model", "LlamaForCausalLM");
  c.inputs = read_json(dir + "/inputs.json");
  c.expected = read_json(dir + "/expected.json");
  c.tensors = std::make_unique<safetensors::SafeOpen>(dir + "/expected.safetensors");
  cache[name] = std::move(c);
  return cache[name];
}

const json& generate_entry(const LoadedCase& c, const std::string& name) {
  for (const auto& entry : c.inputs.at("generate"))
    if (entry.at("name") == name) return entry;
  throw std::runtime_error("no generate entry " + name);
}

GenerateOutput run_entry(LoadedCase& c, const std::string& name, GenerationConfig* config_out = nullptr,
                         const TokenCallback& streamer = {}) {
  if (config_out) {
    *config_out = c.model->generation_config;
    config_out->from_dict(generate_entry(c, name).at("kwargs"), "generate kwargs", false);
  }
  // The same path as `tfcpp generate --inputs`.
  return run_generate_case(*c.model, c.inputs, name, streamer);
}

// ---- Fixture parity ----

struct FixtureParam {
  std::string case_name, entry;
};

class GenerationFixture : public ::testing::TestWithParam<FixtureParam> {};

TEST_P(GenerationFixture, MatchesTransformers) {
  const auto& p = GetParam();
  LoadedCase& c = load_case(p.case_name);
  GenerateOutput out = run_entry(c, p.entry);
  const json& expected = c.expected.at("generate").at(p.entry);
  double atol = c.expected.at("tolerance").value("atol", 1e-4);
  double rtol = c.expected.at("tolerance").value("rtol", 1e-4);

  at::Tensor want_ids = tensor_from(expected.at("ids"));
  ASSERT_EQ(out.sequences.sizes(), want_ids.sizes()) << "got " << ids_string(out.sequences);
  EXPECT_TRUE(out.sequences.equal(want_ids)) << "got\n" << out.sequences << "\nwant\n" << want_ids;
  std::string prefix = "generate." + p.entry + ".";
  EXPECT_TRUE(out.sequences.equal(c.tensors->get_tensor(prefix + "sequences")));

  if (expected.contains("sequences_scores")) {
    at::Tensor want = tensor_from(expected["sequences_scores"], at::kFloat);
    ASSERT_TRUE(out.sequences_scores.defined());
    double diff = max_abs_diff(out.sequences_scores, want);
    EXPECT_LE(diff, 1e-4) << "sequences_scores max abs diff " << diff << "\ngot " << out.sequences_scores
                          << "\nwant " << want;
  }

  size_t n_scores = 0;
  while (c.tensors->contains(prefix + "scores." + std::to_string(n_scores))) ++n_scores;
  ASSERT_EQ(out.scores.size(), n_scores);
  for (size_t i = 0; i < n_scores; ++i) {
    at::Tensor want = c.tensors->get_tensor(prefix + "scores." + std::to_string(i));
    ASSERT_EQ(out.scores[i].sizes(), want.sizes()) << "scores." << i;
    double diff = max_abs_diff(out.scores[i], want);
    bool close = at::isclose(out.scores[i].to(at::kDouble), want.to(at::kDouble), rtol, atol, /*equal_nan=*/true)
                     .all()
                     .item<bool>();
    EXPECT_TRUE(close) << "scores." << i << " max abs diff " << diff;
  }
  if (c.tensors->contains(prefix + "beam_indices")) {
    at::Tensor want = c.tensors->get_tensor(prefix + "beam_indices");
    ASSERT_TRUE(out.beam_indices.defined());
    EXPECT_TRUE(out.beam_indices.equal(want)) << "got\n" << out.beam_indices << "\nwant\n" << want;
  }
}

// Every generate entry of every llama-* case, shared and repo-made.
std::vector<FixtureParam> fixture_entries() {
  std::vector<FixtureParam> out;
  for (const auto& dir : tfcpp_test::fixture_cases("llama-"))
    for (const auto& entry : read_json(dir + "/inputs.json").value("generate", json::array()))
      out.push_back({dir, entry.at("name").get<std::string>()});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Generation, GenerationFixture, ::testing::ValuesIn(fixture_entries()),
                         [](const ::testing::TestParamInfo<FixtureParam>& info) {
                           std::string n = std::filesystem::path(info.param.case_name).filename().string() + "_" +
                                           info.param.entry;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(GenerationLlama, NamedTensors) {
  LoadedCase& c = load_case("llama-for-causal-lm-gqa");
  GenerateOutput out = run_entry(c, "beam");
  std::map<std::string, at::Tensor> named;
  for (auto& [k, v] : out.named_tensors()) named[k] = v;
  for (const char* key : {"sequences", "sequences_scores", "scores.0", "scores.7", "beam_indices"})
    EXPECT_TRUE(named.count(key)) << key;
  // Every generate.beam.* tensor of the fixture has a counterpart.
  for (const auto& key : c.tensors->keys()) {
    const std::string prefix = "generate.beam.";
    if (key.rfind(prefix, 0) == 0) {
      EXPECT_TRUE(named.count(key.substr(prefix.size()))) << key;
    }
  }
}

TEST(GenerationLlama, StreamerSeesPromptThenEachToken) {
  LoadedCase& c = load_case("llama-for-causal-lm");
  std::vector<at::Tensor> calls;
  GenerateOutput out = run_entry(c, "greedy", nullptr, [&](const at::Tensor& ids) { calls.push_back(ids.clone()); });
  ASSERT_EQ(calls.size(), 1u + 8u);
  int64_t prompt = calls[0].size(1);
  EXPECT_TRUE(calls[0].equal(out.sequences.narrow(1, 0, prompt)));
  for (size_t i = 1; i < calls.size(); ++i)
    EXPECT_TRUE(calls[i].equal(out.sequences.select(1, prompt + static_cast<int64_t>(i) - 1))) << "step " << i;
}

TEST(GenerationLlama, OutputLogitsAreRawLogits) {
  LoadedCase& c = load_case("llama-for-causal-lm");
  const json& entry = generate_entry(c, "greedy");
  at::Tensor input_ids = tensor_from(entry["inputs"]["input_ids"]);
  ModelInputs kwargs;
  kwargs.attention_mask = tensor_from(entry["inputs"]["attention_mask"]);
  GenerationConfig config = c.model->generation_config;
  config.from_dict(entry["kwargs"], "kwargs", false);
  config.output_logits = true;
  config.repetition_penalty = 1.3;  // makes scores differ from logits
  GenerateOutput out = generate(*c.model, input_ids, config, kwargs);
  ASSERT_EQ(out.logits.size(), out.scores.size());
  ASSERT_EQ(out.logits.size(), 8u);
  EXPECT_FALSE(out.logits[0].equal(out.scores[0]));
  // The first step's raw logits are the forward pass's last-position logits.
  ModelInputs in;
  in.input_ids = input_ids;
  in.attention_mask = kwargs.attention_mask;
  in.position_ids = (kwargs.attention_mask.cumsum(-1) - 1).masked_fill(kwargs.attention_mask.eq(0), 1);
  at::Tensor logits = c.model->forward(in).logits.select(1, -1);
  EXPECT_LE(max_abs_diff(out.logits[0], logits), 1e-5);
}

TEST(GenerationLlama, BeamSearchReturnsSeveralSequences) {
  LoadedCase& c = load_case("llama-for-causal-lm-gqa");
  GenerationConfig config;
  const json& entry = generate_entry(c, "beam");
  at::Tensor input_ids = tensor_from(entry["inputs"]["input_ids"]);
  ModelInputs kwargs;
  kwargs.attention_mask = tensor_from(entry["inputs"]["attention_mask"]);
  config = c.model->generation_config;
  config.from_dict(entry["kwargs"], "kwargs", false);
  config.num_return_sequences = 3;
  GenerateOutput out = generate(*c.model, input_ids, config, kwargs);
  ASSERT_EQ(out.sequences.size(0), 6);
  ASSERT_EQ(out.sequences_scores.size(0), 6);
  // The best hypothesis is the num_return_sequences=1 result; scores come best first.
  GenerateOutput one = run_entry(c, "beam");
  for (int64_t b = 0; b < 2; ++b) {
    EXPECT_TRUE(out.sequences[3 * b].narrow(0, 0, one.sequences.size(1)).equal(one.sequences[b]));
    EXPECT_GE(out.sequences_scores[3 * b].item<float>(), out.sequences_scores[3 * b + 1].item<float>());
    EXPECT_GE(out.sequences_scores[3 * b + 1].item<float>(), out.sequences_scores[3 * b + 2].item<float>());
  }
  config.early_stopping = "never";
  EXPECT_NO_THROW(generate(*c.model, input_ids, config, kwargs));
  config.early_stopping = true;
  EXPECT_NO_THROW(generate(*c.model, input_ids, config, kwargs));
}

TEST(GenerationLlama, BeamSampleRuns) {
  LoadedCase& c = load_case("llama-for-causal-lm-gqa");
  const json& entry = generate_entry(c, "beam");
  at::Tensor input_ids = tensor_from(entry["inputs"]["input_ids"]);
  ModelInputs kwargs;
  kwargs.attention_mask = tensor_from(entry["inputs"]["attention_mask"]);
  GenerationConfig config = c.model->generation_config;
  config.from_dict(entry["kwargs"], "kwargs", false);
  config.do_sample = true;
  config.seed = 7;
  GenerateOutput a = generate(*c.model, input_ids, config, kwargs);
  GenerateOutput b = generate(*c.model, input_ids, config, kwargs);
  EXPECT_EQ(a.sequences.size(0), 2);
  EXPECT_TRUE(a.sequences.equal(b.sequences));
}

TEST(GenerationLlama, UnpaddedBatchWithoutAttentionMask) {
  // No attention mask: generate builds one (all ones, the pad token is absent from the prompt).
  LoadedCase& c = load_case("llama-for-causal-lm");
  at::Tensor input_ids = at::tensor({1, 20, 37, 22, 65}, at::kLong).unsqueeze(0);
  GenerationConfig config = c.model->generation_config;
  config.max_new_tokens = 8;
  GenerateOutput out = generate(*c.model, input_ids, config);
  const json& entry = c.expected["generate"]["greedy"];
  // Row 0 of the fixture is this unpadded prompt.
  EXPECT_TRUE(out.sequences[0].equal(tensor_from(entry["ids"])[0]));
}

// ---- Sampling on a real model ----

std::shared_ptr<PreTrainedModel> stories() {
  static std::shared_ptr<PreTrainedModel> model = model_from_pretrained(kStories, "LlamaForCausalLM");
  return model;
}

at::Tensor sample_stories(std::optional<uint64_t> seed, int64_t num_return_sequences = 1) {
  auto model = stories();
  GenerationConfig config = model->generation_config;
  config.do_sample = true;
  config.temperature = 1.0;
  config.max_new_tokens = 24;
  config.num_return_sequences = num_return_sequences;
  config.seed = seed;
  at::Tensor prompt = at::tensor({1, 403, 407}, at::kLong).unsqueeze(0);
  return generate(*model, prompt, config).sequences;
}

TEST(GenerationSampling, SameSeedSameSequence) {
  at::Tensor a = sample_stories(42), b = sample_stories(42);
  EXPECT_EQ(a.size(1), 3 + 24);
  EXPECT_TRUE(a.equal(b)) << a << "\n" << b;
}

TEST(GenerationSampling, DifferentSeedsDifferentSequences) {
  at::Tensor a = sample_stories(42), b = sample_stories(1234);
  EXPECT_FALSE(a.equal(b)) << a;
}

TEST(GenerationSampling, NumReturnSequencesAndNoSeed) {
  at::Tensor a = sample_stories(std::nullopt, 3);
  EXPECT_EQ(a.size(0), 3);
  EXPECT_TRUE(a.narrow(1, 0, 3).eq(at::tensor({1, 403, 407}, at::kLong)).all().item<bool>());
}

TEST(GenerationSampling, GreedyMatchesArgmaxOfStories) {
  // Greedy on the real model equals sampling with top_k=1.
  auto model = stories();
  GenerationConfig config = model->generation_config;
  config.max_new_tokens = 16;
  at::Tensor prompt = at::tensor({1, 403, 407}, at::kLong).unsqueeze(0);
  at::Tensor greedy = generate(*model, prompt, config).sequences;
  config.do_sample = true;
  config.top_k = 1;
  config.seed = 3;
  EXPECT_TRUE(generate(*model, prompt, config).sequences.equal(greedy));
}

// ---- Edge cases and bad settings ----

TEST(GenerationEdge, MaxNewTokensZeroReturnsPrompt) {
  auto model = stories();
  GenerationConfig config = model->generation_config;
  config.max_new_tokens = 0;
  at::Tensor prompt = at::tensor({1, 403, 407}, at::kLong).unsqueeze(0);
  GenerateOutput out = generate(*model, prompt, config);
  EXPECT_TRUE(out.sequences.equal(prompt));
  EXPECT_TRUE(out.scores.empty());
}

TEST(GenerationEdge, StopsAtEos) {
  // Forcing EOS at the first step with min_length and forced_eos: every row ends, the rest is padded.
  LoadedCase& c = load_case("llama-for-causal-lm");
  at::Tensor input_ids = at::tensor({1, 20, 37}, at::kLong).unsqueeze(0).repeat({2, 1});
  GenerationConfig config = c.model->generation_config;
  config.max_new_tokens = 5;
  config.suppress_tokens = json::array();
  for (int64_t t = 0; t < 99; ++t)
    if (t != 2) config.suppress_tokens.push_back(t);
  GenerateOutput out = generate(*c.model, input_ids, config);
  // All rows emit eos (2) at once and generation stops after one step.
  EXPECT_EQ(out.sequences.size(1), 4);
  EXPECT_TRUE(out.sequences.select(1, 3).eq(2).all().item<bool>());
}

TEST(GenerationEdge, BadSettingsRaise) {
  auto model = stories();
  at::Tensor prompt = at::tensor({1, 403, 407}, at::kLong).unsqueeze(0);
  auto expect_error = [&](const std::function<void(GenerationConfig&)>& change, const char* what) {
    GenerationConfig config = model->generation_config;
    config.max_new_tokens = 4;
    change(config);
    EXPECT_THROW(generate(*model, prompt, config), GenerationError) << what;
  };
  expect_error([](GenerationConfig& c) { c.num_beams = 0; }, "num_beams 0");
  expect_error([](GenerationConfig& c) { c.do_sample = true; c.temperature = 0.0; }, "temperature 0");
  expect_error([](GenerationConfig& c) { c.do_sample = true; c.top_p = 1.5; }, "top_p 1.5");
  expect_error([](GenerationConfig& c) { c.num_return_sequences = 2; }, "greedy with 2 sequences");
  expect_error([](GenerationConfig& c) { c.num_beams = 2; c.num_return_sequences = 3; }, "more sequences than beams");
  expect_error([](GenerationConfig& c) { c.num_beams = 2; c.early_stopping = "sometimes"; }, "early_stopping");
  expect_error([](GenerationConfig& c) { c.num_beams = 4; c.num_beam_groups = 3; c.diversity_penalty = 1.0; },
               "num_beams not divisible by num_beam_groups");
  expect_error([](GenerationConfig& c) { c.num_beams = 4; c.num_beam_groups = 2; }, "groups without diversity");
  expect_error([](GenerationConfig& c) { c.num_beams = 4; c.num_beam_groups = 2; c.diversity_penalty = 1.0;
                                         c.do_sample = true; }, "group beam sampling");
  expect_error([](GenerationConfig& c) { c.num_beams = 4; c.diversity_penalty = 1.0; }, "diversity with one group");
  expect_error([](GenerationConfig& c) { c.penalty_alpha = 0.6; c.top_k = 4; c.use_cache = false; },
               "contrastive search without cache");
  expect_error([](GenerationConfig& c) { c.do_sample = true; c.min_p = 1.5; }, "min_p 1.5");
  expect_error([](GenerationConfig& c) { c.stop_strings = "the"; }, "stop_strings without a tokenizer");
  expect_error([](GenerationConfig& c) { c.cache_implementation = "sliding"; }, "unknown cache implementation");
  expect_error([](GenerationConfig& c) { c.max_new_tokens.reset(); c.max_length = 3; }, "max_length <= prompt");
  expect_error([](GenerationConfig& c) { c.bad_words_ids = json::array(); }, "empty bad_words_ids");
  expect_error([](GenerationConfig& c) { c.guidance_scale = 1.5; }, "guidance scale");

  GenerationConfig config = model->generation_config;
  config.max_new_tokens = 4;
  config.num_beams = 2;
  EXPECT_THROW(generate(*model, prompt, config, {}, [](const at::Tensor&) {}), GenerationError) << "streamer + beams";
}

// ---- Logits processors on hand-made tensors ----

TEST(GenerationProcessors, TopK) {
  at::Tensor scores = t2({{1, 2, 3, 4, 5}, {5, 4, 3, 2, 1}});
  at::Tensor ids = at::zeros({2, 1}, at::kLong);
  at::Tensor out = TopKLogitsWarper(2)(ids, scores);
  double inf = INFINITY;
  EXPECT_TRUE(out.equal(t2({{-inf, -inf, -inf, 4, 5}, {5, 4, -inf, -inf, -inf}})));
  // min_tokens_to_keep wins over a smaller top_k
  out = TopKLogitsWarper(2, -inf, 3)(ids, scores);
  EXPECT_TRUE(out.equal(t2({{-inf, -inf, 3, 4, 5}, {5, 4, 3, -inf, -inf}})));
  EXPECT_TRUE(scores.equal(t2({{1, 2, 3, 4, 5}, {5, 4, 3, 2, 1}}))) << "input modified";
  EXPECT_THROW(TopKLogitsWarper(0), GenerationError);
}

TEST(GenerationProcessors, TopP) {
  // probabilities 0.1, 0.2, 0.3, 0.4: with top_p = 0.6 the smallest tokens up to cumulative 0.4 go.
  at::Tensor scores = at::log(t2({{0.1, 0.2, 0.3, 0.4}, {0.4, 0.3, 0.2, 0.1}}));
  at::Tensor ids = at::zeros({2, 1}, at::kLong);
  at::Tensor out = TopPLogitsWarper(0.6)(ids, scores);
  at::Tensor removed = at::isinf(out);
  EXPECT_TRUE(removed.equal(t2({{1, 1, 0, 0}, {0, 0, 1, 1}}, at::kBool))) << out;
  EXPECT_TRUE(out.masked_select(~removed).equal(scores.masked_select(~removed)));
  // min_tokens_to_keep keeps the most likely ones even with a tiny top_p
  out = TopPLogitsWarper(0.01, -INFINITY, 2)(ids, scores);
  EXPECT_TRUE(at::isinf(out).equal(t2({{1, 1, 0, 0}, {0, 0, 1, 1}}, at::kBool))) << out;
  out = TopPLogitsWarper(0.01)(ids, scores);
  EXPECT_TRUE(at::isinf(out).equal(t2({{1, 1, 1, 0}, {0, 1, 1, 1}}, at::kBool))) << out;
}

TEST(GenerationProcessors, Temperature) {
  at::Tensor scores = t2({{1, -2, 3}});
  at::Tensor out = TemperatureLogitsWarper(2.0)(at::zeros({1, 1}, at::kLong), scores);
  EXPECT_TRUE(out.equal(t2({{0.5, -1, 1.5}})));
  EXPECT_THROW(TemperatureLogitsWarper(0.0), GenerationError);
}

TEST(GenerationProcessors, RepetitionPenalty) {
  at::Tensor scores = t2({{2.0, 1.0, -1.0, 3.0}, {2.0, 1.0, -1.0, 3.0}});
  at::Tensor ids = at::tensor({0, 2, 3, 3}, at::kLong).view({2, 2});
  at::Tensor out = RepetitionPenaltyLogitsProcessor(2.0)(ids, scores);
  // positive scores are divided, negative ones multiplied; a repeated id is penalised once
  EXPECT_TRUE(out.equal(t2({{1.0, 1.0, -2.0, 3.0}, {2.0, 1.0, -1.0, 1.5}}))) << out;
}

TEST(GenerationProcessors, MinLengthAndMinNewTokens) {
  at::Tensor scores = t2({{1, 2, 3, 4}});
  double inf = INFINITY;
  auto min_length = MinLengthLogitsProcessor(5, {3});
  EXPECT_TRUE(min_length(at::zeros({1, 4}, at::kLong), scores).equal(t2({{1, 2, 3, -inf}})));
  EXPECT_TRUE(min_length(at::zeros({1, 5}, at::kLong), scores).equal(scores));
  auto min_new = MinNewTokensLengthLogitsProcessor(3, 2, {0, 3});
  EXPECT_TRUE(min_new(at::zeros({1, 4}, at::kLong), scores).equal(t2({{-inf, 2, 3, -inf}})));
  EXPECT_TRUE(min_new(at::zeros({1, 5}, at::kLong), scores).equal(scores));
  // From a config: min_new_tokens needs eos
  GenerationConfig config;
  config.min_new_tokens = 2;
  EXPECT_TRUE(get_logits_processor(config, 3).empty());
  config.eos_token_id = TokenIds{3};
  EXPECT_EQ(get_logits_processor(config, 3).size(), 1u);
}

TEST(GenerationProcessors, NoRepeatNGram) {
  at::Tensor scores = at::zeros({2, 5});
  double inf = INFINITY;
  // bigrams: row 0 = 1 2 3 1 -> "1" was followed by 2; row 1 = 4 1 4 4 -> "4" was followed by 1 and 4
  at::Tensor ids = at::tensor({1, 2, 3, 1, 4, 1, 4, 4}, at::kLong).view({2, 4});
  at::Tensor out = NoRepeatNGramLogitsProcessor(2)(ids, scores);
  EXPECT_TRUE(out.equal(t2({{0, 0, -inf, 0, 0}, {0, -inf, 0, 0, -inf}}))) << out;
  // trigrams: 1 2 3 1 2 -> (1, 2) was followed by 3
  at::Tensor ids3 = at::tensor({1, 2, 3, 1, 2}, at::kLong).view({1, 5});
  out = NoRepeatNGramLogitsProcessor(3)(ids3, at::zeros({1, 5}));
  EXPECT_TRUE(out.equal(t2({{0, 0, 0, -inf, 0}}))) << out;
  // shorter than the n-gram: nothing banned
  out = NoRepeatNGramLogitsProcessor(4)(ids3.narrow(1, 0, 2), at::zeros({1, 5}));
  EXPECT_TRUE(out.equal(at::zeros({1, 5})));
}

TEST(GenerationProcessors, BadWordsAndSuppression) {
  double inf = INFINITY;
  at::Tensor scores = at::zeros({2, 5});
  at::Tensor ids = at::tensor({0, 1, 0, 2}, at::kLong).view({2, 2});
  // [3] is always banned, [1, 2] only after a 1, and [4] is the eos token so it is kept
  at::Tensor out = NoBadWordsLogitsProcessor({{3}, {1, 2}, {4}}, {4})(ids, scores);
  EXPECT_TRUE(out.equal(t2({{0, 0, -inf, -inf, 0}, {0, 0, 0, -inf, 0}}))) << out;
  out = SuppressTokensLogitsProcessor({0, 4})(ids, scores);
  EXPECT_TRUE(out.equal(t2({{-inf, 0, 0, 0, -inf}, {-inf, 0, 0, 0, -inf}})));
  auto begin = SuppressTokensAtBeginLogitsProcessor({1}, 2);
  EXPECT_TRUE(begin(ids, scores).select(1, 1).eq(-inf).all().item<bool>());
  EXPECT_TRUE(begin(at::zeros({2, 3}, at::kLong), scores).equal(scores));
}

TEST(GenerationProcessors, ForcedTokensAndInfNan) {
  double inf = INFINITY;
  at::Tensor scores = t2({{1, 2, 3}});
  EXPECT_TRUE(ForcedBOSTokenLogitsProcessor(1)(at::zeros({1, 1}, at::kLong), scores).equal(t2({{-inf, 0, -inf}})));
  EXPECT_TRUE(ForcedBOSTokenLogitsProcessor(1)(at::zeros({1, 2}, at::kLong), scores).equal(scores));
  EXPECT_TRUE(ForcedEOSTokenLogitsProcessor(5, {2})(at::zeros({1, 4}, at::kLong), scores).equal(t2({{-inf, -inf, 0}})));
  EXPECT_TRUE(ForcedEOSTokenLogitsProcessor(5, {2})(at::zeros({1, 3}, at::kLong), scores).equal(scores));
  at::Tensor bad = t2({{NAN, inf, -inf, 1}});
  at::Tensor fixed = InfNanRemoveLogitsProcessor()(at::zeros({1, 1}, at::kLong), bad);
  float big = std::numeric_limits<float>::max();
  EXPECT_TRUE(fixed.equal(t2({{0, big, -big, 1}}))) << fixed;
}

TEST(GenerationProcessors, EpsilonEtaTypical) {
  at::Tensor ids = at::zeros({1, 1}, at::kLong);
  at::Tensor scores = at::log(t2({{0.05, 0.15, 0.8}}));
  at::Tensor out = EpsilonLogitsWarper(0.1)(ids, scores);
  EXPECT_TRUE(at::isinf(out).equal(t2({{1, 0, 0}}, at::kBool))) << out;
  // eta = min(0.1, sqrt(0.1) * exp(-H)); H of (0.05, 0.15, 0.8) = 0.6131 -> eta = 0.1
  out = EtaLogitsWarper(0.1)(ids, scores);
  EXPECT_TRUE(at::isinf(out).equal(t2({{1, 0, 0}}, at::kBool))) << out;
  // typical_p keeps the tokens whose surprise is closest to the entropy until mass 0.5: only 0.8's
  out = TypicalLogitsWarper(0.5)(ids, scores);
  EXPECT_TRUE(at::isinf(out).equal(t2({{1, 1, 0}}, at::kBool))) << out;
}

TEST(GenerationProcessors, WarperListFollowsConfig) {
  GenerationConfig config;
  config.do_sample = true;
  EXPECT_EQ(get_logits_warper(config).size(), 1u);  // top_k = 50 by default
  config.temperature = 0.7;
  config.top_p = 0.9;
  config.typical_p = 0.9;
  config.epsilon_cutoff = 0.01;
  config.eta_cutoff = 0.01;
  EXPECT_EQ(get_logits_warper(config).size(), 6u);
  // Order: temperature first, then top-k.
  auto warpers = get_logits_warper(config);
  at::Tensor scores = t2({{1, 2, 3}});
  EXPECT_TRUE(warpers[0](at::zeros({1, 1}, at::kLong), scores).allclose(scores / 0.7));
}


// ---- Repo-made cases (tests/fixtures/make_generation_cases.py): group beam search, contrastive search, beam search
// with processors, on a decoder-only and an encoder-decoder model ----

struct ExtraCase {
  std::shared_ptr<PreTrainedModel> model;
  json inputs, expected;
  std::unique_ptr<safetensors::SafeOpen> tensors;
};

ExtraCase load_extra_case(const std::string& dir) {
  ExtraCase c;
  c.expected = read_json(dir + "/expected.json");
  c.model = model_from_pretrained(dir + "/model", c.expected.at("class").get<std::string>());
  c.inputs = read_json(dir + "/inputs.json");
  c.tensors = std::make_unique<safetensors::SafeOpen>(dir + "/expected.safetensors");
  return c;
}

std::vector<FixtureParam> extra_entries() {
  std::vector<FixtureParam> out;
  for (const auto& dir : tfcpp_test::fixture_cases("generation-extra-"))
    for (const auto& entry : read_json(dir + "/inputs.json").value("generate", json::array()))
      out.push_back({dir, entry.at("name").get<std::string>()});
  return out;
}

class GenerationExtraFixture : public ::testing::TestWithParam<FixtureParam> {};

TEST_P(GenerationExtraFixture, MatchesTransformers) {
  const auto& p = GetParam();
  ExtraCase c = load_extra_case(p.case_name);
  GenerateOutput out = run_generate_case(*c.model, c.inputs, p.entry);
  const json& expected = c.expected.at("generate").at(p.entry);
  at::Tensor want_ids = tensor_from(expected.at("ids"));
  ASSERT_EQ(out.sequences.sizes(), want_ids.sizes()) << "got " << ids_string(out.sequences);
  EXPECT_TRUE(out.sequences.equal(want_ids)) << "got\n" << out.sequences << "\nwant\n" << want_ids;
  if (expected.contains("sequences_scores")) {
    at::Tensor want = tensor_from(expected["sequences_scores"], at::kFloat);
    ASSERT_TRUE(out.sequences_scores.defined());
    double diff = max_abs_diff(out.sequences_scores, want);
    EXPECT_LE(diff, 1e-4) << "sequences_scores max abs diff " << diff;
  }
  std::string prefix = "generate." + p.entry + ".";
  size_t n_scores = 0;
  while (c.tensors->contains(prefix + "scores." + std::to_string(n_scores))) ++n_scores;
  ASSERT_GT(n_scores, 0u);
  ASSERT_EQ(out.scores.size(), n_scores);
  for (size_t i = 0; i < n_scores; ++i) {
    at::Tensor want = c.tensors->get_tensor(prefix + "scores." + std::to_string(i));
    ASSERT_EQ(out.scores[i].sizes(), want.sizes()) << "scores." << i;
    bool close = at::isclose(out.scores[i].to(at::kDouble), want.to(at::kDouble), 1e-4, 1e-4, /*equal_nan=*/true)
                     .all()
                     .item<bool>();
    EXPECT_TRUE(close) << "scores." << i << " max abs diff " << max_abs_diff(out.scores[i], want);
  }
  if (c.tensors->contains(prefix + "beam_indices")) {
    at::Tensor want = c.tensors->get_tensor(prefix + "beam_indices");
    ASSERT_TRUE(out.beam_indices.defined());
    EXPECT_TRUE(out.beam_indices.equal(want)) << "got\n" << out.beam_indices << "\nwant\n" << want;
  }
}

INSTANTIATE_TEST_SUITE_P(GenerationExtra, GenerationExtraFixture, ::testing::ValuesIn(extra_entries()),
                         [](const ::testing::TestParamInfo<FixtureParam>& info) {
                           std::string n = std::filesystem::path(info.param.case_name).filename().string() + "_" +
                                           info.param.entry;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(GenerationExtraCases, AllPresent) {
  // The parameterised suite above must not silently run zero cases.
  EXPECT_GE(extra_entries().size(), 9u);
}

// Runs a generate entry of a repo-made case with changes to its config.
GenerateOutput run_extra(ExtraCase& c, const std::string& name, const std::function<void(GenerationConfig&)>& change,
                         const GenerateOptions& options = {}) {
  for (const auto& entry : c.inputs.at("generate")) {
    if (entry.at("name") != name) continue;
    GenerationConfig config = c.model->generation_config;
    config.from_dict(entry.at("kwargs"), "kwargs", false);
    change(config);
    ModelInputs kwargs;
    kwargs.attention_mask = tensor_from(entry["inputs"]["attention_mask"]);
    return generate(*c.model, tensor_from(entry["inputs"]["input_ids"]), config, kwargs, options);
  }
  throw std::runtime_error("no entry " + name);
}

std::string extra_dir(const std::string& name) { return TFCPP_SOURCE_DIR "/tests/fixtures/hf/" + name; }

TEST(GenerationGroupBeam, InvariantsScoresSortedAndLengths) {
  ExtraCase c = load_extra_case(extra_dir("generation-extra-llama"));
  GenerateOutput out = run_extra(c, "group_beam_3_groups", [](GenerationConfig& config) { config.output_scores = false; });
  const int64_t keep = 3, batch = 2;
  ASSERT_EQ(out.sequences.size(0), keep * batch);
  EXPECT_LE(out.sequences.size(1), 5 + 7);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j + 1 < keep; ++j)
      EXPECT_GE(out.sequences_scores[b * keep + j].item<float>(), out.sequences_scores[b * keep + j + 1].item<float>());
  // Without a diversity penalty, the groups of a 4-beam / 2-group search are two independent 2-beam searches: the
  // best hypothesis is then the one of a plain 2-beam search.
  GenerateOutput plain = run_extra(c, "group_beam", [](GenerationConfig& config) {
    config.num_beam_groups = 1;
    config.diversity_penalty = 0.0;
    config.num_beams = 2;
    config.num_return_sequences = 1;
  });
  GenerateOutput tiny_penalty = run_extra(c, "group_beam", [](GenerationConfig& config) {
    config.diversity_penalty = 1e-9;
    config.num_return_sequences = 1;
  });
  int64_t n = std::min(plain.sequences.size(1), tiny_penalty.sequences.size(1));
  EXPECT_TRUE(plain.sequences.narrow(1, 0, n).equal(tiny_penalty.sequences.narrow(1, 0, n)))
      << plain.sequences << "\n" << tiny_penalty.sequences;
}

TEST(GenerationContrastive, PenaltyAlphaZeroIsGreedy) {
  // With penalty_alpha -> 0 the contrastive score is the model confidence: the pick is greedy's.
  ExtraCase c = load_extra_case(extra_dir("generation-extra-llama"));
  GenerateOutput contrastive = run_extra(c, "contrastive", [](GenerationConfig& config) { config.penalty_alpha = 1e-9; });
  GenerateOutput greedy = run_extra(c, "contrastive", [](GenerationConfig& config) { config.penalty_alpha.reset(); });
  EXPECT_TRUE(contrastive.sequences.equal(greedy.sequences)) << contrastive.sequences << "\n" << greedy.sequences;
  // The returned cache excludes the look-ahead token, as with the other strategies.
  ASSERT_TRUE(contrastive.past_key_values);
  EXPECT_EQ(contrastive.past_key_values->get_seq_length(), contrastive.sequences.size(1) - 1);
  EXPECT_EQ(contrastive.past_key_values->to_legacy_cache()[0][0].size(0), 2);
}

TEST(GenerationContrastive, StreamerAndHiddenStates) {
  ExtraCase c = load_extra_case(extra_dir("generation-extra-blenderbot-small"));
  std::vector<at::Tensor> calls;
  GenerateOptions options;
  options.streamer = [&](const at::Tensor& ids) { calls.push_back(ids.clone()); };
  GenerateOutput out = run_extra(c, "contrastive", [](GenerationConfig& config) {
    config.output_hidden_states = true;
    config.output_attentions = true;
  }, options);
  at::Tensor want = tensor_from(c.expected["generate"]["contrastive"]["ids"]);
  EXPECT_TRUE(out.sequences.equal(want));
  EXPECT_EQ(static_cast<int64_t>(calls.size()), out.sequences.size(1));  // the prompt, then one call per token
  ASSERT_EQ(out.decoder_hidden_states.size(), out.scores.size());
  ASSERT_EQ(out.cross_attentions.size(), out.scores.size());
  EXPECT_EQ(out.decoder_hidden_states[1][0].size(0), 2);  // the selected candidates only
  EXPECT_FALSE(out.encoder_hidden_states.empty());
}

// ---- StaticCache ----

TEST(GenerationStaticCache, SameAsDynamicOnLlamaAndBlenderbot) {
  for (const char* name : {"generation-extra-llama", "generation-extra-blenderbot-small"}) {
    ExtraCase c = load_extra_case(extra_dir(name));
    for (const char* entry : {"beam_processors", "contrastive", "group_beam"}) {
      GenerateOutput dynamic = run_extra(c, entry, [](GenerationConfig&) {});
      GenerateOutput fixed = run_extra(c, entry, [](GenerationConfig& config) { config.cache_implementation = "static"; });
      EXPECT_TRUE(fixed.sequences.equal(dynamic.sequences)) << name << " " << entry;
      ASSERT_EQ(fixed.scores.size(), dynamic.scores.size());
      for (size_t i = 0; i < fixed.scores.size(); ++i)
        EXPECT_LE(max_abs_diff(fixed.scores[i], dynamic.scores[i]), 1e-5) << name << " " << entry << " step " << i;
      std::shared_ptr<Cache> cache = fixed.past_key_values;
      if (auto* ed = dynamic_cast<EncoderDecoderCache*>(cache.get())) cache = ed->self_attention_cache;
      auto* static_cache = dynamic_cast<StaticCache*>(cache.get());
      ASSERT_NE(static_cache, nullptr) << name << " " << entry;
      EXPECT_EQ(static_cache->buffers(0).first.size(2), static_cache->get_max_length());
    }
  }
}

TEST(GenerationStaticCache, GreedyOnGpt2AndStories) {
  for (const auto& [dir, cls] : std::vector<std::pair<std::string, std::string>>{
           {kFixtures + "/gpt2-lm-head-model/model", "GPT2LMHeadModel"}, {kStories, "LlamaForCausalLM"}}) {
    auto model = model_from_pretrained(dir, cls);
    GenerationConfig config = model->generation_config;
    config.max_new_tokens = 12;
    config.pad_token_id = 0;
    at::Tensor prompt = at::tensor({1, 20, 37, 22}, at::kLong).unsqueeze(0);
    at::Tensor dynamic = generate(*model, prompt, config).sequences;
    config.cache_implementation = "static";
    GenerateOutput fixed = generate(*model, prompt, config);
    EXPECT_TRUE(fixed.sequences.equal(dynamic)) << cls;
    EXPECT_NE(dynamic_cast<StaticCache*>(fixed.past_key_values.get()), nullptr) << cls;
  }
}

TEST(GenerationStaticCache, CapacityError) {
  StaticCache cache(4);
  at::Tensor k = at::zeros({1, 2, 3, 8});
  cache.update(k, k, 0);
  EXPECT_EQ(cache.buffers(0).first.size(2), 4);
  void* data = cache.buffers(0).first.data_ptr();
  auto [keys, values] = cache.update(at::ones({1, 2, 1, 8}), at::ones({1, 2, 1, 8}), 0);
  EXPECT_EQ(keys.size(2), 4);
  EXPECT_EQ(cache.buffers(0).first.data_ptr(), data) << "reallocated";
  EXPECT_THROW(cache.update(at::ones({1, 2, 1, 8}), at::ones({1, 2, 1, 8}), 0), GenerationError);
  EXPECT_THROW(StaticCache(0), GenerationError);
}

// ---- min_p, HammingDiversity, stopping criteria: by hand from transformers' formulas ----

TEST(GenerationProcessors, MinP) {
  double inf = INFINITY;
  // probs = softmax(log([0.5, 0.3, 0.15, 0.05])) = [0.5, 0.3, 0.15, 0.05]; min_p 0.4 -> threshold 0.2: keep 0.5, 0.3
  at::Tensor scores = at::log(t2({{0.5, 0.3, 0.15, 0.05}, {0.05, 0.15, 0.3, 0.5}}));
  at::Tensor ids = at::zeros({2, 1}, at::kLong);
  at::Tensor out = MinPLogitsWarper(0.4)(ids, scores);
  at::Tensor want = scores.clone();
  want[0][2] = -inf; want[0][3] = -inf; want[1][0] = -inf; want[1][1] = -inf;
  EXPECT_TRUE(out.equal(want)) << out;
  // min_tokens_to_keep = 3 keeps the third most likely too
  out = MinPLogitsWarper(0.4, -inf, 3)(ids, scores);
  EXPECT_TRUE(std::isinf(out[0][3].item<float>()));
  EXPECT_FALSE(std::isinf(out[0][2].item<float>()));
  // min_p 0 keeps everything; 1 keeps only the top token
  EXPECT_TRUE(MinPLogitsWarper(0.0)(ids, scores).equal(scores));
  EXPECT_EQ(MinPLogitsWarper(1.0)(ids, scores).isinf().sum().item<int64_t>(), 6);
  EXPECT_THROW(MinPLogitsWarper(1.5), GenerationError);
  EXPECT_THROW(MinPLogitsWarper(0.5, -inf, 0), GenerationError);
  // In the warper list after top_p, before typical_p (transformers 4.41)
  GenerationConfig config;
  config.top_k = 0;
  config.min_p = 0.4;
  EXPECT_EQ(get_logits_warper(config).size(), 1u);
  EXPECT_TRUE(get_logits_warper(config)[0](ids, scores).equal(want));
}

TEST(GenerationProcessors, MinPSeededSamplingIsReproducible) {
  auto model = stories();
  GenerationConfig config = model->generation_config;
  config.do_sample = true;
  config.top_k = 0;
  config.min_p = 0.1;
  config.max_new_tokens = 16;
  config.seed = 11;
  config.output_scores = true;
  at::Tensor prompt = at::tensor({1, 403, 407}, at::kLong).unsqueeze(0);
  GenerateOutput a = generate(*model, prompt, config), b = generate(*model, prompt, config);
  EXPECT_TRUE(a.sequences.equal(b.sequences));
  // Every sampled token survived the min_p filter of its step.
  for (size_t i = 0; i < a.scores.size(); ++i) {
    int64_t token = a.sequences[0][3 + static_cast<int64_t>(i)].item<int64_t>();
    EXPECT_FALSE(std::isinf(a.scores[i][0][token].item<float>())) << "step " << i;
    at::Tensor probs = at::softmax(a.scores[i][0], -1);
    EXPECT_GE(probs[token].item<double>() + 1e-9, 0.0);
  }
}

TEST(GenerationProcessors, HammingDiversity) {
  // 2 batch entries, 4 beams in 2 groups (2 sub-beams); vocab 5. current_tokens: the tokens picked this step, per
  // beam; group 1's rows are penalised by 1.5 * (how often group 0 of the same batch entry picked each token).
  at::Tensor scores = at::zeros({4, 5});
  at::Tensor current_tokens = at::tensor({3, 3, 0, 0, 1, 4, 0, 0}, at::kLong);
  at::Tensor out = hamming_diversity_penalty(scores, current_tokens, 1, 1.5, 4, 2);
  at::Tensor want = t2({{0, 0, 0, -3, 0}, {0, 0, 0, -3, 0}, {0, -1.5, 0, 0, -1.5}, {0, -1.5, 0, 0, -1.5}});
  EXPECT_TRUE(out.equal(want)) << out;
  // the first group is untouched
  EXPECT_TRUE(hamming_diversity_penalty(scores, current_tokens, 0, 1.5, 4, 2).equal(scores));
  // the processor reads current_tokens / beam_group_idx from the group beam search scope, and needs it
  LogitsProcessor p = HammingDiversityLogitsProcessor(1.5, 4, 2);
  EXPECT_THROW(p(at::zeros({4, 1}, at::kLong), scores), GenerationError);
  BeamGroupArgs args{current_tokens, 1};
  {
    ScopedBeamGroupArgs scope(args);
    EXPECT_TRUE(p(at::zeros({4, 1}, at::kLong), scores).equal(want));
  }
  EXPECT_EQ(ScopedBeamGroupArgs::current(), nullptr);
  EXPECT_THROW(HammingDiversityLogitsProcessor(0.0, 4, 2), GenerationError);
  EXPECT_THROW(HammingDiversityLogitsProcessor(1.0, 4, 1), GenerationError);
  EXPECT_THROW(HammingDiversityLogitsProcessor(1.0, 2, 4), GenerationError);
}

TEST(GenerationStopping, StopStringCriteriaByHand) {
  // vocab: 0 "", 1 "a", 2 "b", 3 "st", 4 "op", 5 "stop", 6 "p!", 7 " s", 8 "to"
  std::vector<std::string> vocab = {"", "a", "b", "st", "op", "stop", "p!", " s", "to"};
  StopStringCriteria criteria(vocab, {"stop"});
  auto done = [&](std::vector<int64_t> ids) {
    return criteria(at::tensor(ids, at::kLong).unsqueeze(0), {})[0].item<bool>();
  };
  EXPECT_TRUE(done({1, 3, 4}));      // "a" "st" "op"
  EXPECT_TRUE(done({1, 5}));         // the whole string in the last token
  EXPECT_TRUE(done({7, 8, 6}));      // " s" "to" "p!": the last token runs past the stop string
  EXPECT_FALSE(done({3, 4, 1}));     // "stop" then "a": the match must end in the last token
  EXPECT_FALSE(done({1, 3}));        // "ast"
  EXPECT_FALSE(done({3, 1, 4}));     // "staop"
  EXPECT_TRUE(done({2, 2, 2, 7, 8, 6}));
  // batch: one row per sequence
  at::Tensor batch = at::tensor({1, 3, 4, 3, 4, 1}, at::kLong).view({2, 3});
  at::Tensor result = criteria(batch, {});
  EXPECT_TRUE(result[0].item<bool>());
  EXPECT_FALSE(result[1].item<bool>());
  // several stop strings
  StopStringCriteria two(vocab, {"xyz", "ab"});
  EXPECT_TRUE(two(at::tensor({1, 2}, at::kLong).unsqueeze(0), {})[0].item<bool>());
  EXPECT_THROW(StopStringCriteria(vocab, {}), GenerationError);
}

TEST(GenerationStopping, CriteriaList) {
  at::Tensor ids = at::tensor({1, 5, 2, 1, 5, 7}, at::kLong).view({2, 3});
  EXPECT_TRUE(MaxLengthCriteria(3)(ids, {}).all().item<bool>());
  EXPECT_FALSE(MaxLengthCriteria(4)(ids, {}).any().item<bool>());
  at::Tensor eos = EosTokenCriteria({2, 9})(ids, {});
  EXPECT_TRUE(eos[0].item<bool>());
  EXPECT_FALSE(eos[1].item<bool>());
  EXPECT_FALSE(MaxTimeCriteria(60.0)(ids, {}).any().item<bool>());
  EXPECT_TRUE(MaxTimeCriteria(0.5, MaxTimeCriteria::Clock::now() - std::chrono::seconds(1))(ids, {}).all().item<bool>());
  StoppingCriteriaList list{std::make_shared<MaxLengthCriteria>(10), std::make_shared<EosTokenCriteria>(
                                                                         std::vector<int64_t>{7})};
  at::Tensor is_done = list(ids);
  EXPECT_FALSE(is_done[0].item<bool>());
  EXPECT_TRUE(is_done[1].item<bool>());
  EXPECT_EQ(list.max_length(), 10);
  EXPECT_FALSE(StoppingCriteriaList{}.max_length().has_value());

  GenerationConfig config;
  config.eos_token_id = TokenIds{2};
  config.max_time = 5.0;
  StoppingCriteriaList defaults = get_stopping_criteria(config);
  EXPECT_EQ(defaults.size(), 3u);  // max_length, max_time, eos
  // a custom criterion of a default criterion's type is refused, as transformers
  EXPECT_THROW(get_stopping_criteria(config, {std::make_shared<MaxLengthCriteria>(5)}), GenerationError);
  EXPECT_EQ(get_stopping_criteria(config, {std::make_shared<StoppingCriteriaFunction>(
                                               [](const at::Tensor& i, const at::Tensor&) {
                                                 return at::zeros({i.size(0)}, at::kBool);
                                               })})
                .size(),
            4u);
  config.stop_strings = json::array({"the"});
  EXPECT_THROW(get_stopping_criteria(config), GenerationError);
}

TEST(GenerationStopping, CustomCriteriaAndProcessorsInGenerate) {
  LoadedCase& c = load_case("llama-for-causal-lm");
  at::Tensor input_ids = at::tensor({1, 20, 37}, at::kLong).unsqueeze(0);
  GenerationConfig config = c.model->generation_config;
  config.max_new_tokens = 10;
  GenerateOptions options;
  // a processor that forces token 7, and a criterion that stops after 4 new tokens
  options.logits_processor.push_back([](const at::Tensor&, const at::Tensor& scores) {
    at::Tensor out = at::full_like(scores, -INFINITY);
    out.select(1, 7).fill_(0);
    return out;
  });
  options.stopping_criteria.push_back(std::make_shared<StoppingCriteriaFunction>(
      [](const at::Tensor& ids, const at::Tensor&) { return at::full({ids.size(0)}, ids.size(1) >= 7, at::kBool); }));
  for (int64_t beams : {1, 2}) {
    config.num_beams = beams;
    GenerateOutput out = generate(*c.model, input_ids, config, {}, options);
    // beam search's finalize appends eos after the hypotheses when it fits in max_length, as transformers
    ASSERT_EQ(out.sequences.size(1), beams == 1 ? 7 : 8) << "beams " << beams;
    if (beams > 1) {
      EXPECT_EQ(out.sequences[0][7].item<int64_t>(), 2);
    }
    EXPECT_TRUE(out.sequences[0].narrow(0, 3, 4).eq(7).all().item<bool>()) << out.sequences;
  }
  // max_time: a tiny budget stops after the first token
  config.num_beams = 1;
  config.max_time = 1e-9;
  EXPECT_EQ(generate(*c.model, input_ids, config).sequences.size(1), 4);
}

TEST(GenerationStopping, StopStringsWithStoriesTokenizer) {
  auto model = stories();
  Tokenizer tokenizer = Tokenizer::from_pretrained(kStories);
  GenerationConfig config = model->generation_config;
  config.max_new_tokens = 64;
  at::Tensor prompt = at::tensor(tokenizer.encode("Once upon a time"), at::kLong).unsqueeze(0);
  at::Tensor full = generate(*model, prompt, config).sequences[0];
  auto text_of = [&](const at::Tensor& ids) {
    return tokenizer.decode(std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel()), true);
  };
  std::string full_text = text_of(full);
  ASSERT_NE(full_text.find("Lily"), std::string::npos) << full_text;
  config.stop_strings = "Lily";
  GenerateOptions options;
  options.tokenizer = &tokenizer;
  at::Tensor stopped = generate(*model, prompt, config, {}, options).sequences[0];
  EXPECT_LT(stopped.size(0), full.size(0));
  EXPECT_TRUE(stopped.equal(full.narrow(0, 0, stopped.size(0))));
  std::string text = text_of(stopped);
  EXPECT_NE(text.find("Lily"), std::string::npos) << text;
  // it stopped at the first token that completed "Lily"
  EXPECT_EQ(text_of(stopped.narrow(0, 0, stopped.size(0) - 1)).find("Lily"), std::string::npos) << text;
}

TEST(GenerationConfigFields, MinPAndStopStringsRoundTrip) {
  GenerationConfig config;
  config.min_p = 0.05;
  config.stop_strings = json::array({"\n\n", "END"});
  json diff = config.to_diff_dict();
  EXPECT_EQ(diff.at("min_p").get<double>(), 0.05);
  EXPECT_EQ(diff.at("stop_strings"), json::array({"\n\n", "END"}));
  GenerationConfig back;
  back.from_dict(diff);
  EXPECT_EQ(back.min_p, 0.05);
  EXPECT_EQ(back.stop_strings, config.stop_strings);
  EXPECT_FALSE(GenerationConfig().to_diff_dict().contains("min_p"));
}

// ---- tfcpp generate flags ----

std::pair<int, std::string> run_tfcpp(const std::string& args) {
  return tfcpp_test::run_command(tfcpp_test::tfcpp_bin() + " " + args + " 2>&1");
}

json last_json_line(const std::string& output) {
  size_t at = output.rfind("{\"sequences\"");
  if (at == std::string::npos) throw std::runtime_error("no JSON in: " + output);
  return json::parse(output.substr(at, output.find('\n', at) - at));
}

TEST(GenerationCli, ContrastiveAndGroupBeamFlagsMatchTheLibrary) {
  auto model = stories();
  Tokenizer tokenizer = Tokenizer::from_pretrained(kStories);
  at::Tensor prompt = at::tensor(tokenizer.encode("Once upon a time"), at::kLong).unsqueeze(0);
  const std::string base = "generate -m " + kStories + " -p \"Once upon a time\" -n 12 --json ";

  auto [rc, output] = run_tfcpp(base + "--penalty-alpha 0.6 --top-k 4 --cache-implementation static");
  ASSERT_EQ(rc, 0) << output;
  GenerationConfig config = model->generation_config;
  config.max_new_tokens = 12;
  config.penalty_alpha = 0.6;
  config.top_k = 4;
  EXPECT_EQ(last_json_line(output)["sequences"], tensor_to_json(generate(*model, prompt, config).sequences));

  std::tie(rc, output) = run_tfcpp(base + "--num-beams 4 --num-beam-groups 2 --diversity-penalty 0.5 "
                                          "--num-return-sequences 2 --length-penalty 0.8 --early-stopping never");
  ASSERT_EQ(rc, 0) << output;
  json result = last_json_line(output);
  config = model->generation_config;
  config.max_new_tokens = 12;
  config.num_beams = 4;
  config.num_beam_groups = 2;
  config.diversity_penalty = 0.5;
  config.num_return_sequences = 2;
  config.length_penalty = 0.8;
  config.early_stopping = "never";
  EXPECT_EQ(result["sequences"], tensor_to_json(generate(*model, prompt, config).sequences));
  ASSERT_EQ(result["text"].size(), 2u);
  EXPECT_GE(result["sequences_scores"][0].get<double>(), result["sequences_scores"][1].get<double>());
}

TEST(GenerationCli, SamplingFlagsAreSeededAndScored) {
  const std::string cmd = "generate -m " + kStories + " -p \"Once upon a time\" -n 10 --json --min-p 0.05 "
                          "--temperature 0.9 --typical-p 0.95 --repetition-penalty 1.1 --no-repeat-ngram-size 3 "
                          "--bad-words \"13; 5 6\" --min-new-tokens 5 --seed 5";
  auto [rc1, a] = run_tfcpp(cmd);
  auto [rc2, b] = run_tfcpp(cmd);
  ASSERT_EQ(rc1, 0) << a;
  ASSERT_EQ(rc2, 0) << b;
  json ja = last_json_line(a), jb = last_json_line(b);
  EXPECT_EQ(ja["sequences"], jb["sequences"]);
  ASSERT_EQ(ja["token_scores"][0].size(), 10u);
  for (const auto& score : ja["token_scores"][0]) EXPECT_TRUE(std::isfinite(score.get<double>()));
  for (const auto& id : ja["sequences"][0]) EXPECT_NE(id.get<int64_t>(), 13);
}

TEST(GenerationCli, StopStringsAndBadCombinations) {
  const std::string base = "generate -m " + kStories + " -p \"Once upon a time\" -n 64 ";
  auto [rc, output] = run_tfcpp(base + "--stop-strings Lily --max-time 30");
  ASSERT_EQ(rc, 0) << output;
  std::string text = output.substr(0, output.find("\nload "));
  size_t at = text.find("Lily");
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_LE(text.size() - (at + 4), 3u) << "generation went on after the stop string: " << text;
  for (const std::string bad : {"--num-beams 4 --num-beam-groups 3 --diversity-penalty 1",
                                "--num-beams 4 --num-beam-groups 2", "--min-p 2", "--early-stopping maybe",
                                "--cache-implementation paged", "--bad-words \"1 x\"",
                                "--num-return-sequences 2"}) {
    std::tie(rc, output) = run_tfcpp(base + bad);
    EXPECT_EQ(rc, 1) << bad << "\n" << output;
    EXPECT_NE(output.find("error:"), std::string::npos) << bad << "\n" << output;
  }
}

}  // namespace
