// GPT-2 parity against transformers 4.40.2 fixtures (shared gpt2-* and the repo's gpt2-extra-* cases), plus model
// operations: prune heads + save + reload, save/load round trip, losses, gradient checkpointing, typed errors.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/models/gpt2.h"

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

class GPT2Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(GPT2Parity, ForwardMatchesTransformers) {
  std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  auto model = load_case(dir);
  EXPECT_TRUE(model->loading_info.missing_keys.empty());
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty());
  auto outputs = run_forward_case(*model, read_case_inputs(dir + "/inputs.json"));
  std::map<std::string, at::Tensor> actual(outputs.begin(), outputs.end());
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  int compared = 0;
  for (const auto& [name, want] : read_tensors(dir + "/expected.safetensors")) {
    if (name.rfind("generate.", 0) == 0 || name.rfind("aux.", 0) == 0) continue;
    ASSERT_TRUE(actual.count(name)) << "output " << name << " not produced";
    EXPECT_TRUE(tensors_close(name, actual[name], want, atol, rtol));
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GPT2Parity, ::testing::ValuesIn(fixture_cases("gpt2-")),
                         [](const auto& info) { return case_name(info.param); });

std::vector<std::string> generate_cases() {
  std::vector<std::string> out;
  for (const auto& dir : fixture_cases("gpt2-"))
    if (!read_json(dir + "/expected.json")["generate"].empty()) out.push_back(dir);
  return out;
}

class GPT2GenerateParity : public ::testing::TestWithParam<std::string> {};

