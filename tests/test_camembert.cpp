// Camembert (over the RoBERTa implementation): parity against transformers 4.40.2 fixtures (every head, generate, the
// ops-* cases on Camembert checkpoints), losses against hand computations, caches, pruning, save/load, fill-mask CLI.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/models/camembert.h"
#include "transformers/tokenizer.h"

#include <c10/core/InferenceMode.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace transformers;
using namespace tfcpp_test;

namespace {

FromPretrainedOptions options_from(const json& expected) {
  FromPretrainedOptions options;
  if (expected.contains("load") && expected["load"].contains("kwargs")) {
    const json& kw = expected["load"]["kwargs"];
    if (kw.contains("variant")) options.variant = kw["variant"].get<std::string>();
    if (kw.contains("torch_dtype")) options.dtype = kw["torch_dtype"].get<std::string>();
  }
  return options;
}

std::string case_name(const std::string& dir) {
  std::string n = fs::path(dir).filename().string();
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

// Runs the case's forward entry through the fixture runner and compares every tensor of expected.safetensors (except
// generate.* and aux.*). Returns how many tensors were compared.
int expect_forward_parity(PreTrainedModel& model, const std::string& dir) {
  json expected = read_json(dir + "/expected.json");
  auto outputs = run_forward_case(model, read_case_inputs(dir + "/inputs.json"));
  std::map<std::string, at::Tensor> actual(outputs.begin(), outputs.end());
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  int compared = 0;
  for (const auto& [name, want] : read_tensors(dir + "/expected.safetensors")) {
    if (name.rfind("generate.", 0) == 0 || name.rfind("aux.", 0) == 0) continue;
    EXPECT_TRUE(actual.count(name)) << fs::path(dir).filename() << ": output " << name << " not produced";
    if (!actual.count(name)) continue;
    EXPECT_TRUE(tensors_close(name, actual[name], want, atol, rtol)) << fs::path(dir).filename();
    ++compared;
  }
  EXPECT_GT(compared, 0);
  return compared;
}

std::shared_ptr<PreTrainedModel> load_case(const std::string& dir) {
  json expected = read_json(dir + "/expected.json");
  return model_from_pretrained(dir + "/model", expected["class"].get<std::string>(), options_from(expected));
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// ---- Parity: every camembert-* case, shared and repo-made ----

class CamembertParity : public ::testing::TestWithParam<std::string> {};

TEST_P(CamembertParity, ForwardMatchesTransformers) {
  std::string dir = GetParam();
  auto model = load_case(dir);
  EXPECT_EQ(model->class_name, read_json(dir + "/expected.json")["class"].get<std::string>());
  EXPECT_TRUE(model->loading_info.missing_keys.empty());
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty());
  expect_forward_parity(*model, dir);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CamembertParity, ::testing::ValuesIn(fixture_cases("camembert-")),
                         [](const auto& info) { return case_name(info.param); });

std::vector<std::string> generate_cases() {
  std::vector<std::string> out;
  for (const auto& dir : fixture_cases("camembert-"))
    if (!read_json(dir + "/expected.json")["generate"].empty()) out.push_back(dir);
  return out;
}

class CamembertGenerateParity : public ::testing::TestWithParam<std::string> {};

TEST_P(CamembertGenerateParity, IdsAndScoresMatchTransformers) {
  std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  json inputs = read_case_inputs(dir + "/inputs.json");
  auto reference = read_tensors(dir + "/expected.safetensors");
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  for (auto& [name, entry] : expected["generate"].items()) {
    auto model = load_case(dir);  // fresh per entry, as the fixture generator
    GenerateOutput out = run_generate_case(*model, inputs, name);
    EXPECT_EQ(tensor_to_json(out.sequences), entry["ids"]) << name;
    EXPECT_TRUE(at::equal(out.sequences, reference.at("generate." + name + ".sequences"))) << name;
    size_t steps = 0;
    while (reference.count("generate." + name + ".scores." + std::to_string(steps))) ++steps;
    ASSERT_EQ(out.scores.size(), steps) << name;
    for (size_t i = 0; i < steps; ++i) {
      std::string key = "generate." + name + ".scores." + std::to_string(i);
      EXPECT_TRUE(tensors_close(key, out.scores[i], reference.at(key), atol, rtol));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CamembertGenerateParity, ::testing::ValuesIn(generate_cases()),
                         [](const auto& info) { return case_name(info.param); });

// ---- ops-* cases on Camembert checkpoints ----

void expect_saved_keys(const std::string& file, const json& saved_keys) {
  safetensors::SafeOpen saved(file);
  std::vector<std::string> want;
  for (auto& [key, spec] : saved_keys.items()) {
    want.push_back(key);
    if (!saved.contains(key)) continue;
    const auto& info = saved.info(key);
    EXPECT_EQ(info.dtype, safetensors::dtype_to_string(dtype_from_name(spec[0].get<std::string>()))) << key;
    EXPECT_EQ(info.shape, spec[1].get<std::vector<int64_t>>()) << key;
  }
  EXPECT_EQ(sorted(saved.keys()), sorted(want));
}

void check_tied_weights_case(const std::string& name) {
  std::string dir = fixture(name);
  json expected = read_json(dir + "/expected.json");
  auto model = std::dynamic_pointer_cast<CamembertForMaskedLM>(load_case(dir));
  ASSERT_TRUE(model);
  EXPECT_TRUE(model->loading_info.missing_keys.empty());
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty());
  EXPECT_EQ(model->config->tie_word_embeddings, expected["tie_word_embeddings"].get<bool>());
  EXPECT_EQ(model->lm_head->decoder->weight.is_same(model->roberta->embeddings->word_embeddings->weight),
            expected["lm_head_shares_input_embeddings"].get<bool>());
  // The decoder bias is the head's bias in both cases (RobertaLMHead._tie_weights).
  EXPECT_TRUE(model->lm_head->bias.is_same(model->lm_head->decoder->bias));
  EXPECT_EQ(model->_tied_weights_keys, expected["tied_weights_keys"].get<std::vector<std::string>>());
  expect_forward_parity(*model, dir);

  TempDir tmp;
  model->save_pretrained(tmp.str());
  expect_saved_keys(tmp / "model.safetensors", expected["saved_keys"]);
  safetensors::SafeOpen saved(tmp / "model.safetensors");
  EXPECT_EQ(saved.contains("lm_head.decoder.weight"), expected["saved_has_lm_head_decoder_weight"].get<bool>());
  EXPECT_EQ(saved.contains("lm_head.decoder.bias"), expected["saved_has_lm_head_decoder_bias"].get<bool>());
  // And the save loads back to the same model.
  auto reloaded = CamembertForMaskedLM::from_pretrained(tmp.str());
  EXPECT_TRUE(reloaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(reloaded->loading_info.unexpected_keys.empty());
  expect_forward_parity(*reloaded, dir);
}

TEST(CamembertOps, TiedWeightsTrue) { check_tied_weights_case("ops-tied-weights-true"); }
TEST(CamembertOps, TiedWeightsFalse) { check_tied_weights_case("ops-tied-weights-false"); }

TEST(CamembertOps, ShardedCheckpointLoadsAndSavesLikeTransformers) {
  std::string dir = fixture("ops-sharded-save");
  json expected = read_json(dir + "/expected.json");
  auto model = load_case(dir);
  EXPECT_TRUE(model->loading_info.missing_keys.empty());
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty());
  expect_forward_parity(*model, dir);

  int64_t state_dict_bytes = 0;
  for (const auto& [k, t] : model->state_dict()) state_dict_bytes += t.numel() * t.element_size();
  EXPECT_EQ(state_dict_bytes, expected["state_dict_bytes"].get<int64_t>());

  TempDir tmp;
  SavePretrainedOptions options;
  options.max_shard_size = std::to_string(expected["max_shard_size"].get<int64_t>());
  model->save_pretrained(tmp.str(), options);
  std::string index_file = expected["index_file"].get<std::string>();
  json index = read_json(tmp / index_file);
  json reference = read_json(dir + "/model/" + index_file);
  EXPECT_EQ(index["weight_map"], reference["weight_map"]);
  EXPECT_EQ(index["metadata"]["total_size"], reference["metadata"]["total_size"]);
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(tmp.str())) files.push_back(entry.path().filename().string());
  EXPECT_EQ(sorted(files), sorted(expected["model_files"].get<std::vector<std::string>>()));
  std::set<std::string> shards;
  for (auto& [key, file] : index["weight_map"].items()) shards.insert(file.get<std::string>());
  EXPECT_EQ(static_cast<int64_t>(shards.size()), expected["num_shards"].get<int64_t>());
  for (const auto& shard : shards) {  // each shard holds exactly the keys the index gives it
    std::vector<std::string> keys;
    for (auto& [key, file] : index["weight_map"].items())
      if (file == shard) keys.push_back(key);
    EXPECT_EQ(sorted(safetensors::SafeOpen(tmp / shard).keys()), sorted(keys)) << shard;
  }
  auto reloaded = model_from_pretrained(tmp.str(), "CamembertForMaskedLM");
  EXPECT_TRUE(reloaded->loading_info.missing_keys.empty());
  expect_forward_parity(*reloaded, dir);
}

void check_cross_load_case(const std::string& name) {
  std::string dir = fixture(name);
  json expected = read_json(dir + "/expected.json");
  EXPECT_EQ(read_json(dir + "/model/config.json")["architectures"], expected["checkpoint_architectures"]);
  auto model = load_case(dir);
  EXPECT_EQ(model->base_model_prefix, expected["base_model_prefix"].get<std::string>());
  const LoadingInfo& info = model->loading_info;
  EXPECT_EQ(sorted(info.missing_keys), sorted(expected["missing_keys"].get<std::vector<std::string>>()));
  EXPECT_EQ(sorted(info.unexpected_keys), sorted(expected["unexpected_keys"].get<std::vector<std::string>>()));
  EXPECT_EQ(info.mismatched_keys, expected["mismatched_keys"].get<std::vector<std::string>>());
  EXPECT_EQ(info.error_msgs, expected["error_msgs"].get<std::vector<std::string>>());
  expect_forward_parity(*model, dir);
}

TEST(CamembertOps, LoadBaseCheckpointIntoHead) {
  check_cross_load_case("ops-load-base-into-head");
  // The missing head was initialised as _init_weights does: LayerNorm to (1, 0), Linear biases to 0.
  auto model = std::dynamic_pointer_cast<CamembertForMaskedLM>(load_case(fixture("ops-load-base-into-head")));
  EXPECT_TRUE(at::equal(model->lm_head->layer_norm->weight, at::ones_like(model->lm_head->layer_norm->weight)));
  EXPECT_TRUE(at::equal(model->lm_head->bias, at::zeros_like(model->lm_head->bias)));
  double std = model->lm_head->dense->weight.std().item<double>();
  EXPECT_GT(std, 0.01);
  EXPECT_LT(std, 0.03);
}

TEST(CamembertOps, LoadHeadCheckpointIntoBase) { check_cross_load_case("ops-load-head-into-base"); }

TEST(CamembertOps, Float16VariantLoads) {
  std::string dir = fixture("ops-save-variant-fp16");
  json expected = read_json(dir + "/expected.json");
  safetensors::SafeOpen file(dir + "/model/" + expected["weights_file"].get<std::string>());
  for (const auto& info : file.tensors())
    EXPECT_EQ(info.dtype, safetensors::dtype_to_string(dtype_from_name(expected["saved_dtypes"][0].get<std::string>())));
  EXPECT_EQ(read_json(dir + "/model/config.json")["torch_dtype"], expected["config_torch_dtype"]);
  auto model = load_case(dir);
  EXPECT_EQ(model->dtype(), at::kFloat);
  EXPECT_TRUE(model->loading_info.missing_keys.empty());
  expect_forward_parity(*model, dir);
  // Without the variant there is no weights file.
  EXPECT_THROW(model_from_pretrained(dir + "/model", "CamembertForMaskedLM"), CheckpointError);
}

TEST(CamembertOps, Bfloat16CheckpointInFloat32) {
  // A Llama case: the brief's load-kwargs check (torch_dtype=float32 over bf16 weights) for the shared loader.
  std::string dir = fixture("ops-bf16-checkpoint");
  json expected = read_json(dir + "/expected.json");
  safetensors::SafeOpen file(dir + "/model/model.safetensors");
  for (const auto& info : file.tensors())
    EXPECT_EQ(info.dtype, safetensors::dtype_to_string(dtype_from_name(expected["saved_dtypes"][0].get<std::string>())));
  EXPECT_EQ(read_json(dir + "/model/config.json")["torch_dtype"], expected["config_torch_dtype"]);
  auto model = load_case(dir);
  EXPECT_EQ(model->dtype(), at::kFloat);
  expect_forward_parity(*model, dir);
}

// ---- Tiny random models ----

std::shared_ptr<CamembertConfig> tiny_config(int64_t num_labels = 2) {
  auto config = std::make_shared<CamembertConfig>();
  config->vocab_size = 40;
  config->hidden_size = 16;
  config->num_hidden_layers = 2;
  config->num_attention_heads = 4;
  config->intermediate_size = 20;
  config->max_position_embeddings = 32;
  config->type_vocab_size = 1;
  config->set_num_labels(num_labels);
  return config;
}

at::Tensor sample_ids() { return at::tensor({0, 5, 9, 33, 7, 17, 2, 12, 3, 30}, at::kLong).view({2, 5}); }

template <typename Model>
std::shared_ptr<Model> eval_model(std::shared_ptr<CamembertConfig> config) {
  auto model = std::make_shared<Model>(config);
  model->eval();
  return model;
}

ModelOutput run(PreTrainedModel& model, ModelInputs in) {
  c10::InferenceMode guard;
  return model.forward(in);
}

// -log softmax(row)[label], by hand in double.
double nll(const at::Tensor& row_in, int64_t label) {
  at::Tensor row = row_in.to(at::kDouble).contiguous();
  const double* v = row.data_ptr<double>();
  double max = *std::max_element(v, v + row.numel()), sum = 0;
  for (int64_t i = 0; i < row.numel(); ++i) sum += std::exp(v[i] - max);
  return -(v[label] - max - std::log(sum));
}

// Mean of nll over rows whose label != ignore_index.
double hand_cross_entropy(const at::Tensor& logits2d, const at::Tensor& labels1d, int64_t ignore_index = -100) {
  double total = 0;
  int count = 0;
  for (int64_t i = 0; i < logits2d.size(0); ++i) {
    int64_t label = labels1d[i].item<int64_t>();
    if (label == ignore_index) continue;
    total += nll(logits2d[i], label);
    ++count;
  }
  return total / count;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

TEST(CamembertLoss, MaskedLMIgnoresMinus100) {
  auto model = eval_model<CamembertForMaskedLM>(tiny_config());
  ModelInputs in;
  in.input_ids = sample_ids();
  in.labels = at::tensor({-100, 4, -100, 20, -100, -100, -100, 9, -100, -100}, at::kLong).view({2, 5});
  ModelOutput out = run(*model, in);
  double expected = hand_cross_entropy(out.logits.view({-1, 40}), in.labels.view(-1));
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-5);
  EXPECT_GT(expected, 3.0);  // ~ log(40) for a fresh model: the loss is not trivially 0
}

TEST(CamembertLoss, CausalLMShiftsLabels) {
  auto config = tiny_config();
  config->is_decoder = true;
  auto model = eval_model<CamembertForCausalLM>(config);
  ModelInputs in;
  in.input_ids = sample_ids();
  in.labels = at::tensor({0, 5, -100, 33, 7, 17, 2, 12, 3, -100}, at::kLong).view({2, 5});
  ModelOutput out = run(*model, in);
  EXPECT_FALSE(out.past_key_values);  // labels turn the cache off
  double total = 0;
  int count = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t + 1 < 5; ++t) {
      int64_t label = in.labels[b][t + 1].item<int64_t>();
      if (label == -100) continue;
      total += nll(out.logits[b][t], label);
      ++count;
    }
  EXPECT_NEAR(out.loss.item<double>(), total / count, 1e-5);
}

TEST(CamembertLoss, SequenceClassificationSingleLabel) {
  auto model = eval_model<CamembertForSequenceClassification>(tiny_config(3));
  ModelInputs in;
  in.input_ids = sample_ids();
  in.labels = at::tensor({2, 0}, at::kLong);
  ModelOutput out = run(*model, in);
  EXPECT_EQ(*model->config->problem_type, "single_label_classification");
  EXPECT_NEAR(out.loss.item<double>(), (nll(out.logits[0], 2) + nll(out.logits[1], 0)) / 2, 1e-6);
}

TEST(CamembertLoss, SequenceClassificationMultiLabel) {
  auto model = eval_model<CamembertForSequenceClassification>(tiny_config(3));
  ModelInputs in;
  in.input_ids = sample_ids();
  in.labels = at::tensor({1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 1.0f}).view({2, 3});
  ModelOutput out = run(*model, in);
  EXPECT_EQ(*model->config->problem_type, "multi_label_classification");
  double total = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 3; ++c) {
      double x = out.logits[b][c].item<double>(), y = in.labels[b][c].item<double>();
      total += -(y * std::log(sigmoid(x)) + (1 - y) * std::log(1 - sigmoid(x)));
    }
  EXPECT_NEAR(out.loss.item<double>(), total / 6, 1e-6);
}

