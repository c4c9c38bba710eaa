// T5 parity against transformers 4.40.2 fixtures (shared and repo-made), relative position buckets, encoder-decoder
// generate(), the seq2seq loss, caches, pruning, resizing, save/load, bad input and the CLI.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/models/t5.h"

#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace transformers;
using namespace tfcpp_test;

namespace {

std::string case_name(const std::string& dir) {
  std::string n = fs::path(dir).filename().string();
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

std::vector<std::string> t5_cases() {
  std::vector<std::string> out;
  for (const auto& dir : fixture_cases("t5-"))
    if (fs::exists(dir + "/expected.json")) out.push_back(dir);
  return out;
}

void expect_matches_reference(const std::vector<std::pair<std::string, at::Tensor>>& outputs, const std::string& dir,
                              const json& expected) {
  std::map<std::string, at::Tensor> actual(outputs.begin(), outputs.end());
  auto reference = read_tensors(dir + "/expected.safetensors");
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  int compared = 0;
  for (const auto& [name, want] : reference) {
    if (name.rfind("generate.", 0) == 0 || name.rfind("aux.", 0) == 0) continue;
    ASSERT_TRUE(actual.count(name)) << "output " << name << " not produced";
    EXPECT_TRUE(tensors_close(name, actual[name], want, atol, rtol));
    ++compared;
  }
  EXPECT_GT(compared, 0);
  for (const auto& [name, t] : actual) EXPECT_TRUE(reference.count(name)) << "extra output " << name;
}

// ---- Forward parity: every tensor of expected.safetensors but generate.* and aux.* ----

class T5Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(T5Parity, ForwardMatchesTransformers) {
  std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  auto model = load_case_model(dir, expected);
  EXPECT_TRUE(model->loading_info.missing_keys.empty());
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty());
  expect_matches_reference(run_forward_case(*model, read_case_inputs(dir + "/inputs.json")), dir, expected);
}

INSTANTIATE_TEST_SUITE_P(T5, T5Parity, ::testing::ValuesIn(t5_cases()),
                         [](const auto& info) { return case_name(info.param); });

// ---- generate() parity: ids, sequences_scores and every generate.NAME.* tensor ----

class T5Generate : public ::testing::TestWithParam<GenerateCase> {};

TEST_P(T5Generate, MatchesTransformers) { expect_generate_entry_matches(GetParam()); }

INSTANTIATE_TEST_SUITE_P(T5, T5Generate, ::testing::ValuesIn(generate_cases(t5_cases())),
                         [](const auto& info) { return case_name(info.param.dir) + "_" + info.param.entry; });

std::string extra_case(const std::string& name) { return source_dir() + "/tests/fixtures/hf/" + name; }

// ---- _relative_position_bucket against transformers' values (aux.* of the gated-gelu encoder case) ----

TEST(T5RelativePositionBucket, MatchesTransformers) {
  auto tensors = read_tensors(extra_case("t5-extra-gated-gelu-encoder") + "/expected.safetensors");
  at::Tensor relative_position = tensors.at("aux.relative_position");
  int checked = 0;
  for (bool bidirectional : {true, false})
    for (auto [num_buckets, max_distance] : {std::pair<int64_t, int64_t>{32, 128}, {8, 20}, {6, 10}}) {
      std::string key = std::string("aux.bucket.") + (bidirectional ? "bi" : "uni") + "." +
                        std::to_string(num_buckets) + "." + std::to_string(max_distance);
      at::Tensor got = T5Attention::_relative_position_bucket(relative_position, bidirectional, num_buckets,
                                                              max_distance);
      EXPECT_EQ(got.scalar_type(), at::kLong);
      EXPECT_TRUE(got.equal(tensors.at(key))) << key << "\ngot\n" << got << "\nwant\n" << tensors.at(key);
      EXPECT_GE(got.min().item<int64_t>(), 0);
      EXPECT_LT(got.max().item<int64_t>(), num_buckets);
      ++checked;
    }
  EXPECT_EQ(checked, 6);
}

TEST(T5RelativePositionBucket, EncoderIsBidirectionalDecoderCausal) {
  auto config = std::make_shared<T5Config>();
  config->relative_attention_num_buckets = 8;
  config->relative_attention_max_distance = 20;
  config->num_heads = 2;
  T5Attention encoder_attention(*config, true);
  config->is_decoder = true;
  T5Attention decoder_attention(*config, true);
  // Distinct bias per bucket and head, so that the bias identifies its bucket.
  at::Tensor table = at::arange(16, at::kFloat).view({8, 2});
  encoder_attention.relative_attention_bias->weight.set_data(table.clone());
  decoder_attention.relative_attention_bias->weight.set_data(table.clone());
  at::Tensor enc = encoder_attention.compute_bias(4, 4), dec = decoder_attention.compute_bias(4, 4);
  ASSERT_EQ(enc.sizes(), at::IntArrayRef({1, 2, 4, 4}));
  // Future positions (key > query): own buckets in the encoder, bucket 0 (like distance 0) in the decoder.
  EXPECT_NE(enc[0][0][0][1].item<float>(), enc[0][0][1][0].item<float>());
  EXPECT_EQ(dec[0][0][0][1].item<float>(), dec[0][0][0][0].item<float>());
  // The rows of a cached decode step are the last rows of the full bias.
  EXPECT_TRUE(decoder_attention.compute_bias(1, 4, 3).equal(dec.narrow(2, 3, 1)));
}

// ---- Config ----

TEST(T5ConfigTest, FeedForwardProjAndDefaults) {
  T5Config defaults;
  EXPECT_TRUE(defaults.tie_word_embeddings);
  EXPECT_TRUE(defaults.is_encoder_decoder);
  EXPECT_EQ(defaults.pad_token_id, 0);
  EXPECT_EQ(defaults.dense_act_fn, "relu");
  EXPECT_FALSE(defaults.is_gated_act);

  T5Config gated;
  gated.from_dict({{"model_type", "t5"}, {"feed_forward_proj", "gated-gelu"}, {"num_layers", 3}});
  EXPECT_EQ(gated.dense_act_fn, "gelu_new");
  EXPECT_TRUE(gated.is_gated_act);
  EXPECT_EQ(gated.decoder_layers(), 3) << "num_decoder_layers defaults to num_layers";
  EXPECT_EQ(gated.to_dict()["num_decoder_layers"], 3);
  EXPECT_EQ(gated.get("hidden_size"), 512);
  EXPECT_EQ(gated.get("num_attention_heads"), 8);

  T5Config silu;
  silu.from_dict({{"feed_forward_proj", "gated-silu"}, {"num_decoder_layers", 2}});
  EXPECT_EQ(silu.dense_act_fn, "silu");
  EXPECT_TRUE(silu.is_gated_act);
  EXPECT_EQ(silu.decoder_layers(), 2);

  // Round trip through the diff dict keeps everything.
  T5Config back;
  back.from_dict(silu.to_diff_dict());
  EXPECT_EQ(back.to_dict(), silu.to_dict());

  for (const char* bad : {"gelu-relu", "gated-gelu-new", "gated-nonsense"}) {
    T5Config c;
    EXPECT_THROW(c.from_dict({{"feed_forward_proj", bad}}, "cfg.json"), Error) << bad;
  }
  try {
    T5Config c;
    c.from_dict({{"feed_forward_proj", "gelu-relu"}}, "some/config.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("some/config.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("feed_forward_proj"), std::string::npos) << e.what();
  }
}

std::shared_ptr<T5Config> tiny_config(bool tied = true, const std::string& ff = "relu") {
  auto c = std::make_shared<T5Config>();
  c->from_dict({{"vocab_size", 40}, {"d_model", 16}, {"d_kv", 4}, {"num_heads", 4}, {"d_ff", 20}, {"num_layers", 2},
                {"num_decoder_layers", 3}, {"relative_attention_num_buckets", 8},
                {"relative_attention_max_distance", 16}, {"decoder_start_token_id", 0}, {"feed_forward_proj", ff},
                {"tie_word_embeddings", tied}, {"dropout_rate", 0.0}});
  return c;
}

at::Tensor encoder_ids() { return at::tensor({5, 9, 33, 17, 1, 12, 30, 1, 0, 0}, at::kLong).view({2, 5}); }
at::Tensor encoder_mask() { return at::tensor({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, at::kLong).view({2, 5}); }

// ---- Structure, init, attention implementations ----

TEST(T5Model, KeysAndDeclaredCapabilities) {
  auto model = std::make_shared<T5ForConditionalGeneration>(tiny_config(false, "gated-gelu"));
  std::set<std::string> keys;
  for (const auto& [k, t] : model->state_dict()) keys.insert(k);
  for (const char* key : {"shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                          "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                          "encoder.block.1.layer.1.DenseReluDense.wi_0.weight",
                          "encoder.block.1.layer.1.DenseReluDense.wi_1.weight",
                          "decoder.block.2.layer.1.EncDecAttention.q.weight", "decoder.block.2.layer.2.layer_norm.weight",
                          "decoder.final_layer_norm.weight", "lm_head.weight"})
    EXPECT_TRUE(keys.count(key)) << key;
  EXPECT_FALSE(keys.count("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"));
  EXPECT_FALSE(keys.count("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"));
  EXPECT_EQ(model->decoder->block->size(), 3u);
  EXPECT_TRUE(model->encoder->embed_tokens->weight.is_same(model->shared->weight));
  EXPECT_TRUE(model->decoder->embed_tokens->weight.is_same(model->shared->weight));
  EXPECT_FALSE(model->lm_head->weight.is_same(model->shared->weight));
  EXPECT_EQ(model->_no_split_modules, std::vector<std::string>{"T5Block"});
  EXPECT_TRUE(model->supports_gradient_checkpointing);
  EXPECT_FALSE(model->_supports_sdpa);

  // _init_weights: factor-scaled normals (std of q is (d_model * d_kv)^-0.5), layer norms at factor.
  auto config = tiny_config(true);
  config->d_model = 64;
  config->d_kv = 16;
  config->d_ff = 256;
  config->vocab_size = 400;
  config->initializer_factor = 2.0;
  auto big = std::make_shared<T5ForConditionalGeneration>(config);
  auto& attention = *(*big->encoder->block)[0]->self_attention->SelfAttention;
  EXPECT_NEAR(attention.q->weight.std().item<double>(), 2.0 / std::sqrt(64.0 * 16), 0.01);
  EXPECT_NEAR(attention.k->weight.std().item<double>(), 2.0 / 8.0, 0.02);
  EXPECT_NEAR(attention.o->weight.std().item<double>(), 2.0 / std::sqrt(64.0), 0.02);
  EXPECT_NEAR((*big->encoder->block)[0]->ff->dense_act_dense->wo->weight.std().item<double>(), 2.0 / 16.0, 0.01);
  EXPECT_NEAR(big->shared->weight.std().item<double>(), 2.0, 0.1);
  EXPECT_TRUE(big->encoder->final_layer_norm->weight.eq(2.0).all().item<bool>());
}

TEST(T5Model, OnlyEagerAttention) {
  std::string dir = fixture("t5-for-conditional-generation");
  FromPretrainedOptions options;
  options.attn_implementation = "sdpa";
  EXPECT_THROW(T5ForConditionalGeneration::from_pretrained(dir + "/model", options), ValueError);
  options.attn_implementation = "flash_attention_2";
  EXPECT_THROW(T5ForConditionalGeneration::from_pretrained(dir + "/model", options), ValueError);
  options.attn_implementation = "eager";
  EXPECT_NO_THROW(T5ForConditionalGeneration::from_pretrained(dir + "/model", options));
}

TEST(T5Model, AutoClassesPickT5) {
  std::string dir = fixture("t5-for-conditional-generation") + "/model";
  EXPECT_EQ(AutoConfig::from_pretrained(dir)->model_type(), "t5");
  EXPECT_EQ(AutoModelForSeq2SeqLM::from_pretrained(dir)->class_name, "T5ForConditionalGeneration");
  auto base = AutoModel::from_pretrained(dir);
  EXPECT_EQ(base->class_name, "T5Model");
  EXPECT_EQ(base->loading_info.unexpected_keys, std::vector<std::string>{"lm_head.weight"});
  EXPECT_EQ(class_for_task("t5", "text-encoding"), "T5EncoderModel");
  // A full checkpoint loads into the encoder alone (decoder.* ignored, as _keys_to_ignore_on_load_unexpected).
  auto encoder = T5EncoderModel::from_pretrained(dir);
  EXPECT_TRUE(encoder->loading_info.missing_keys.empty());
  EXPECT_EQ(encoder->loading_info.unexpected_keys, std::vector<std::string>{"lm_head.weight"});
  auto full = T5ForConditionalGeneration::from_pretrained(dir);
  ModelInputs in;
  in.input_ids = encoder_ids().remainder(99);
  in.attention_mask = encoder_mask();
  c10::InferenceMode guard;
  EXPECT_TRUE(encoder->forward(in).last_hidden_state.equal(full->get_encoder()->forward(in).last_hidden_state));
}

// ---- Loss, caches, generation ----

TEST(T5Loss, LabelsShiftRightAndMeanCrossEntropy) {
  auto model = std::make_shared<T5ForConditionalGeneration>(tiny_config());
  model->eval();
  at::Tensor labels = at::tensor({7, 8, 20, 1, 11, 1, -100, -100}, at::kLong).view({2, 4});
  at::Tensor decoder_input_ids = at::tensor({0, 7, 8, 20, 0, 11, 1, 0}, at::kLong).view({2, 4});
  EXPECT_TRUE(model->_shift_right(labels).equal(decoder_input_ids));
  ModelInputs in;
  in.input_ids = encoder_ids();
  in.attention_mask = encoder_mask();
  in.labels = labels;
  ModelOutput out = model->forward(in);
  ASSERT_TRUE(out.loss.defined());
  ModelInputs plain = in;
  plain.labels = at::Tensor();
  plain.decoder_input_ids = decoder_input_ids;
  at::Tensor log_probs = at::log_softmax(model->forward(plain).logits.to(at::kDouble), -1);
  double total = 0;
  int count = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 4; ++t) {
      int64_t label = labels[b][t].item<int64_t>();
      if (label == -100) continue;
      total -= log_probs[b][t][label].item<double>();
      ++count;
    }
  EXPECT_NEAR(out.loss.item<double>(), total / count, 1e-5);

  auto no_start = tiny_config();
  no_start->decoder_start_token_id.reset();
  EXPECT_THROW(std::make_shared<T5ForConditionalGeneration>(no_start)->_shift_right(labels), ValueError);

  // Gradients reach the shared embeddings and the relative attention bias.
  model->train();
  model->forward(in).loss.backward();
  EXPECT_GT(model->shared->weight.grad().abs().sum().item<double>(), 0.0);
  auto& bias = (*model->decoder->block)[0]->self_attention->SelfAttention->relative_attention_bias->weight;
  EXPECT_GT(bias.grad().abs().sum().item<double>(), 0.0);
}

TEST(T5Cache, IncrementalDecodingMatchesFullForward) {
  for (bool tied : {true, false}) {
    auto model = std::make_shared<T5ForConditionalGeneration>(tiny_config(tied, "gated-silu"));
    model->eval();
    c10::InferenceMode guard;
    at::Tensor decoder_ids = at::tensor({0, 4, 9, 22, 3, 0, 30, 30, 6, 8}, at::kLong).view({2, 5});
    ModelInputs full;
    full.input_ids = encoder_ids();
    full.attention_mask = encoder_mask();
    full.decoder_input_ids = decoder_ids;
    at::Tensor want = model->forward(full).logits;

    ModelInputs step = full;
    step.decoder_input_ids = decoder_ids.narrow(1, 0, 2);
    ModelOutput out = model->forward(step);
    auto cache = std::dynamic_pointer_cast<EncoderDecoderCache>(out.past_key_values);
    ASSERT_TRUE(cache);
    EXPECT_EQ(cache->get_seq_length(), 2);
    EXPECT_EQ(cache->cross_attention_cache->get_seq_length(), 5);
    auto encoder_outputs = std::make_shared<ModelOutput>();
    encoder_outputs->last_hidden_state = out.encoder_last_hidden_state;
    for (int64_t t = 2; t < 5; ++t) {
      ModelInputs next;
      next.encoder_outputs = encoder_outputs;
      next.attention_mask = encoder_mask();
      next.decoder_input_ids = decoder_ids.narrow(1, t, 1);
      next.past_key_values = out.past_key_values;
      out = model->forward(next);
      EXPECT_LT(max_abs_diff(out.logits.squeeze(1), want.select(1, t)), 1e-5) << "position " << t;
    }
    EXPECT_EQ(out.past_key_values->get_seq_length(), 5);
    EXPECT_EQ(out.past_key_values->to_legacy_cache()[2].size(), 4u);
  }
}

TEST(T5Generation, GreedyAndBeamStartAtDecoderStart) {
  auto model = std::make_shared<T5ForConditionalGeneration>(tiny_config());
  model->eval();
  GenerationConfig config = model->generation_config;
  EXPECT_EQ(config.decoder_start_token_id, 0);
  config.max_new_tokens = 5;
  ModelInputs kwargs;
  kwargs.attention_mask = encoder_mask();
  GenerateOutput greedy = generate(*model, encoder_ids(), config, kwargs);
  EXPECT_TRUE(greedy.sequences.select(1, 0).eq(0).all().item<bool>());
  config.num_beams = 3;
  config.num_return_sequences = 2;
  GenerateOutput beam = generate(*model, encoder_ids(), config, kwargs);
  EXPECT_EQ(beam.sequences.size(0), 4);
  EXPECT_TRUE(beam.sequences_scores.defined());
}

TEST(T5GradientCheckpointing, SameGradients) {
  auto config = tiny_config(false);
  auto a = std::make_shared<T5ForConditionalGeneration>(config);
  auto b = std::make_shared<T5ForConditionalGeneration>(config);
  b->load_state_dict(a->state_dict(), "a");
  b->gradient_checkpointing_enable();
  a->train();
  b->train();
  ModelInputs in;
  in.input_ids = encoder_ids();
  in.attention_mask = encoder_mask();
  in.labels = at::tensor({7, 8, 20, 1, 11, 1, -100, -100}, at::kLong).view({2, 4});
  at::Tensor la = a->forward(in).loss, lb = b->forward(in).loss;
  EXPECT_NEAR(la.item<double>(), lb.item<double>(), 1e-6);
  la.backward();
  lb.backward();
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& item : pa) {
    at::Tensor ga = item.value().grad(), gb = pb[item.key()].grad();
    ASSERT_EQ(ga.defined(), gb.defined()) << item.key();
    if (ga.defined()) {
      EXPECT_LT(max_abs_diff(ga, gb), 1e-5) << item.key();
    }
  }
}

