// BlenderbotSmall parity against transformers 4.40.2 fixtures (shared and repo-made), encoder-decoder generate(), the
// seq2seq loss, caches, save/load and bad input.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/models/blenderbot_small.h"
#include "transformers/tokenizer.h"

#include <c10/core/InferenceMode.h>

#include <filesystem>

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

// ---- Forward parity: every tensor of expected.safetensors but generate.* and aux.* ----

class BlenderbotSmallParity : public ::testing::TestWithParam<std::string> {};

TEST_P(BlenderbotSmallParity, ForwardMatchesTransformers) {
  std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  auto model = load_case_model(dir, expected);
  EXPECT_TRUE(model->loading_info.missing_keys.empty());
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty());
  auto outputs = run_forward_case(*model, read_case_inputs(dir + "/inputs.json"));
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
  // Nothing produced that transformers did not return.
  for (const auto& [name, t] : actual) EXPECT_TRUE(reference.count(name)) << "extra output " << name;
}

INSTANTIATE_TEST_SUITE_P(BlenderbotSmall, BlenderbotSmallParity,
                         ::testing::ValuesIn(fixture_cases("blenderbot-small-")),
                         [](const auto& info) { return case_name(info.param); });

// ---- generate() parity: ids, sequences_scores, and every generate.NAME.* tensor (scores, beam_indices, per-step
// attentions and hidden states) through run_generate_case, the path of `tfcpp generate --inputs` ----

class BlenderbotSmallGenerate : public ::testing::TestWithParam<GenerateCase> {};

TEST_P(BlenderbotSmallGenerate, MatchesTransformers) { expect_generate_entry_matches(GetParam()); }

INSTANTIATE_TEST_SUITE_P(BlenderbotSmall, BlenderbotSmallGenerate,
                         ::testing::ValuesIn(generate_cases(fixture_cases("blenderbot-small-"))),
                         [](const auto& info) { return case_name(info.param.dir) + "_" + info.param.entry; });

// ---- Hand-made checks on tiny random models ----

std::shared_ptr<BlenderbotSmallConfig> tiny_config(bool tie = true) {
  auto config = std::make_shared<BlenderbotSmallConfig>();
  config->vocab_size = 41;
  config->d_model = 16;
  config->encoder_layers = 2;
  config->decoder_layers = 2;
  config->encoder_attention_heads = 4;
  config->decoder_attention_heads = 2;
  config->encoder_ffn_dim = 24;
  config->decoder_ffn_dim = 20;
  config->max_position_embeddings = 32;
  config->init_std = 0.2;
  config->tie_word_embeddings = tie;
  config->post_read("tiny config");
  return config;
}

