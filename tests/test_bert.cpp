// BERT (over the encoder blocks it shares with RoBERTa): parity against transformers 4.40.2 fixtures (every bert-*
// case, shared and repo-made: pre-training heads with both losses, NSP, decoder LM head with generate), save/load with
// the tied prediction head, pruning + save + reload, auto classes, gradient checkpointing, typed errors.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/models/bert.h"
#include "transformers/models/roberta.h"

#include <c10/core/InferenceMode.h>

#include <filesystem>

namespace fs = std::filesystem;
using namespace transformers;
using namespace tfcpp_test;

namespace {

std::string case_name(const std::string& dir) {
  std::string n = fs::path(dir).filename().string();
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

std::shared_ptr<PreTrainedModel> load_case(const std::string& dir) {
  json expected = read_json(dir + "/expected.json");
  return model_from_pretrained(dir + "/model", expected["class"].get<std::string>());
}

// Compares every tensor of expected.safetensors (except generate.* and aux.*) with the fixture runner's outputs.
void expect_forward_parity(PreTrainedModel& model, const std::string& dir) {
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
}

std::shared_ptr<BertConfig> tiny_config(int64_t num_labels = 2) {
  auto config = std::make_shared<BertConfig>();
  config->vocab_size = 40;
  config->hidden_size = 16;
  config->num_hidden_layers = 2;
  config->num_attention_heads = 4;
  config->intermediate_size = 20;
  config->max_position_embeddings = 24;
  config->set_num_labels(num_labels);
  return config;
}

at::Tensor sample_ids() { return at::tensor({2, 5, 9, 33, 7, 17, 3, 12, 0, 0}, at::kLong).view({2, 5}); }

template <typename Model>
std::shared_ptr<Model> eval_model(std::shared_ptr<BertConfig> config) {
  auto model = std::make_shared<Model>(config);
  model->eval();
  return model;
}

ModelOutput run(PreTrainedModel& model, ModelInputs in) {
  c10::InferenceMode guard;
  return model.forward(in);
}

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

}  // namespace

// ---- Parity: every bert-* case ----

class BertParity : public ::testing::TestWithParam<std::string> {};

TEST_P(BertParity, ForwardMatchesTransformers) {
  std::string dir = GetParam();
  auto model = load_case(dir);
  EXPECT_EQ(model->class_name, read_json(dir + "/expected.json")["class"].get<std::string>());
  EXPECT_TRUE(model->loading_info.missing_keys.empty());
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty());
  model->eval();
  expect_forward_parity(*model, dir);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BertParity, ::testing::ValuesIn(fixture_cases("bert-")),
                         [](const auto& info) { return case_name(info.param); });

std::vector<std::string> bert_generate_cases() {
  std::vector<std::string> out;
  for (const auto& dir : fixture_cases("bert-"))
    if (!read_json(dir + "/expected.json")["generate"].empty()) out.push_back(dir);
  return out;
}

class BertGenerateParity : public ::testing::TestWithParam<std::string> {};