TEST(CamembertLoss, SequenceClassificationRegression) {
  auto model = eval_model<CamembertForSequenceClassification>(tiny_config(1));
  ModelInputs in;
  in.input_ids = sample_ids();
  in.labels = at::tensor({0.5f, -1.25f});
  ModelOutput out = run(*model, in);
  EXPECT_EQ(*model->config->problem_type, "regression");
  ASSERT_EQ(out.logits.sizes(), at::IntArrayRef({2, 1}));
  double d0 = out.logits[0][0].item<double>() - 0.5, d1 = out.logits[1][0].item<double>() + 1.25;
  EXPECT_NEAR(out.loss.item<double>(), (d0 * d0 + d1 * d1) / 2, 1e-6);
}

TEST(CamembertLoss, TokenClassification) {
  auto model = eval_model<CamembertForTokenClassification>(tiny_config(4));
  ModelInputs in;
  in.input_ids = sample_ids();
  in.labels = at::tensor({0, 3, 1, -100, 2, 1, 1, 0, 3, -100}, at::kLong).view({2, 5});
  ModelOutput out = run(*model, in);
  ASSERT_EQ(out.logits.sizes(), at::IntArrayRef({2, 5, 4}));
  EXPECT_NEAR(out.loss.item<double>(), hand_cross_entropy(out.logits.view({-1, 4}), in.labels.view(-1)), 1e-6);
}