// ---- Pruning, resizing, save/load ----

TEST(T5Prune, RecordedAndReappliedOnLoad) {
  std::string dir = extra_case("t5-extra-pruned-heads");
  json expected = read_json(dir + "/expected.json");
  auto model = load_case_model(dir, expected);
  std::map<int64_t, std::vector<int64_t>> want;
  for (const auto& [layer, list] : expected["pruned_heads"].items())
    want[std::stoll(layer)] = list.get<std::vector<int64_t>>();
  EXPECT_EQ(model->config->pruned_heads, want);
  auto& encoder = *std::dynamic_pointer_cast<T5EncoderModel>(model)->encoder;
  EXPECT_EQ((*encoder.block)[0]->self_attention->SelfAttention->n_heads, 2);
  EXPECT_EQ((*encoder.block)[2]->self_attention->SelfAttention->q->weight.size(0), 6);
  // Pruning again an already-pruned head changes nothing.
  model->prune_heads({{0, {1}}});
  EXPECT_EQ((*encoder.block)[0]->self_attention->SelfAttention->n_heads, 2);

  auto inputs = read_case_inputs(dir + "/inputs.json");
  auto before = run_forward_case(*model, inputs);
  TempDir tmp;
  model->save_pretrained(tmp.str());
  EXPECT_EQ(read_json(tmp / "config.json")["pruned_heads"], json::parse(R"({"0": [1], "2": [0, 2]})"));
  auto reloaded = T5EncoderModel::from_pretrained(tmp.str());
  EXPECT_TRUE(reloaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(reloaded->loading_info.mismatched_keys.empty());
  expect_matches_reference(run_forward_case(*reloaded, inputs), dir, expected);

  // T5ForConditionalGeneration prunes the encoder's self-attention the same way.
  auto seq2seq = std::make_shared<T5ForConditionalGeneration>(tiny_config());
  seq2seq->prune_heads({{1, {0, 3}}});
  EXPECT_EQ((*seq2seq->encoder->block)[1]->self_attention->SelfAttention->n_heads, 2);
  ModelInputs in;
  in.input_ids = encoder_ids();
  in.attention_mask = encoder_mask();
  in.decoder_input_ids = encoder_ids();
  EXPECT_EQ(seq2seq->forward(in).logits.sizes(), at::IntArrayRef({2, 5, 40}));
  EXPECT_THROW(seq2seq->prune_heads({{7, {0}}}), ValueError);
  EXPECT_THROW(seq2seq->prune_heads({{0, {4}}}), ValueError);
}

TEST(T5Resize, TiedAndUntied) {
  for (bool tied : {true, false}) {
    auto model = std::make_shared<T5ForConditionalGeneration>(tiny_config(tied));
    model->eval();
    at::Tensor old_shared = model->shared->weight.clone(), old_head = model->lm_head->weight.clone();
    model->resize_token_embeddings(45);
    EXPECT_EQ(model->shared->num_embeddings, 45);
    EXPECT_EQ(model->cfg().vocab_size, 45);
    EXPECT_TRUE(model->encoder->embed_tokens->weight.is_same(model->shared->weight));
    EXPECT_TRUE(model->decoder->embed_tokens->weight.is_same(model->shared->weight));
    EXPECT_TRUE(model->shared->weight.narrow(0, 0, 40).equal(old_shared));
    EXPECT_TRUE(at::isfinite(model->shared->weight).all().item<bool>());
    EXPECT_EQ(model->lm_head->weight.size(0), 45);
    if (tied) {
      EXPECT_TRUE(model->lm_head->weight.is_same(model->shared->weight));
    } else {
      EXPECT_FALSE(model->lm_head->weight.is_same(model->shared->weight));
      EXPECT_TRUE(model->lm_head->weight.narrow(0, 0, 40).equal(old_head));
      EXPECT_TRUE(at::isfinite(model->lm_head->weight).all().item<bool>());
    }
    ModelInputs in;
    in.input_ids = at::where(encoder_mask().eq(1), at::full({2, 5}, 43, at::kLong), encoder_ids());  // new ids
    in.attention_mask = encoder_mask();
    in.decoder_input_ids = at::full({2, 3}, 44, at::kLong);
    ModelOutput out = model->forward(in);
    EXPECT_EQ(out.logits.sizes(), at::IntArrayRef({2, 3, 45}));

    TempDir tmp;
    model->save_pretrained(tmp.str());
    auto reloaded = T5ForConditionalGeneration::from_pretrained(tmp.str());
    EXPECT_TRUE(reloaded->loading_info.missing_keys.empty());
    EXPECT_TRUE(reloaded->forward(in).logits.equal(out.logits)) << "tied " << tied;
  }
}

TEST(T5SaveLoad, RoundTripEveryClass) {
  TempDir tmp;
  for (const std::string cls : {"T5Model", "T5ForConditionalGeneration", "T5EncoderModel"}) {
    auto model = model_from_config(tiny_config(false, "gated-gelu"), cls);
    model->eval();
    model->save_pretrained(tmp / cls);
    json saved = read_json(tmp / cls + "/config.json");
    EXPECT_EQ(saved["feed_forward_proj"], "gated-gelu");
    EXPECT_EQ(saved["dense_act_fn"], "gelu_new");
    EXPECT_EQ(saved["is_gated_act"], true);
    EXPECT_EQ(saved["num_decoder_layers"], 3);
    auto reloaded = model_from_pretrained(tmp / cls, cls);
    EXPECT_TRUE(reloaded->loading_info.missing_keys.empty()) << cls;
    EXPECT_TRUE(reloaded->loading_info.unexpected_keys.empty()) << cls;
    ModelInputs in;
    in.input_ids = encoder_ids();
    in.attention_mask = encoder_mask();
    if (cls != "T5EncoderModel") in.decoder_input_ids = encoder_ids();
    in.output_hidden_states = true;
    auto a = model->forward(in).named_tensors(), b = reloaded->forward(in).named_tensors();
    ASSERT_EQ(a.size(), b.size()) << cls;
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second.equal(b[i].second)) << cls << " " << a[i].first;
  }
}