TEST_P(BertGenerateParity, IdsAndScoresMatchTransformers) {
  std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  json inputs = read_case_inputs(dir + "/inputs.json");
  auto reference = read_tensors(dir + "/expected.safetensors");
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  for (auto& [name, entry] : expected["generate"].items()) {
    auto model = load_case(dir);
    GenerateOutput out = run_generate_case(*model, inputs, name);
    EXPECT_EQ(tensor_to_json(out.sequences), entry["ids"]) << name;
    size_t steps = 0;
    while (reference.count("generate." + name + ".scores." + std::to_string(steps))) ++steps;
    ASSERT_EQ(out.scores.size(), steps) << name;
    for (size_t i = 0; i < steps; ++i) {
      std::string key = "generate." + name + ".scores." + std::to_string(i);
      EXPECT_TRUE(tensors_close(key, out.scores[i], reference.at(key), atol, rtol));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, BertGenerateParity, ::testing::ValuesIn(bert_generate_cases()),
                         [](const auto& info) { return case_name(info.param); });

TEST(BertFixtures, SharedAndRepoCasesArePresent) {
  auto cases = fixture_cases("bert-");
  EXPECT_GE(cases.size(), 6u);
  EXPECT_EQ(bert_generate_cases().size(), 1u);
}

// ---- Model operations ----

TEST(BertModelTest, SaveLoadRoundTripKeepsThePredictionHeadTied) {
  TempDir tmp;
  auto model = eval_model<BertForMaskedLM>(tiny_config());
  auto& predictions = *model->cls->predictions;
  EXPECT_TRUE(predictions.decoder->weight.is_same(model->bert->embeddings->word_embeddings->weight));
  EXPECT_TRUE(predictions.decoder->bias.is_same(predictions.bias));
  EXPECT_FALSE(model->bert->pooler);
  model->save_pretrained(tmp.str());
  json saved = read_json(tmp / "config.json");
  EXPECT_EQ(saved["model_type"], "bert");
  EXPECT_EQ(saved["architectures"], json::array({"BertForMaskedLM"}));
  safetensors::SafeOpen file(tmp / "model.safetensors");
  EXPECT_FALSE(file.contains("cls.predictions.decoder.weight"));
  EXPECT_TRUE(file.contains("cls.predictions.bias"));
  EXPECT_TRUE(file.contains("cls.predictions.transform.dense.weight"));
  EXPECT_TRUE(file.contains("bert.encoder.layer.0.attention.self.query.weight"));
  EXPECT_FALSE(file.contains("bert.embeddings.position_ids"));  // non-persistent buffers
  auto loaded = AutoModelForMaskedLM::from_pretrained(tmp.str());
  EXPECT_EQ(loaded->class_name, "BertForMaskedLM");
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(loaded->loading_info.unexpected_keys.empty());
  auto typed = std::dynamic_pointer_cast<BertForMaskedLM>(loaded);
  ASSERT_TRUE(typed);
  EXPECT_TRUE(typed->cls->predictions->decoder->weight.is_same(typed->bert->embeddings->word_embeddings->weight));
  ModelInputs in;
  in.input_ids = sample_ids();
  EXPECT_EQ(max_abs_diff(run(*model, in).logits, run(*loaded, in).logits), 0.0);
}

TEST(BertModelTest, PruneSaveReload) {
  auto model = eval_model<BertModel>(tiny_config());
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
  EXPECT_LT(max_abs_diff(run(*model, in).last_hidden_state, reference), 1e-5);
  EXPECT_EQ(model->config->pruned_heads.at(1), (std::vector<int64_t>{0, 2}));

  TempDir tmp;
  model->save_pretrained(tmp.str());
  auto loaded = BertModel::from_pretrained(tmp.str());
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(loaded->loading_info.unexpected_keys.empty());
  EXPECT_EQ((*loaded->encoder->layer)[1]->attention->self->num_attention_heads, 2);
  EXPECT_LT(max_abs_diff(run(*loaded, in).last_hidden_state, run(*model, in).last_hidden_state), 1e-6);
  expect_error<ValueError>([&] { model->prune_heads({{5, {0}}}); }, {"layer 5"});
}

TEST(BertModelTest, PretrainingHeadsOutputsAndLoss) {
  auto model = eval_model<BertForPreTraining>(tiny_config());
  EXPECT_TRUE(model->cls->predictions->decoder->weight.is_same(model->bert->embeddings->word_embeddings->weight));
  ModelInputs in;
  in.input_ids = sample_ids();
  ModelOutput out = run(*model, in);
  EXPECT_EQ(out.extra.at("prediction_logits").sizes(), at::IntArrayRef({2, 5, 40}));
  EXPECT_EQ(out.extra.at("seq_relationship_logits").sizes(), at::IntArrayRef({2, 2}));
  EXPECT_FALSE(out.loss.defined());  // both labels are needed
  in.labels = at::full({2, 5}, -100, at::kLong);
  in.labels[0][1] = 5;
  in.extra["next_sentence_label"] = at::tensor({0, 1}, at::kLong);
  out = run(*model, in);
  at::Tensor mlm = at::cross_entropy_loss(out.extra.at("prediction_logits")[0][1].unsqueeze(0), at::tensor({5}, at::kLong));
  at::Tensor nsp = at::cross_entropy_loss(out.extra.at("seq_relationship_logits"), at::tensor({0, 1}, at::kLong));
  EXPECT_NEAR(out.loss.item<double>(), (mlm + nsp).item<double>(), 1e-5);
}

TEST(BertModelTest, LMHeadModelCachesAndMatchesFullForward) {
  auto config = tiny_config();
  config->is_decoder = true;
  auto model = eval_model<BertLMHeadModel>(config);
  EXPECT_TRUE(model->can_generate());
  ModelInputs full;
  full.input_ids = sample_ids();
  at::Tensor reference = run(*model, full).logits;
  ModelInputs first;
  first.input_ids = sample_ids().narrow(1, 0, 3);
  ModelOutput out = run(*model, first);
  ASSERT_TRUE(out.past_key_values);
  ModelInputs next;
  next.input_ids = sample_ids().narrow(1, 3, 2);
  next.past_key_values = out.past_key_values;
  EXPECT_LT(max_abs_diff(run(*model, next).logits, reference.narrow(1, 3, 2)), 1e-5);
}

TEST(BertModelTest, AutoClassesCoverEveryTask) {
  const std::vector<std::pair<std::string, std::string>> tasks{
      {"base", "BertModel"},
      {"causal-lm", "BertLMHeadModel"},
      {"masked-lm", "BertForMaskedLM"},
      {"sequence-classification", "BertForSequenceClassification"},
      {"token-classification", "BertForTokenClassification"},
      {"question-answering", "BertForQuestionAnswering"},
      {"multiple-choice", "BertForMultipleChoice"},
      {"next-sentence-prediction", "BertForNextSentencePrediction"},
      {"pretraining", "BertForPreTraining"}};
  for (const auto& [task, cls] : tasks) {
    EXPECT_EQ(class_for_task("bert", task), cls);
    auto config = AutoConfig::for_model("bert");
    config->update({{"vocab_size", 20}, {"hidden_size", 8}, {"num_hidden_layers", 1}, {"num_attention_heads", 2},
                    {"intermediate_size", 8}, {"max_position_embeddings", 12}}, "test");
    auto model = model_from_config(config, cls);
    EXPECT_EQ(model->class_name, cls);
    EXPECT_EQ(model->base_model_prefix, "bert");
  }
  EXPECT_EQ(AutoModel::from_pretrained(fixture("bert-model/model"))->class_name, "BertModel");
  EXPECT_EQ(AutoConfig::for_model("bert")->get("vocab_size"), 30522);
  EXPECT_EQ(AutoConfig::for_model("bert")->get("pad_token_id"), 0);
  // The shared blocks are one implementation.
  static_assert(std::is_same_v<RobertaLayer, BertLayer>);
  static_assert(std::is_same_v<RobertaSelfAttention, BertSelfAttention>);
}

TEST(BertModelTest, GradientCheckpointingGivesTheSameGradients) {
  auto config = tiny_config();
  config->hidden_dropout_prob = 0.0;
  config->attention_probs_dropout_prob = 0.0;
  auto gradients = [&](bool checkpointing) {
    at::manual_seed(3);
    auto model = std::make_shared<BertForMaskedLM>(config);
    model->train();
    if (checkpointing) model->gradient_checkpointing_enable();
    ModelInputs in;
    in.input_ids = sample_ids();
    in.labels = sample_ids();
    model->forward(in).loss.backward();
    return (*model->bert->encoder->layer)[0]->attention->self->query->weight.grad().clone();
  };
  at::Tensor plain = gradients(false), checkpointed = gradients(true);
  EXPECT_GT(plain.abs().sum().item<double>(), 0.0);
  EXPECT_LT(max_abs_diff(plain, checkpointed), 1e-7);
}

TEST(BertLoss, QuestionAnsweringAndMultipleChoice) {
  auto qa = eval_model<BertForQuestionAnswering>(tiny_config());
  ModelInputs in;
  in.input_ids = sample_ids();
  in.extra["start_positions"] = at::tensor({1, 9}, at::kLong);  // 9 is clamped to 5 and ignored
  in.extra["end_positions"] = at::tensor({2, 3}, at::kLong);
  ModelOutput out = run(*qa, in);
  at::Tensor start = at::cross_entropy_loss(out.extra.at("start_logits")[0].unsqueeze(0), at::tensor({1}, at::kLong));
  at::Tensor end = at::cross_entropy_loss(out.extra.at("end_logits"), at::tensor({2, 3}, at::kLong));
  EXPECT_NEAR(out.loss.item<double>(), ((start + end) / 2).item<double>(), 1e-5);

  auto mc = eval_model<BertForMultipleChoice>(tiny_config());
  ModelInputs choices;
  choices.input_ids = sample_ids().unsqueeze(0);  // [1, 2 choices, 5]
  choices.labels = at::tensor({1}, at::kLong);
  out = run(*mc, choices);
  EXPECT_EQ(out.logits.sizes(), at::IntArrayRef({1, 2}));
  EXPECT_NEAR(out.loss.item<double>(), at::cross_entropy_loss(out.logits, choices.labels).item<double>(), 1e-6);
}

// ---- Bad input ----

TEST(BertBadInput, InputsAndConfig) {
  auto model = eval_model<BertModel>(tiny_config());
  expect_error<ValueError>([&] { run(*model, ModelInputs{}); }, {"input_ids or inputs_embeds"});
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = at::tensor({0, 40}, at::kLong).unsqueeze(0);
        run(*model, in);
      },
      {"input_ids", "vocab_size"});
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = at::zeros({1, 30}, at::kLong);
        run(*model, in);
      },
      {"max_position_embeddings"});
  auto mc = eval_model<BertForMultipleChoice>(tiny_config());
  expect_error<ValueError>(
      [&] {
        ModelInputs in;
        in.input_ids = sample_ids();
        run(*mc, in);
      },
      {"num_choices"});
  TempDir tmp;
  fs::copy(fixture("bert-for-masked-lm/model"), tmp / "m", fs::copy_options::recursive);
  json config = read_json(tmp / "m/config.json");
  config["num_attention_heads"] = 5;
  write_json_file(config, tmp / "m/config.json");
  expect_error<ConfigError>([&] { AutoModelForMaskedLM::from_pretrained(tmp / "m"); }, {"config.json", "hidden size (32)"});
}