TEST(CamembertLoss, QuestionAnsweringClampsAndIgnoresOutsidePositions) {
  auto model = eval_model<CamembertForQuestionAnswering>(tiny_config(2));
  ModelInputs in;
  in.input_ids = sample_ids();
  in.extra["start_positions"] = at::tensor({1, 9}, at::kLong);  // 9 is clamped to 5 = ignored_index
  in.extra["end_positions"] = at::tensor({3, 4}, at::kLong);
  ModelOutput out = run(*model, in);
  at::Tensor start = out.extra.at("start_logits"), end = out.extra.at("end_logits");
  ASSERT_EQ(start.sizes(), at::IntArrayRef({2, 5}));
  double start_loss = nll(start[0], 1);  // the second row is ignored
  double end_loss = (nll(end[0], 3) + nll(end[1], 4)) / 2;
  EXPECT_NEAR(out.loss.item<double>(), (start_loss + end_loss) / 2, 1e-6);
}

TEST(CamembertLoss, MultipleChoice) {
  auto model = eval_model<CamembertForMultipleChoice>(tiny_config());
  ModelInputs in;
  in.input_ids = at::randint(3, 40, {2, 3, 5}, at::kLong);
  in.attention_mask = at::ones({2, 3, 5}, at::kLong);
  in.labels = at::tensor({2, 1}, at::kLong);
  ModelOutput out = run(*model, in);
  ASSERT_EQ(out.logits.sizes(), at::IntArrayRef({2, 3}));
  EXPECT_NEAR(out.loss.item<double>(), (nll(out.logits[0], 2) + nll(out.logits[1], 1)) / 2, 1e-6);
  // Each choice is scored on its own: the [B * C] flattening keeps choices apart.
  ModelInputs one;
  one.input_ids = in.input_ids[1][2].unsqueeze(0).unsqueeze(0);
  EXPECT_NEAR(run(*model, one).logits.item<double>(), out.logits[1][2].item<double>(), 1e-5);
}