TEST_P(GPT2GenerateParity, IdsAndScoresMatchTransformers) {
  std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  json inputs = read_case_inputs(dir + "/inputs.json");
  auto reference = read_tensors(dir + "/expected.safetensors");
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  for (auto& [name, entry] : expected["generate"].items()) {
    auto model = load_case(dir);
    GenerateOutput out = run_generate_case(*model, inputs, name);
    EXPECT_EQ(tensor_to_json(out.sequences), entry["ids"]) << name;
    if (entry.contains("sequences_scores")) {
      ASSERT_TRUE(out.sequences_scores.defined()) << name;
      at::Tensor ref = at::tensor(entry["sequences_scores"].get<std::vector<double>>(), at::kDouble);
      EXPECT_TRUE(tensors_close(name + ".sequences_scores", out.sequences_scores, ref, atol, rtol));
    }
    size_t steps = 0;
    while (reference.count("generate." + name + ".scores." + std::to_string(steps))) ++steps;
    ASSERT_EQ(out.scores.size(), steps) << name;
    for (size_t i = 0; i < steps; ++i) {
      std::string key = "generate." + name + ".scores." + std::to_string(i);
      at::Tensor a = out.scores[i].to(at::kDouble), e = reference.at(key).to(at::kDouble);
      at::Tensor finite = at::isfinite(e);
      EXPECT_TRUE(at::equal(at::isfinite(a), finite)) << key;
      EXPECT_TRUE(tensors_close(key, a.masked_select(finite), e.masked_select(finite), atol, rtol));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GPT2GenerateParity, ::testing::ValuesIn(generate_cases()),
                         [](const auto& info) { return case_name(info.param); });

// ---- Tiny random models ----

std::shared_ptr<GPT2Config> tiny_config() {
  auto config = std::make_shared<GPT2Config>();
  config->vocab_size = 61;
  config->n_positions = 32;
  config->n_embd = 16;
  config->n_layer = 2;
  config->n_head = 4;
  config->bos_token_id = 60;
  config->eos_token_id = TokenIds{60};
  return config;
}

template <typename M>
std::shared_ptr<M> eval_model(std::shared_ptr<GPT2Config> config) {
  at::manual_seed(0);
  auto model = std::make_shared<M>(config);
  model->eval();
  return model;
}

at::Tensor sample_ids() { return at::tensor({1, 5, 9, 33, 2, 17, 60, 4, 8, 12}, at::kLong).view({2, 5}); }

ModelOutput run(PreTrainedModel& model, const ModelInputs& in) {
  c10::InferenceMode guard;
  return model.forward(in);
}

TEST(GPT2Config, AttributeMapAndSerialisation) {
  GPT2Config config;
  config.from_dict(json{{"hidden_size", 48}, {"num_attention_heads", 6}, {"n_layer", 3}, {"max_position_embeddings", 77}});
  EXPECT_EQ(config.n_embd, 48);
  EXPECT_EQ(config.n_head, 6);
  EXPECT_EQ(config.get("num_hidden_layers"), 3);
  EXPECT_EQ(config.n_positions, 77);
  json saved = config.to_dict();
  EXPECT_EQ(saved["n_embd"], 48);
  EXPECT_FALSE(saved.contains("hidden_size"));
  EXPECT_EQ(saved["model_type"], "gpt2");
  EXPECT_TRUE(saved["n_inner"].is_null());
  EXPECT_EQ(saved["activation_function"], "gelu_new");
}

TEST(GPT2Model, Conv1DKeysAndLayout) {
  auto model = eval_model<GPT2LMHeadModel>(tiny_config());
  std::map<std::string, at::Tensor> sd;
  for (const auto& [k, t] : model->state_dict()) sd[k] = t;
  EXPECT_EQ(sd.at("transformer.h.0.attn.c_attn.weight").sizes(), at::IntArrayRef({16, 48}));  // [in, out]
  EXPECT_EQ(sd.at("transformer.h.0.mlp.c_fc.weight").sizes(), at::IntArrayRef({16, 64}));
  EXPECT_EQ(sd.at("transformer.h.1.mlp.c_proj.weight").sizes(), at::IntArrayRef({64, 16}));
  EXPECT_EQ(sd.count("transformer.h.0.attn.bias"), 0u);  // non-persistent causal mask
  EXPECT_TRUE(sd.count("transformer.wpe.weight"));
  // lm_head is tied to wte.
  EXPECT_TRUE(model->lm_head->weight.is_same(model->transformer->wte->weight));
  // Conv1D: x @ W + b
  auto conv = model->transformer->h->operator[](0)->mlp->c_fc;
  at::Tensor x = at::randn({2, 3, 16});
  EXPECT_LT(max_abs_diff(conv->forward(x), at::matmul(x, conv->weight) + conv->bias), 1e-6);
}

TEST(GPT2Model, SaveLoadRoundTripGivesIdenticalOutputs) {
  TempDir tmp;
  auto model = eval_model<GPT2LMHeadModel>(tiny_config());
  model->save_pretrained(tmp.str());
  json saved = read_json(tmp / "config.json");
  EXPECT_EQ(saved["architectures"], json::array({"GPT2LMHeadModel"}));
  EXPECT_EQ(saved["model_type"], "gpt2");
  auto loaded = AutoModelForCausalLM::from_pretrained(tmp.str());
  EXPECT_EQ(loaded->class_name, "GPT2LMHeadModel");
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(loaded->loading_info.unexpected_keys.empty());
  ModelInputs in;
  in.input_ids = sample_ids();
  EXPECT_EQ(max_abs_diff(run(*model, in).logits, run(*loaded, in).logits), 0.0);
  // The base checkpoint loads into the other heads (prefix "transformer").
  auto base = GPT2Model::from_pretrained(tmp.str());
  EXPECT_TRUE(base->loading_info.missing_keys.empty());
  auto cls = GPT2ForSequenceClassification::from_pretrained(tmp.str());
  EXPECT_EQ(cls->loading_info.missing_keys, std::vector<std::string>{"score.weight"});
}

TEST(GPT2Model, IncrementalDecodingMatchesFullForward) {
  auto model = eval_model<GPT2LMHeadModel>(tiny_config());
  at::Tensor ids = sample_ids();
  ModelInputs full;
  full.input_ids = ids;
  at::Tensor reference = run(*model, full).logits;
  ModelInputs first;
  first.input_ids = ids.narrow(1, 0, 3);
  first.use_cache = true;
  ModelOutput out = run(*model, first);
  ASSERT_TRUE(out.past_key_values);
  EXPECT_EQ(out.past_key_values->get_seq_length(), 3);
  ModelInputs next;
  next.input_ids = ids.narrow(1, 3, 2);
  next.past_key_values = out.past_key_values;
  at::Tensor rest = run(*model, next).logits;
  EXPECT_LT(max_abs_diff(rest, reference.narrow(1, 3, 2)), 1e-5);
}

TEST(GPT2Model, PruningHeadsEqualsMaskingThemAndSurvivesSaveLoad) {
  auto model = eval_model<GPT2Model>(tiny_config());
  ModelInputs in;
  in.input_ids = sample_ids();
  in.attention_mask = at::tensor({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, at::kLong).view({2, 5});
  ModelInputs masked = in;
  masked.head_mask = at::tensor({1.0f, 0.0f, 1.0f, 1.0f, 0.0f, 1.0f, 0.0f, 1.0f}).view({2, 4});
  at::Tensor reference = run(*model, masked).last_hidden_state;

  model->prune_heads({{0, {1}}, {1, {0, 2}}});
  auto& layers = *model->h;
  EXPECT_EQ(layers[0]->attn->num_heads, 3);
  EXPECT_EQ(layers[1]->attn->num_heads, 2);
  EXPECT_EQ(layers[1]->attn->split_size, 8);
  EXPECT_EQ(layers[1]->attn->c_attn->weight.sizes(), at::IntArrayRef({16, 24}));
  EXPECT_EQ(layers[1]->attn->c_attn->bias.sizes(), at::IntArrayRef({24}));
  EXPECT_EQ(layers[1]->attn->c_proj->weight.sizes(), at::IntArrayRef({8, 16}));
  EXPECT_EQ(layers[1]->attn->c_proj->bias.sizes(), at::IntArrayRef({16}));
  EXPECT_LT(max_abs_diff(run(*model, in).last_hidden_state, reference), 1e-5);
  // Pruning again counts heads of the original numbering.
  model->prune_heads({{1, {2, 3}}});
  EXPECT_EQ(layers[1]->attn->num_heads, 1);
  EXPECT_EQ(layers[1]->attn->pruned_heads, (std::set<int64_t>{0, 2, 3}));
  EXPECT_EQ(model->config->pruned_heads.at(1), (std::vector<int64_t>{0, 2, 3}));

  TempDir tmp;
  model->save_pretrained(tmp.str());
  auto loaded = GPT2Model::from_pretrained(tmp.str());
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(loaded->loading_info.mismatched_keys.empty());
  EXPECT_EQ((*loaded->h)[1]->attn->num_heads, 1);
  EXPECT_EQ((*loaded->h)[0]->attn->num_heads, 3);
  EXPECT_LT(max_abs_diff(run(*loaded, in).last_hidden_state, run(*model, in).last_hidden_state), 1e-6);
  EXPECT_THROW(model->prune_heads({{5, {0}}}), ValueError);
  EXPECT_THROW(model->prune_heads({{0, {4}}}), ValueError);
}

TEST(GPT2Loss, CausalLMShiftsLabels) {
  auto model = eval_model<GPT2LMHeadModel>(tiny_config());
  ModelInputs in;
  in.input_ids = sample_ids();
  in.labels = at::tensor({1, 5, 9, -100, 2, 17, 60, 4, 8, 12}, at::kLong).view({2, 5});
  ModelOutput out = run(*model, in);
  at::Tensor logits = out.logits.narrow(1, 0, 4).reshape({-1, 61});
  at::Tensor labels = in.labels.narrow(1, 1, 4).reshape({-1});
  at::Tensor keep = labels.ne(-100);
  at::Tensor logp = at::log_softmax(logits, -1).index({keep}).gather(1, labels.masked_select(keep).unsqueeze(1));
  EXPECT_LT(std::abs(out.loss.item<double>() + logp.mean().item<double>()), 1e-5);
}

TEST(GPT2Loss, SequenceClassificationUsesLastNonPadToken) {
  auto config = tiny_config();
  config->pad_token_id = 0;
  config->set_num_labels(3);
  auto model = eval_model<GPT2ForSequenceClassification>(config);
  ModelInputs in;
  in.input_ids = at::tensor({4, 9, 13, 0, 0, 7, 8, 21, 22, 23}, at::kLong).view({2, 5});
  in.labels = at::tensor({2, 1}, at::kLong);
  ModelOutput out = run(*model, in);
  ModelInputs base_in;
  base_in.input_ids = in.input_ids;
  at::Tensor hidden = run(*model->transformer, base_in).last_hidden_state;
  c10::InferenceMode guard;
  at::Tensor all = at::matmul(hidden, model->score->weight.t());  // [2, 5, 3]
  at::Tensor pooled = at::stack({all[0][2], all[1][4]});
  EXPECT_LT(max_abs_diff(out.logits, pooled), 1e-6);
  at::Tensor logp = at::log_softmax(pooled, -1);
  double want = -(logp[0][2].item<double>() + logp[1][1].item<double>()) / 2;
  EXPECT_LT(std::abs(out.loss.item<double>() - want), 1e-6);
  EXPECT_EQ(model->config->problem_type, std::optional<std::string>("single_label_classification"));

  // Regression (num_labels 1) and multi-label (float labels).
  auto reg_config = tiny_config();
  reg_config->pad_token_id = 0;
  reg_config->set_num_labels(1);
  auto reg = eval_model<GPT2ForSequenceClassification>(reg_config);
  in.labels = at::tensor({0.5f, -1.0f});
  ModelOutput r = run(*reg, in);
  EXPECT_LT(std::abs(r.loss.item<double>() - at::mse_loss(r.logits.squeeze(), in.labels).item<double>()), 1e-6);
  auto multi_config = tiny_config();
  multi_config->pad_token_id = 0;
  multi_config->set_num_labels(3);
  auto multi = eval_model<GPT2ForSequenceClassification>(multi_config);
  in.labels = at::tensor({1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 1.0f}).view({2, 3});
  ModelOutput m = run(*multi, in);
  EXPECT_LT(std::abs(m.loss.item<double>() -
                     at::binary_cross_entropy_with_logits(m.logits, in.labels).item<double>()),
            1e-6);

  // No pad token: batch of one only.
  auto nopad = eval_model<GPT2ForSequenceClassification>(tiny_config());
  ModelInputs two;
  two.input_ids = sample_ids();
  EXPECT_THROW(run(*nopad, two), ValueError);
}

TEST(GPT2Model, GradientCheckpointingGivesTheSameGradients) {
  auto config = tiny_config();
  config->resid_pdrop = config->embd_pdrop = config->attn_pdrop = 0.0;
  auto gradients = [&](bool checkpointing) {
    at::manual_seed(3);
    auto model = std::make_shared<GPT2LMHeadModel>(config);
    model->train();
    if (checkpointing) model->gradient_checkpointing_enable();
    ModelInputs in;
    in.input_ids = sample_ids();
    in.labels = sample_ids();
    ModelOutput out = model->forward(in);
    EXPECT_EQ(static_cast<bool>(out.past_key_values), !checkpointing);
    out.loss.backward();
    return (*model->transformer->h)[0]->attn->c_attn->weight.grad().clone();
  };
  at::Tensor plain = gradients(false), checkpointed = gradients(true);
  EXPECT_GT(plain.abs().sum().item<double>(), 0.0);
  EXPECT_LT(max_abs_diff(plain, checkpointed), 1e-7);
}

TEST(GPT2Model, ReorderAndUpcastMatchesPlainAttentionInFloat32) {
  auto config = tiny_config();
  config->scale_attn_by_inverse_layer_idx = true;
  auto plain = eval_model<GPT2Model>(config);
  auto upcast_config = std::make_shared<GPT2Config>(*config);
  upcast_config->reorder_and_upcast_attn = true;
  auto upcast = eval_model<GPT2Model>(upcast_config);
  ModelInputs in;
  in.input_ids = sample_ids();
  in.attention_mask = at::tensor({1, 1, 1, 1, 1, 0, 1, 1, 1, 1}, at::kLong).view({2, 5});
  at::Tensor a = run(*plain, in).last_hidden_state, b = run(*upcast, in).last_hidden_state;
  ASSERT_FALSE(at::isnan(a).any().item<bool>());
  ASSERT_FALSE(at::isnan(b).any().item<bool>());
  EXPECT_LT(max_abs_diff(a, b), 1e-5);
}

TEST(GPT2Model, CrossAttentionLayers) {
  auto config = tiny_config();
  config->add_cross_attention = true;
  auto model = eval_model<GPT2Model>(config);
  EXPECT_TRUE((*model->h)[0]->crossattention);
  EXPECT_EQ((*model->h)[0]->crossattention->c_attn->weight.sizes(), at::IntArrayRef({16, 32}));
  ModelInputs in;
  in.input_ids = sample_ids();
  in.encoder_hidden_states = at::randn({2, 3, 16});
  in.output_attentions = true;
  ModelOutput out = run(*model, in);
  ASSERT_EQ(out.cross_attentions.size(), 2u);
  EXPECT_EQ(out.cross_attentions[0].sizes(), at::IntArrayRef({2, 4, 5, 3}));
}

TEST(GPT2BadInput, TypedErrors) {
  auto model = eval_model<GPT2LMHeadModel>(tiny_config());
  ModelInputs none;
  EXPECT_THROW(run(*model, none), ValueError);
  ModelInputs out_of_vocab;
  out_of_vocab.input_ids = at::tensor({1, 61}, at::kLong).view({1, 2});
  EXPECT_THROW(run(*model, out_of_vocab), ValueError);
  ModelInputs too_long;
  too_long.input_ids = at::ones({1, 40}, at::kLong);
  EXPECT_THROW(run(*model, too_long), ValueError);
  GPT2Config bad;
  EXPECT_THROW(bad.from_dict(json{{"n_embd", 10}, {"n_head", 4}}, "config.json"), ConfigError);
  GPT2Config bad_act;
  EXPECT_THROW(bad_act.from_dict(json{{"activation_function", "nope"}}, "config.json"), ConfigError);
  EXPECT_THROW(model->set_attn_implementation("sdpa"), ValueError);
}

}  // namespace