// ---- Bad input ----

TEST(T5BadInput, TypedErrors) {
  auto model = std::make_shared<T5ForConditionalGeneration>(tiny_config());
  ModelInputs none;
  EXPECT_THROW(model->forward(none), ValueError);
  ModelInputs out_of_vocab;
  out_of_vocab.input_ids = at::full({1, 3}, 40, at::kLong);
  out_of_vocab.decoder_input_ids = at::zeros({1, 1}, at::kLong);
  EXPECT_THROW(model->forward(out_of_vocab), ValueError);
  ModelInputs bad_mask;
  bad_mask.input_ids = encoder_ids();
  bad_mask.attention_mask = at::ones({2, 7}, at::kLong);
  bad_mask.decoder_input_ids = at::zeros({2, 1}, at::kLong);
  EXPECT_THROW(model->forward(bad_mask), ValueError);
  ModelInputs bad_head_mask;
  bad_head_mask.input_ids = encoder_ids();
  bad_head_mask.decoder_input_ids = at::zeros({2, 1}, at::kLong);
  bad_head_mask.head_mask = at::ones({5, 4});
  EXPECT_THROW(model->forward(bad_head_mask), ValueError);

  TempDir tmp;
  model->save_pretrained(tmp.str());
  json config = read_json(tmp / "config.json");
  config["feed_forward_proj"] = "gated-gelu-extra";
  std::ofstream(tmp / "config.json") << config.dump();
  try {
    T5ForConditionalGeneration::from_pretrained(tmp.str());
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

// ---- Command line ----

std::string tfcpp(const std::string& args) { return tfcpp_bin() + " " + args + " 2>&1"; }

json first_json(const std::string& output) {
  size_t start = output.find('{');
  return json::parse(output.substr(start, output.find('\n', start) - start));
}

TEST(T5Cli, Text2TextGreedyMatchesTransformers) {
  std::string dir = fixture("t5-for-conditional-generation");
  json expected = read_json(dir + "/expected.json");
  // The fixture's greedy entry: two inputs, the second right-padded, 8 new tokens.
  auto [rc, output] = run_command(tfcpp("text2text --model " + dir +
                                        "/model --ids \"94 98 13 92 2 20 1; 3 42 48 71 1\" --max-new-tokens 8 --json"));
  ASSERT_EQ(rc, 0) << output;
  EXPECT_EQ(first_json(output)["sequences"], expected["generate"]["greedy"]["ids"]);
}

TEST(T5Cli, Text2TextBeamAndGenerateContract) {
  std::string dir = extra_case("t5-extra-beam-padding");
  json expected = read_json(dir + "/expected.json");
  auto [rc, output] = run_command(tfcpp("text2text --model " + dir +
                                        "/model --ids \"5 17 33 9 41 12 23 8 1; 7 28 44 1\" --num-beams 3 "
                                        "--num-return-sequences 2 --length-penalty 0.8 --max-new-tokens 6 --json"));
  ASSERT_EQ(rc, 0) << output;
  EXPECT_EQ(first_json(output)["sequences"], expected["generate"]["beam_nrs2"]["ids"]);
  auto [code, out] = run_command(tfcpp("generate --model " + dir + "/model --class T5ForConditionalGeneration --inputs " +
                                       dir + "/inputs.json --name greedy --json"));
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(first_json(out)["sequences"], expected["generate"]["greedy"]["ids"]);
}

}  // namespace