// ---- Model behaviour ----

TEST(CamembertModelTest, PositionIdsStartAfterPadding) {
  at::Tensor ids = at::tensor({0, 5, 1, 7, 1, 1}, at::kLong).view({2, 3});
  EXPECT_TRUE(at::equal(create_position_ids_from_input_ids(ids, 1), at::tensor({2, 3, 1, 2, 1, 1}, at::kLong).view({2, 3})));
  EXPECT_TRUE(at::equal(create_position_ids_from_input_ids(ids, 1, 4),
                        at::tensor({6, 7, 1, 6, 1, 1}, at::kLong).view({2, 3})));
  RobertaEmbeddings embeddings(*tiny_config());
  at::Tensor from_embeds = embeddings.create_position_ids_from_inputs_embeds(at::zeros({2, 3, 16}));
  EXPECT_TRUE(at::equal(from_embeds, at::tensor({2, 3, 4, 2, 3, 4}, at::kLong).view({2, 3})));
}

TEST(CamembertModelTest, InputsEmbedsMatchInputIds) {
  auto model = eval_model<CamembertModel>(tiny_config());
  ModelInputs by_ids;
  by_ids.input_ids = sample_ids();  // no padding: sequential positions either way
  ModelInputs by_embeds;
  by_embeds.inputs_embeds = model->embeddings->word_embeddings->forward(sample_ids());
  ModelOutput a = run(*model, by_ids), b = run(*model, by_embeds);
  EXPECT_LT(max_abs_diff(a.last_hidden_state, b.last_hidden_state), 1e-6);
  EXPECT_LT(max_abs_diff(a.pooler_output, b.pooler_output), 1e-6);
  EXPECT_FALSE(a.past_key_values);  // an encoder has no cache
}