at::Tensor encoder_ids() { return at::tensor({5, 9, 33, 17, 2, 12, 30, 2, 0, 0}, at::kLong).view({2, 5}); }
at::Tensor encoder_mask() { return at::tensor({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, at::kLong).view({2, 5}); }

TEST(BlenderbotSmallLoss, Seq2SeqLossIsMeanCrossEntropyOfShiftedLabels) {
  auto model = std::make_shared<BlenderbotSmallForConditionalGeneration>(tiny_config());
  model->eval();
  at::Tensor labels = at::tensor({7, 8, 20, 2, 11, 2, -100, -100}, at::kLong).view({2, 4});
  ModelInputs in;
  in.input_ids = encoder_ids();
  in.attention_mask = encoder_mask();
  in.labels = labels;
  ModelOutput out = model->forward(in);
  ASSERT_TRUE(out.loss.defined());
  EXPECT_FALSE(out.past_key_values) << "labels turn use_cache off";

  // By hand: decoder inputs are the labels shifted right, starting with decoder_start_token_id, -100 -> pad.
  at::Tensor decoder_input_ids = at::tensor({1, 7, 8, 20, 1, 11, 2, 0}, at::kLong).view({2, 4});
  EXPECT_TRUE(shift_tokens_right(labels, 0, 1).equal(decoder_input_ids));
  ModelInputs plain;
  plain.input_ids = encoder_ids();
  plain.attention_mask = encoder_mask();
  plain.decoder_input_ids = decoder_input_ids;
  at::Tensor logits = model->forward(plain).logits.to(at::kDouble);
  at::Tensor log_probs = at::log_softmax(logits, -1);
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

  // The gradients reach the shared embeddings through encoder, decoder and the tied head.
  auto dropout_free = tiny_config();
  dropout_free->dropout = 0.0;
  auto trained = std::make_shared<BlenderbotSmallForConditionalGeneration>(dropout_free);
  trained->train();
  ModelOutput train_out = trained->forward(in);
  train_out.loss.backward();
  EXPECT_TRUE(trained->lm_head->weight.is_same(trained->model->shared->weight));
  EXPECT_GT(trained->model->shared->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(trained->model->encoder->layers->operator[](0)->fc1->weight.grad().abs().sum().item<double>(), 0.0);
}

TEST(BlenderbotSmallLoss, ShiftTokensRightNeedsPadToken) {
  EXPECT_THROW(shift_tokens_right(at::ones({1, 3}, at::kLong), std::nullopt, 1), ValueError);
}

TEST(BlenderbotSmallCache, IncrementalDecodingMatchesFullForward) {
  auto model = std::make_shared<BlenderbotSmallForConditionalGeneration>(tiny_config(false));
  model->eval();
  c10::InferenceMode guard;
  at::Tensor decoder_ids = at::tensor({1, 4, 9, 22, 3, 1, 30, 30, 6, 8}, at::kLong).view({2, 5});
  ModelInputs full;
  full.input_ids = encoder_ids();
  full.attention_mask = encoder_mask();
  full.decoder_input_ids = decoder_ids;
  at::Tensor want = model->forward(full).logits;

  ModelInputs step;
  step.input_ids = encoder_ids();
  step.attention_mask = encoder_mask();
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
  EXPECT_EQ(out.past_key_values->to_legacy_cache()[1].size(), 4u);
}

TEST(BlenderbotSmallCache, BeamReorderKeepsCrossAttentionStates) {
  auto model = std::make_shared<BlenderbotSmallForConditionalGeneration>(tiny_config());
  EncoderDecoderCache cache;
  at::Tensor self_k = at::arange(2 * 3 * 2 * 4, at::kFloat).view({2, 3, 2, 4});
  at::Tensor cross_k = at::arange(2 * 3 * 5 * 4, at::kFloat).view({2, 3, 5, 4});
  cache.update(self_k, self_k, 0);
  cache.cross_attention_cache->update(cross_k, cross_k, 0);
  model->_reorder_cache(cache, at::tensor({1, 1}, at::kLong));
  auto legacy = cache.to_legacy_cache();
  EXPECT_TRUE(legacy[0][0].equal(self_k.index_select(0, at::tensor({1, 1}, at::kLong))));
  EXPECT_TRUE(legacy[0][2].equal(cross_k)) << "cross-attention states are not reordered";
}

TEST(BlenderbotSmallGeneration, PrecomputedEncoderOutputsGiveTheSameIds) {
  at::manual_seed(0);  // random weights: independent of what earlier tests drew
  auto model = std::make_shared<BlenderbotSmallForConditionalGeneration>(tiny_config());
  model->eval();
  GenerationConfig config = model->generation_config;
  EXPECT_EQ(config.forced_eos_token_id, 2);
  EXPECT_EQ(config.decoder_start_token_id, 1);
  config.max_new_tokens = 5;
  // No sampled EOS before the forced one (random weights may well pick token 2 early and stop the batch).
  config.min_new_tokens = 4;
  ModelInputs kwargs;
  kwargs.attention_mask = encoder_mask();
  GenerateOutput direct = generate(*model, encoder_ids(), config, kwargs);
  EXPECT_EQ(direct.sequences.size(1), 6);
  EXPECT_TRUE(direct.sequences.select(1, 0).eq(1).all().item<bool>()) << "starts with decoder_start_token_id";
  EXPECT_TRUE(direct.sequences.select(1, 5).eq(2).all().item<bool>()) << "forced_eos_token_id at max_length";

  ModelInputs encoder_in;
  encoder_in.input_ids = encoder_ids();
  encoder_in.attention_mask = encoder_mask();
  ModelInputs precomputed;
  {
    c10::InferenceMode guard;
    precomputed.encoder_outputs = std::make_shared<ModelOutput>(model->get_encoder()->forward(encoder_in));
  }
  precomputed.attention_mask = encoder_mask();
  GenerateOutput reused = generate(*model, at::Tensor(), config, precomputed);
  EXPECT_TRUE(reused.sequences.equal(direct.sequences)) << reused.sequences << "\n" << direct.sequences;

  // Beam search expands the encoder outputs per beam; several sequences per input come back.
  config.num_beams = 3;
  config.num_return_sequences = 2;
  GenerateOutput beams = generate(*model, encoder_ids(), config, kwargs);
  EXPECT_EQ(beams.sequences.size(0), 4);
  EXPECT_EQ(beams.sequences_scores.size(0), 4);
}

TEST(BlenderbotSmallGeneration, DecoderPromptAndStartToken) {
  auto model = std::make_shared<BlenderbotSmallForConditionalGeneration>(tiny_config());
  model->eval();
  GenerationConfig config = model->generation_config;
  config.max_new_tokens = 3;
  ModelInputs kwargs;
  kwargs.attention_mask = encoder_mask();
  kwargs.decoder_input_ids = at::tensor({1, 7, 1, 9}, at::kLong).view({2, 2});
  // Rows already starting with decoder_start_token_id are kept as they are.
  GenerateOutput out = generate(*model, encoder_ids(), config, kwargs);
  EXPECT_EQ(out.sequences.size(1), 5);
  EXPECT_TRUE(out.sequences.narrow(1, 0, 2).equal(kwargs.decoder_input_ids));
  // Without any start token configured, generate says what is missing.
  config.decoder_start_token_id.reset();
  config.bos_token_id.reset();
  model->generation_config.decoder_start_token_id.reset();
  model->generation_config.bos_token_id.reset();
  kwargs.decoder_input_ids = at::Tensor();
  try {
    generate(*model, encoder_ids(), config, kwargs);
    ADD_FAILURE() << "no exception";
  } catch (const GenerationError& e) {
    EXPECT_NE(std::string(e.what()).find("decoder_start_token_id"), std::string::npos) << e.what();
  }
}

TEST(BlenderbotSmallHeadMask, MaskedHeadsChangeTheOutput) {
  auto model = std::make_shared<BlenderbotSmallModel>(tiny_config());
  model->eval();
  c10::InferenceMode guard;
  ModelInputs in;
  in.input_ids = encoder_ids();
  in.attention_mask = encoder_mask();
  in.decoder_input_ids = at::tensor({1, 4, 9, 1, 30, 6}, at::kLong).view({2, 3});
  in.output_attentions = true;
  at::Tensor plain = model->forward(in).last_hidden_state;
  in.head_mask = at::ones({2, 4});
  in.decoder_head_mask = at::ones({2, 2});
  in.cross_attn_head_mask = at::ones({2, 2});
  EXPECT_EQ(max_abs_diff(model->forward(in).last_hidden_state, plain), 0.0);
  in.cross_attn_head_mask[1][0] = 0.0;
  ModelOutput masked = model->forward(in);
  EXPECT_GT(max_abs_diff(masked.last_hidden_state, plain), 1e-4);
  EXPECT_EQ(masked.cross_attentions[1].select(1, 0).abs().max().item<double>(), 0.0);
  in.head_mask = at::ones({3, 4});
  EXPECT_THROW(model->forward(in), ValueError);
}

TEST(BlenderbotSmallResize, FinalLogitsBiasFollowsTheVocabulary) {
  auto model = std::make_shared<BlenderbotSmallForConditionalGeneration>(tiny_config());
  model->eval();
  model->final_logits_bias.normal_();
  at::Tensor old_bias = model->final_logits_bias.clone();
  model->resize_token_embeddings(45);
  EXPECT_EQ(model->final_logits_bias.sizes(), at::IntArrayRef({1, 45}));
  EXPECT_TRUE(at::equal(model->final_logits_bias.narrow(1, 0, 41), old_bias));
  EXPECT_EQ(model->final_logits_bias.narrow(1, 41, 4).abs().max().item<double>(), 0.0);
  EXPECT_TRUE(model->model->encoder->embed_tokens->weight.is_same(model->model->shared->weight));
  EXPECT_TRUE(model->lm_head->weight.is_same(model->model->shared->weight));
  bool bias_in_state_dict = false;
  for (const auto& [name, t] : model->state_dict())
    if (name == "final_logits_bias") bias_in_state_dict = t.size(1) == 45;
  EXPECT_TRUE(bias_in_state_dict);
  c10::InferenceMode guard;
  ModelInputs in;
  in.input_ids = encoder_ids();
  in.decoder_input_ids = at::tensor({1, 44}, at::kLong).view({1, 2}).expand({2, 2}).contiguous();
  EXPECT_EQ(model->forward(in).logits.size(-1), 45);
  model->resize_token_embeddings(39);
  EXPECT_TRUE(at::equal(model->final_logits_bias, old_bias.narrow(1, 0, 39)));
}

TEST(BlenderbotSmallTraining, GradientCheckpointingGivesTheSameGradients) {
  auto config = tiny_config();
  config->dropout = 0.0;
  auto plain = std::make_shared<BlenderbotSmallForConditionalGeneration>(config);
  auto checkpointed = std::make_shared<BlenderbotSmallForConditionalGeneration>(config);
  checkpointed->load_state_dict(plain->state_dict(), "plain model");
  checkpointed->gradient_checkpointing_enable();
  ModelInputs in;
  in.input_ids = encoder_ids();
  in.attention_mask = encoder_mask();
  in.labels = at::tensor({7, 8, 20, 2, 11, 2, -100, -100}, at::kLong).view({2, 4});
  for (auto* model : {plain.get(), checkpointed.get()}) {
    model->train();
    model->forward(in).loss.backward();
  }
  auto reference = plain->state_dict();
  auto actual = checkpointed->state_dict();
  for (size_t i = 0; i < reference.size(); ++i) {
    if (!reference[i].second.requires_grad()) continue;
    ASSERT_TRUE(actual[i].second.grad().defined()) << actual[i].first;
    EXPECT_LT(max_abs_diff(actual[i].second.grad(), reference[i].second.grad()), 1e-6) << reference[i].first;
  }
}

// ---- Save / load ----

TEST(BlenderbotSmallConfig, DefaultsAndAliasesFollowTransformers) {
  BlenderbotSmallConfig config;
  json dict = config.to_dict();
  EXPECT_EQ(dict["num_hidden_layers"], 8) << "num_hidden_layers follows encoder_layers";
  EXPECT_EQ(dict["forced_eos_token_id"], 2);
  EXPECT_EQ(dict["decoder_start_token_id"], 1);
  EXPECT_EQ(dict["is_encoder_decoder"], true);
  EXPECT_EQ(config.get("hidden_size"), 512);
  EXPECT_EQ(config.get("num_attention_heads"), 16);
  BlenderbotSmallConfig read;
  read.from_dict({{"hidden_size", 64}, {"num_attention_heads", 8}, {"encoder_layers", 3}}, "test.json");
  EXPECT_EQ(read.d_model, 64);
  EXPECT_EQ(read.encoder_attention_heads, 8);
  EXPECT_EQ(read.num_hidden_layers, 3);
}

TEST(BlenderbotSmallSaveLoad, SharedEmbeddingsAreStoredOnce) {
  TempDir tmp;
  auto model = std::make_shared<BlenderbotSmallForConditionalGeneration>(tiny_config());
  EXPECT_TRUE(model->model->encoder->embed_tokens->weight.is_same(model->model->shared->weight));
  EXPECT_TRUE(model->model->decoder->embed_tokens->weight.is_same(model->model->shared->weight));
  EXPECT_TRUE(model->lm_head->weight.is_same(model->model->shared->weight));
  model->final_logits_bias.normal_();
  model->save_pretrained(tmp.str());
  safetensors::SafeOpen file(tmp / "model.safetensors");
  EXPECT_TRUE(file.contains("model.shared.weight"));
  EXPECT_TRUE(file.contains("final_logits_bias"));
  for (const char* tied : {"lm_head.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"})
    EXPECT_FALSE(file.contains(tied)) << tied;
  json config = read_json(tmp / "config.json");
  EXPECT_EQ(config["model_type"], "blenderbot-small");
  EXPECT_EQ(config["forced_eos_token_id"], 2);
  EXPECT_EQ(config["num_hidden_layers"], 2);
  EXPECT_FALSE(config.contains("hidden_size")) << "attribute_map aliases are not written";

  auto loaded = AutoModelForSeq2SeqLM::from_pretrained(tmp.str());
  EXPECT_EQ(loaded->class_name, "BlenderbotSmallForConditionalGeneration");
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(loaded->loading_info.unexpected_keys.empty());
  EXPECT_EQ(loaded->config->get("hidden_size"), 16);
  EXPECT_EQ(loaded->config->get("num_attention_heads"), 4);
  auto typed = std::dynamic_pointer_cast<BlenderbotSmallForConditionalGeneration>(loaded);
  EXPECT_TRUE(typed->lm_head->weight.is_same(typed->model->shared->weight));
  EXPECT_TRUE(at::equal(typed->final_logits_bias, model->final_logits_bias));
  c10::InferenceMode guard;
  ModelInputs in;
  in.input_ids = encoder_ids();
  in.decoder_input_ids = at::tensor({1, 5, 1, 6}, at::kLong).view({2, 2});
  model->eval();
  EXPECT_EQ(max_abs_diff(model->forward(in).logits, loaded->forward(in).logits), 0.0);
}

TEST(BlenderbotSmallSaveLoad, BaseCheckpointIntoHeadsAndBack) {
  TempDir tmp;
  auto base = std::make_shared<BlenderbotSmallModel>(tiny_config(false));
  base->save_pretrained(tmp.str());
  auto head = BlenderbotSmallForConditionalGeneration::from_pretrained(tmp.str());
  // final_logits_bias is in _keys_to_ignore_on_load_missing.
  EXPECT_EQ(head->loading_info.missing_keys, std::vector<std::string>{"lm_head.weight"});
  EXPECT_TRUE(at::equal(head->model->shared->weight, base->shared->weight));
  // The decoder-only class takes the decoder and leaves the encoder unused.
  auto causal = BlenderbotSmallForCausalLM::from_pretrained(tmp.str());
  EXPECT_TRUE(at::equal(causal->model->decoder->layers->operator[](1)->fc2->weight,
                        base->decoder->layers->operator[](1)->fc2->weight));
  EXPECT_FALSE(causal->loading_info.unexpected_keys.empty());
  EXPECT_TRUE(causal->config->is_decoder);
  EXPECT_FALSE(causal->config->is_encoder_decoder);
  EXPECT_TRUE(base->config->is_encoder_decoder) << "ForCausalLM works on a copy of the config";
}

// ---- Bad input ----

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

TEST(BlenderbotSmallBadInput, ConfigErrors) {
  TempDir tmp;
  fs::copy(fixture("blenderbot-small-model") + "/model", tmp / "m", fs::copy_options::recursive);
  json config = read_json(tmp / "m/config.json");
  config["decoder_attention_heads"] = 5;
  write_json_file(config, tmp / "m/config.json");
  expect_error<ConfigError>([&] { AutoModel::from_pretrained(tmp / "m"); },
                            {"config.json", "d_model (32)", "decoder_attention_heads (5)"});
  config["decoder_attention_heads"] = 4;
  config["activation_function"] = "sparkle";
  write_json_file(config, tmp / "m/config.json");
  expect_error<ValueError>([&] { AutoModel::from_pretrained(tmp / "m"); }, {"sparkle"});
}

TEST(BlenderbotSmallBadInput, SdpaIsNotSupported) {
  FromPretrainedOptions options;
  options.attn_implementation = "sdpa";
  expect_error<ValueError>(
      [&] { AutoModel::from_pretrained(fixture("blenderbot-small-model") + "/model", options); },
      {"scaled_dot_product_attention", "eager"});
}

TEST(BlenderbotSmallBadInput, ForwardArguments) {
  auto model = std::make_shared<BlenderbotSmallForConditionalGeneration>(tiny_config());
  model->eval();
  c10::InferenceMode guard;
  ModelInputs in;
  in.input_ids = encoder_ids();
  expect_error<ValueError>([&] { model->forward(in); }, {"decoder_input_ids"});
  in.decoder_input_ids = at::ones({2, 40}, at::kLong);
  expect_error<ValueError>([&] { model->forward(in); }, {"max_position_embeddings (32)"});
  in.decoder_input_ids = at::ones({2, 3}, at::kLong);
  in.attention_mask = at::ones({2, 4}, at::kLong);
  expect_error<ValueError>([&] { model->forward(in); }, {"attention_mask"});
  in.attention_mask = at::Tensor();
  in.labels = at::ones({2, 4}, at::kLong);
  in.decoder_input_ids = at::Tensor();
  in.decoder_attention_mask = at::ones({2, 3}, at::kLong);
  expect_error<ValueError>([&] { model->forward(in); }, {"decoder attention_mask", "[2, 4]"});
}

// ---- Command line: the fixture contract and text2text ----

std::string tfcpp(const std::string& args) { return tfcpp_bin() + " " + args + " 2>&1"; }

TEST(BlenderbotSmallCli, ForwardAndGenerateFollowTheFixtureContract) {
  TempDir tmp;
  std::string dir = fixture("blenderbot-small-for-conditional-generation");
  auto [rc, output] = run_command(tfcpp("forward --model " + dir +
                                        "/model --class BlenderbotSmallForConditionalGeneration"
                                        " --inputs " +
                                        dir + "/inputs.json --out " + tmp / "out.safetensors"));
  ASSERT_EQ(rc, 0) << output;
  auto actual = read_tensors(tmp / "out.safetensors");
  for (const auto& [name, want] : read_tensors(dir + "/expected.safetensors")) {
    if (name.rfind("generate.", 0) == 0) continue;
    ASSERT_TRUE(actual.count(name)) << name;
    EXPECT_TRUE(tensors_close(name, actual[name], want, 1e-4, 1e-4));
  }
  json expected = read_json(dir + "/expected.json");
  for (const char* name : {"greedy", "beam"}) {
    auto [code, out] = run_command(tfcpp("generate --model " + dir + "/model --inputs " + dir + "/inputs.json --name " +
                                         name + " --json"));
    ASSERT_EQ(code, 0) << out;
    size_t start = out.find('{');
    json got = json::parse(out.substr(start, out.find('\n', start) - start));
    EXPECT_EQ(got["sequences"], expected["generate"][name]["ids"]) << name;
  }
}

TEST(BlenderbotSmallCli, Text2TextFromIds) {
  std::string dir = fixture("blenderbot-small-for-conditional-generation");
  json expected = read_json(dir + "/expected.json");
  // The fixture's beam entry: two inputs (the second right-padded), 3 beams, 8 new tokens.
  auto [rc, output] = run_command(tfcpp("text2text --model " + dir +
                                        "/model --ids \"43 39 48 86 21 82 2; 94 32 14 90 2\""
                                        " --num-beams 3 --max-new-tokens 8 --json"));
  ASSERT_EQ(rc, 0) << output;
  size_t start = output.find('{');
  json got = json::parse(output.substr(start, output.find('\n', start) - start));
  EXPECT_EQ(got["sequences"], expected["generate"]["beam"]["ids"]);
  EXPECT_FALSE(got.contains("text"));
  auto [rc2, plain] =
      run_command(tfcpp_bin() + " text2text --model " + dir + "/model --ids 43,39,48,86,21,82,2 -n 8 2>/dev/null");
  ASSERT_EQ(rc2, 0) << plain;
  EXPECT_EQ(plain.substr(0, plain.find('\n')), "1 64 26 55 37 37 37 37 2");
}

TEST(BlenderbotSmallCli, Text2TextFromTextWithTokenizer) {
  TempDir tmp;
  const std::string tokenizer_dir = shared_dir() + "/fixtures/tokenizers/llama-metaspace-bpe";
  Tokenizer tokenizer = Tokenizer::from_pretrained(tokenizer_dir);
  auto config = tiny_config();
  config->vocab_size = tokenizer.vocab_size();
  std::make_shared<BlenderbotSmallForConditionalGeneration>(config)->save_pretrained(tmp / "m");
  fs::copy_file(tokenizer_dir + "/tokenizer.json", tmp / "m/tokenizer.json");
  const std::string text = "The quick brown fox jumps over the lazy dog.";
  auto parse = [](const std::string& output) {
    size_t start = output.find('{');
    return json::parse(output.substr(start, output.find('\n', start) - start));
  };
  auto [rc, output] = run_command(tfcpp("text2text --model " + tmp / "m" + " --text \"" + text + "\" -n 6 --json"));
  ASSERT_EQ(rc, 0) << output;
  json from_text = parse(output);
  // The same as encoding by hand and passing the ids.
  std::string ids;
  for (int64_t id : tokenizer.encode(text)) ids += std::to_string(id) + " ";
  std::tie(rc, output) = run_command(tfcpp("text2text --model " + tmp / "m" + " --ids \"" + ids + "\" -n 6 --json"));
  ASSERT_EQ(rc, 0) << output;
  json from_ids = parse(output);
  EXPECT_EQ(from_text["sequences"], from_ids["sequences"]);
  ASSERT_EQ(from_text["text"].size(), 1u);
  EXPECT_EQ(from_text["text"][0], tokenizer.decode(from_text["sequences"][0].get<std::vector<int64_t>>(), true));
}

TEST(BlenderbotSmallCli, Text2TextErrors) {
  std::string model = fixture("blenderbot-small-for-conditional-generation") + "/model";
  auto [rc, output] = run_command(tfcpp("text2text --model " + model + " --text \"hello there\""));
  EXPECT_EQ(rc, 1) << output;
  EXPECT_NE(output.find("tokenizer.json"), std::string::npos) << output;
  EXPECT_NE(output.find("--ids"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("text2text --model " + model + " --ids \"5 x 7\""));
  EXPECT_EQ(rc, 1) << output;
  EXPECT_NE(output.find("'x'"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("text2text --model " + model + " --ids \"5 700\""));
  EXPECT_EQ(rc, 1) << output;
  EXPECT_NE(output.find("700"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("text2text --model " + model));
  EXPECT_EQ(rc, 2) << output;
  std::tie(rc, output) = run_command(tfcpp("text2text --model " + fixture("blenderbot-small-for-causal-lm") +
                                           "/model --ids \"5 7\""));
  EXPECT_EQ(rc, 1) << output;
  EXPECT_NE(output.find("encoder-decoder"), std::string::npos) << output;
}

}  // namespace
