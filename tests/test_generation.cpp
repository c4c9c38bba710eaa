// generate() against transformers 4.40.2 fixtures (shared/fixtures/hf), plus logits processors on hand-made tensors.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

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
  expect_error([](GenerationConfig& c) { c.penalty_alpha = 0.6; c.top_k = 4; }, "contrastive search");
  expect_error([](GenerationConfig& c) { c.num_beams = 4; c.num_beam_groups = 2; c.diversity_penalty = 1.0; },
               "group beam search");
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

}  // namespace