void expect_incremental_matches_full(std::shared_ptr<CamembertConfig> config, bool cross_attention) {
  auto model = eval_model<CamembertForCausalLM>(config);
  at::Tensor ids = at::tensor({0, 5, 9, 33, 7, 17, 2, 12, 3, 30, 11, 8}, at::kLong).view({2, 6});
  at::Tensor encoder_hidden_states = at::randn({2, 3, 16});
  at::Tensor encoder_attention_mask = at::tensor({1, 1, 1, 1, 1, 0}, at::kLong).view({2, 3});
  auto inputs = [&](const at::Tensor& part) {
    ModelInputs in;
    in.input_ids = part;
    if (cross_attention) {
      in.encoder_hidden_states = encoder_hidden_states;
      in.encoder_attention_mask = encoder_attention_mask;
    }
    return in;
  };
  ModelOutput full = run(*model, inputs(ids));
  ModelOutput first = run(*model, inputs(ids.narrow(1, 0, 4)));
  ASSERT_TRUE(first.past_key_values);
  EXPECT_EQ(first.past_key_values->get_seq_length(), 4);
  ModelOutput next = run(*model, [&] {
    ModelInputs in = inputs(ids.narrow(1, 4, 1));
    in.past_key_values = first.past_key_values;
    return in;
  }());
  auto legacy = next.past_key_values->to_legacy_cache();
  ASSERT_EQ(legacy.size(), 2u);
  EXPECT_EQ(legacy[0].size(), cross_attention ? 4u : 2u);
  EXPECT_EQ(legacy[0][0].size(2), 5);
  if (cross_attention) {
    EXPECT_EQ(legacy[0][2].size(2), 3);
  }
  EXPECT_LT(max_abs_diff(next.logits.select(1, 0), full.logits.select(1, 4)), 1e-5);
  EXPECT_LT(max_abs_diff(first.logits, full.logits.narrow(1, 0, 4)), 1e-5);
}

TEST(CamembertModelTest, IncrementalDecodingMatchesFullForward) {
  auto config = tiny_config();
  config->is_decoder = true;
  expect_incremental_matches_full(config, false);
}

TEST(CamembertModelTest, RelativeKeyQueryDecodingThroughCache) {
  auto config = tiny_config();
  config->is_decoder = true;
  config->position_embedding_type = "relative_key_query";
  expect_incremental_matches_full(config, false);
}

TEST(CamembertModelTest, CrossAttentionCacheIsComputedOnceAndReused) {
  auto config = tiny_config();
  config->is_decoder = true;
  config->add_cross_attention = true;
  expect_incremental_matches_full(config, true);
}

TEST(CamembertModelTest, PruningHeadsEqualsMaskingThem) {
  auto model = eval_model<CamembertModel>(tiny_config());
  ModelInputs in;
  in.input_ids = sample_ids();
  in.attention_mask = at::tensor({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, at::kLong).view({2, 5});
  ModelInputs masked = in;
  masked.head_mask = at::tensor({1.0f, 0.0f, 1.0f, 1.0f, 0.0f, 1.0f, 0.0f, 1.0f}).view({2, 4});
  at::Tensor reference = run(*model, masked).last_hidden_state;

  model->prune_heads({{0, {1}}, {1, {0, 2}}});
  auto& layers = *model->encoder->layer;
  EXPECT_EQ(layers[0]->attention->self->num_attention_heads, 3);
  EXPECT_EQ(layers[1]->attention->self->num_attention_heads, 2);
  EXPECT_EQ(layers[1]->attention->self->query->weight.sizes(), at::IntArrayRef({8, 16}));
  EXPECT_EQ(layers[1]->attention->output->dense->weight.sizes(), at::IntArrayRef({16, 8}));
  EXPECT_EQ(layers[1]->attention->pruned_heads, (std::set<int64_t>{0, 2}));
  EXPECT_LT(max_abs_diff(run(*model, in).last_hidden_state, reference), 1e-5);
  // Pruning again counts heads of the original numbering, as transformers tracks pruned_heads.
  model->prune_heads({{1, {2, 3}}});
  EXPECT_EQ(layers[1]->attention->self->num_attention_heads, 1);
  EXPECT_EQ(layers[1]->attention->pruned_heads, (std::set<int64_t>{0, 2, 3}));
  EXPECT_EQ(model->config->pruned_heads.at(1), (std::vector<int64_t>{0, 2, 3}));

  // A pruned save loads with its pruned shapes.
  TempDir tmp;
  model->save_pretrained(tmp.str());
  auto loaded = CamembertModel::from_pretrained(tmp.str());
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_EQ((*loaded->encoder->layer)[1]->attention->self->num_attention_heads, 1);
  EXPECT_LT(max_abs_diff(run(*loaded, in).last_hidden_state, run(*model, in).last_hidden_state), 1e-6);
}

TEST(CamembertModelTest, SaveLoadRoundTripKeepsTheLMHeadTied) {
  TempDir tmp;
  auto model = eval_model<CamembertForMaskedLM>(tiny_config());
  EXPECT_TRUE(model->lm_head->decoder->weight.is_same(model->roberta->embeddings->word_embeddings->weight));
  EXPECT_TRUE(model->lm_head->decoder->bias.is_same(model->lm_head->bias));
  model->save_pretrained(tmp.str());
  json saved = read_json(tmp / "config.json");
  EXPECT_EQ(saved["model_type"], "camembert");
  EXPECT_EQ(saved["architectures"], json::array({"CamembertForMaskedLM"}));
  safetensors::SafeOpen file(tmp / "model.safetensors");
  EXPECT_FALSE(file.contains("lm_head.decoder.weight"));
  EXPECT_FALSE(file.contains("lm_head.decoder.bias"));
  EXPECT_TRUE(file.contains("lm_head.bias"));
  EXPECT_FALSE(file.contains("roberta.embeddings.position_ids"));  // non-persistent buffers
  auto loaded = AutoModelForMaskedLM::from_pretrained(tmp.str());
  EXPECT_EQ(loaded->class_name, "CamembertForMaskedLM");
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  auto typed = std::dynamic_pointer_cast<CamembertForMaskedLM>(loaded);
  ASSERT_TRUE(typed);
  EXPECT_TRUE(typed->lm_head->decoder->weight.is_same(typed->roberta->embeddings->word_embeddings->weight));
  EXPECT_TRUE(typed->lm_head->decoder->bias.is_same(typed->lm_head->bias));
  ModelInputs in;
  in.input_ids = sample_ids();
  EXPECT_EQ(max_abs_diff(run(*model, in).logits, run(*loaded, in).logits), 0.0);
  // Parameters count tied weights once.
  auto untied_config = tiny_config();
  untied_config->tie_word_embeddings = false;
  EXPECT_EQ(model->num_parameters() + 40 * 16, eval_model<CamembertForMaskedLM>(untied_config)->num_parameters());
}

TEST(CamembertModelTest, RobertaModelTypeWorksToo) {
  auto config = std::make_shared<RobertaConfig>();
  config->vocab_size = 30;
  config->hidden_size = 8;
  config->num_hidden_layers = 1;
  config->num_attention_heads = 2;
  config->intermediate_size = 12;
  config->max_position_embeddings = 16;
  auto model = std::make_shared<RobertaForMaskedLM>(config);
  model->eval();
  EXPECT_EQ(model->class_name, "RobertaForMaskedLM");
  EXPECT_EQ(model->_no_split_modules, (std::vector<std::string>{"RobertaEmbeddings", "RobertaSelfAttention"}));
  EXPECT_TRUE(eval_model<CamembertForMaskedLM>(tiny_config())->_no_split_modules == std::vector<std::string>{});
  TempDir tmp;
  model->save_pretrained(tmp.str());
  EXPECT_EQ(read_json(tmp / "config.json")["model_type"], "roberta");
  auto loaded = AutoModelForMaskedLM::from_pretrained(tmp.str());
  EXPECT_EQ(loaded->class_name, "RobertaForMaskedLM");
  ModelInputs in;
  in.input_ids = at::tensor({0, 4, 9, 2}, at::kLong).unsqueeze(0);
  EXPECT_EQ(max_abs_diff(run(*model, in).logits, run(*loaded, in).logits), 0.0);
  // A roberta checkpoint is not a camembert one.
  EXPECT_THROW(model_from_pretrained(tmp.str(), "CamembertForMaskedLM"), ConfigError);
}

TEST(CamembertModelTest, AutoClassesCoverEveryTask) {
  const std::vector<std::pair<std::string, std::string>> tasks{
      {"base", "Model"},
      {"causal-lm", "ForCausalLM"},
      {"masked-lm", "ForMaskedLM"},
      {"sequence-classification", "ForSequenceClassification"},
      {"token-classification", "ForTokenClassification"},
      {"question-answering", "ForQuestionAnswering"},
      {"multiple-choice", "ForMultipleChoice"}};
  for (const auto& [model_type, prefix] : {std::pair<std::string, std::string>{"roberta", "Roberta"},
                                           std::pair<std::string, std::string>{"camembert", "Camembert"}})
    for (const auto& [task, suffix] : tasks) {
      std::string cls = class_for_task(model_type, task);
      EXPECT_EQ(cls, prefix + suffix);
      auto config = AutoConfig::for_model(model_type);
      config->update({{"vocab_size", 20}, {"hidden_size", 8}, {"num_hidden_layers", 1}, {"num_attention_heads", 2},
                      {"intermediate_size", 8}, {"max_position_embeddings", 12}}, "test");
      auto model = model_from_config(config, cls);
      EXPECT_EQ(model->class_name, cls);
      EXPECT_EQ(model->base_model_prefix, "roberta");
    }
  EXPECT_EQ(AutoModel::from_pretrained(fixture("camembert-model/model"))->class_name, "CamembertModel");
  EXPECT_EQ(AutoModelForCausalLM::from_pretrained(fixture("camembert-for-causal-lm/model"))->class_name,
            "CamembertForCausalLM");
  EXPECT_EQ(AutoConfig::for_model("camembert")->get("vocab_size"), 30522);
  EXPECT_EQ(AutoConfig::for_model("roberta")->get("vocab_size"), 50265);
}

TEST(CamembertModelTest, GradientCheckpointingGivesTheSameGradients) {
  auto config = tiny_config();
  config->hidden_dropout_prob = 0.0;
  config->attention_probs_dropout_prob = 0.0;
  auto gradients = [&](bool checkpointing) {
    at::manual_seed(3);
    auto model = std::make_shared<CamembertForMaskedLM>(config);
    model->train();
    if (checkpointing) model->gradient_checkpointing_enable();
    ModelInputs in;
    in.input_ids = sample_ids();
    in.labels = sample_ids();
    model->forward(in).loss.backward();
    return model->roberta->encoder->layer->operator[](0)->attention->self->query->weight.grad().clone();
  };
  at::Tensor plain = gradients(false), checkpointed = gradients(true);
  EXPECT_GT(plain.abs().sum().item<double>(), 0.0);
  EXPECT_LT(max_abs_diff(plain, checkpointed), 1e-7);
}

// ---- Bad input: typed errors naming the problem ----

template <typename E>
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no exception";
  } catch (const E& e) {
    for (const auto& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what() << " lacks " << f;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

TEST(CamembertBadInput, Inputs) {
  auto model = eval_model<CamembertModel>(tiny_config());
  expect_error<ValueError>([&] { run(*model, ModelInputs{}); }, {"input_ids or inputs_embeds"});
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = sample_ids();
        in.inputs_embeds = at::zeros({2, 5, 16});
        run(*model, in);
      },
      {"both input_ids and inputs_embeds"});
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = at::tensor({0, 40}, at::kLong).unsqueeze(0);
        run(*model, in);
      },
      {"input_ids", "vocab_size", "40"});
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = at::full({1, 40}, 5, at::kLong);
        run(*model, in);
      },
      {"max_position_embeddings"});
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = sample_ids();
        in.attention_mask = at::ones({2, 1, 1, 5});
        run(*model, in);
      },
      {"attention_mask"});
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = sample_ids();
        in.head_mask = at::ones({3, 4});
        run(*model, in);
      },
      {"head_mask"});
  auto decoder_config = tiny_config();
  decoder_config->is_decoder = true;
  auto decoder = eval_model<CamembertForCausalLM>(decoder_config);
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = sample_ids();
        in.encoder_hidden_states = at::zeros({2, 3, 16});
        run(*decoder, in);
      },
      {"add_cross_attention"});
  auto choice = eval_model<CamembertForMultipleChoice>(tiny_config());
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = sample_ids();
        run(*choice, in);
      },
      {"num_choices"});
}

TEST(CamembertBadInput, Config) {
  TempDir tmp;
  fs::copy(fixture("camembert-for-masked-lm/model"), tmp / "m", fs::copy_options::recursive);
  json config = read_json(tmp / "m/config.json");
  auto with = [&](const std::string& key, const json& value) {
    json changed = config;
    changed[key] = value;
    write_json_file(changed, tmp / "m/config.json");
  };
  with("position_embedding_type", "rotary");
  expect_error<ConfigError>([&] { AutoModelForMaskedLM::from_pretrained(tmp / "m"); },
                            {"config.json", "position_embedding_type", "rotary"});
  with("hidden_act", "nope");
  expect_error<ConfigError>([&] { AutoModelForMaskedLM::from_pretrained(tmp / "m"); }, {"config.json", "hidden_act", "nope"});
  with("num_attention_heads", 5);
  expect_error<ConfigError>([&] { AutoModelForMaskedLM::from_pretrained(tmp / "m"); }, {"config.json", "hidden size (32)"});
  with("add_cross_attention", true);
  expect_error<ConfigError>([&] { AutoModelForMaskedLM::from_pretrained(tmp / "m"); }, {"add_cross_attention", "is_decoder"});
  write_json_file(config, tmp / "m/config.json");
  FromPretrainedOptions sdpa;
  sdpa.attn_implementation = "sdpa";
  expect_error<ValueError>([&] { AutoModelForMaskedLM::from_pretrained(tmp / "m", sdpa); },
                           {"CamembertForMaskedLM", "scaled_dot_product_attention"});
}

// ---- Command line ----

std::string tfcpp(const std::string& args) { return tfcpp_bin() + " " + args + " 2>&1"; }

TEST(CamembertCli, ForwardAndGenerateFollowTheFixtureContract) {
  TempDir tmp;
  for (const char* name : {"camembert-for-question-answering", "camembert-for-causal-lm"}) {
    std::string dir = fixture(name);
    std::string cls = read_json(dir + "/expected.json")["class"].get<std::string>();
    auto [rc, output] = run_command(tfcpp("forward --model " + dir + "/model --class " + cls + " --inputs " + dir +
                                          "/inputs.json --out " + tmp / "out.safetensors"));
    ASSERT_EQ(rc, 0) << output;
    auto actual = read_tensors(tmp / "out.safetensors");
    for (const auto& [key, want] : read_tensors(dir + "/expected.safetensors")) {
      if (key.rfind("generate.", 0) == 0) continue;
      ASSERT_TRUE(actual.count(key)) << key;
      EXPECT_TRUE(tensors_close(key, actual[key], want, 1e-4, 1e-4));
    }
  }
  std::string dir = fixture("camembert-for-causal-lm");
  auto [rc, output] = run_command(tfcpp("generate --model " + dir + "/model --class CamembertForCausalLM --inputs " +
                                        dir + "/inputs.json --name greedy --json"));
  ASSERT_EQ(rc, 0) << output;
  json got = json::parse(output.substr(output.find('{')));
  EXPECT_EQ(got["sequences"], read_json(dir + "/expected.json")["generate"]["greedy"]["ids"]);
}

// The fill-mask pipeline by hand: softmax at the mask position, top k.
std::vector<std::pair<int64_t, double>> top_k_at(PreTrainedModel& model, const std::vector<int64_t>& ids,
                                                 int64_t position, int64_t k) {
  ModelInputs in;
  in.input_ids = at::tensor(ids, at::kLong).unsqueeze(0);
  at::Tensor probs = at::softmax(run(model, in).logits[0][position], -1);
  auto [values, indices] = probs.topk(k);
  std::vector<std::pair<int64_t, double>> out;
  for (int64_t i = 0; i < k; ++i) out.emplace_back(indices[i].item<int64_t>(), values[i].item<double>());
  return out;
}

TEST(CamembertCli, FillMaskWithIds) {
  std::string model_dir = fixture("camembert-for-masked-lm/model");
  auto model = CamembertForMaskedLM::from_pretrained(model_dir);
  // <mask> stands for the mask id, vocab_size - 1 (98) without a tokenizer.
  auto [rc, output] = run_command(tfcpp("fill-mask --model " + model_dir + " --ids \"0 5 6 <mask> 7 2\" --top-k 3 --json"));
  ASSERT_EQ(rc, 0) << output;
  json got = json::parse(output.substr(output.find('[')));
  auto want = top_k_at(*model, {0, 5, 6, 98, 7, 2}, 3, 3);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i]["token"], want[i].first);
    EXPECT_NEAR(got[i]["score"].get<double>(), want[i].second, 1e-6);
    EXPECT_EQ(got[i]["sequence"], json({0, 5, 6, want[i].first, 7, 2}));
  }
  // Two masks (an explicit --mask-id): one list of predictions per mask.
  std::tie(rc, output) = run_command(tfcpp("fill-mask --model " + model_dir + " --ids 0,40,6,40,2 --mask-id 40 --json -k 2"));
  ASSERT_EQ(rc, 0) << output;
  got = json::parse(output.substr(output.find('[')));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1][0]["token"], top_k_at(*model, {0, 40, 6, 40, 2}, 3, 1)[0].first);
  // The text report.
  std::tie(rc, output) = run_command(tfcpp("fill-mask --model " + model_dir + " --ids \"0 5 98 2\""));
  ASSERT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("mask 1 (position 2):"), std::string::npos) << output;
}

TEST(CamembertCli, FillMaskWithText) {
  // A RoBERTa masked LM over a BPE tokenizer the project reads, with <mask> added as the last id.
  TempDir tmp;
  json tokenizer = read_json(shared_dir() + "/fixtures/tokenizers/llama-metaspace-bpe/tokenizer.json");
  int64_t vocab = static_cast<int64_t>(tokenizer["model"]["vocab"].size());
  tokenizer["added_tokens"].push_back({{"id", vocab}, {"content", "<mask>"}, {"single_word", false}, {"lstrip", true},
                                       {"rstrip", false}, {"normalized", false}, {"special", true}});
  auto config = std::make_shared<RobertaConfig>();
  config->vocab_size = vocab + 1;
  config->hidden_size = 8;
  config->num_hidden_layers = 1;
  config->num_attention_heads = 2;
  config->intermediate_size = 8;
  config->max_position_embeddings = 64;
  config->pad_token_id = 0;
  std::make_shared<RobertaForMaskedLM>(config)->save_pretrained(tmp / "m");
  write_json_file(tokenizer, tmp / "m/tokenizer.json");
  write_json_file({{"mask_token", "<mask>"}}, tmp / "m/tokenizer_config.json");

  Tokenizer tok = Tokenizer::from_pretrained(tmp / "m");
  std::vector<int64_t> ids = tok.encode("Once upon a <mask> there was");
  auto position = std::find(ids.begin(), ids.end(), vocab) - ids.begin();
  ASSERT_LT(position, static_cast<int64_t>(ids.size()));
  auto model = RobertaForMaskedLM::from_pretrained(tmp / "m");
  auto want = top_k_at(*model, ids, position, 2);

  auto [rc, output] =
      run_command(tfcpp("fill-mask --model " + tmp / "m" + " --text \"Once upon a <mask> there was\" -k 2 --json"));
  ASSERT_EQ(rc, 0) << output;
  json got = json::parse(output.substr(output.find('[')));
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i]["token"], want[i].first);
    EXPECT_NEAR(got[i]["score"].get<double>(), want[i].second, 1e-6);
    EXPECT_EQ(got[i]["token_str"], tok.decode({want[i].first}));
    std::vector<int64_t> filled = ids;
    filled[position] = want[i].first;
    EXPECT_EQ(got[i]["sequence"], tok.decode(filled, true));
  }
}

TEST(CamembertCli, FillMaskErrors) {
  std::string model_dir = fixture("camembert-for-masked-lm/model");
  auto [rc, output] = run_command(tfcpp("fill-mask --model " + model_dir + " --text \"un <mask>\""));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(output.find("tokenizer.json"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("fill-mask --model " + model_dir + " --ids \"0 5 6 2\""));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(output.find("No mask_token"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("fill-mask --model " + model_dir + " --ids \"0 five 2\""));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(output.find("'five'"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("fill-mask --model " + model_dir));
  EXPECT_EQ(rc, 2) << output;
}

}  // namespace
