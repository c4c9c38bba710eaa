// Clvp parity against transformers 4.40.2 (shared clvp-* fixtures and the repo's clvp-extra-* cases), the nested
// config, ClvpFeatureExtractor and the WAV reader against the oracle, save/load, bad input and the CLI contract.
#include "test_util.h"

#include "transformers/audio.h"
#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/models/clvp.h"

#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;
using namespace transformers;
using namespace tfcpp_test;

namespace {

// Model cases (a model/ folder); the feature extractor case has none.
std::vector<std::string> model_cases() {
  std::vector<std::string> out;
  for (const auto& dir : fixture_cases("clvp-"))
    if (fs::exists(fs::path(dir) / "model" / "config.json")) out.push_back(dir);
  return out;
}

std::string case_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = fs::path(info.param).filename().string();
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

std::shared_ptr<PreTrainedModel> load_case_model(const std::string& dir, const json& expected) {
  return model_from_pretrained(dir + "/model", expected["class"].get<std::string>());
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::string fmt_keys(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
  return out;
}

class ClvpParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ClvpParity, ForwardMatchesTransformers) {
  std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  auto model = load_case_model(dir, expected);
  EXPECT_TRUE(model->loading_info.missing_keys.empty()) << fmt_keys(model->loading_info.missing_keys);
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty()) << fmt_keys(model->loading_info.unexpected_keys);
  auto outputs = run_forward_case(*model, read_case_inputs(dir + "/inputs.json"));
  std::map<std::string, at::Tensor> actual(outputs.begin(), outputs.end());
  auto reference = read_tensors(dir + "/expected.safetensors");
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  int compared = 0;
  double worst = 0.0;
  for (const auto& [name, want] : reference) {
    if (starts_with(name, "generate.") || starts_with(name, "aux.")) continue;
    ASSERT_TRUE(actual.count(name)) << "output " << name << " not produced";
    EXPECT_TRUE(tensors_close(name, actual[name], want, atol, rtol));
    if (actual[name].sizes() == want.sizes()) worst = std::max(worst, max_abs_diff(actual[name], want));
    ++compared;
  }
  EXPECT_GT(compared, 0);
  std::cout << fs::path(dir).filename().string() << ": " << compared << " outputs, max|diff| " << worst << "\n";
}

TEST_P(ClvpParity, GenerateMatchesTransformers) {
  std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  json inputs = read_case_inputs(dir + "/inputs.json");
  auto reference = read_tensors(dir + "/expected.safetensors");
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  int entries = 0;
  for (auto& [name, entry] : expected["generate"].items()) {
    SCOPED_TRACE("generate entry " + name);
    auto model = load_case_model(dir, expected);  // a fresh model per entry, as the reference
    GenerateOutput out = run_generate_case(*model, inputs, name);
    auto named = out.named_tensors();
    std::map<std::string, at::Tensor> actual(named.begin(), named.end());
    // The exact ids, in the field the case names (sequences, or speech_ids for ClvpModelForConditionalGeneration).
    std::string ids_field = entry["ids_field"].get<std::string>();
    ASSERT_TRUE(actual.count(ids_field)) << ids_field << " not produced";
    EXPECT_EQ(tensor_to_json(actual[ids_field]), entry["ids"]);
    const std::string prefix = "generate." + name + ".";
    int compared = 0;
    double worst = 0.0;
    for (const auto& [key, want] : reference) {
      if (!starts_with(key, prefix)) continue;
      std::string field = key.substr(prefix.size());
      ASSERT_TRUE(actual.count(field)) << "generate output " << field << " not produced";
      if (want.scalar_type() == at::kLong) {
        EXPECT_TRUE(at::equal(actual[field], want)) << field;
      } else {
        EXPECT_TRUE(tensors_close(key, actual[field], want, atol, rtol));
        if (actual[field].sizes() == want.sizes()) worst = std::max(worst, max_abs_diff(actual[field], want));
      }
      ++compared;
    }
    EXPECT_GT(compared, 0);
    std::cout << fs::path(dir).filename().string() << " generate " << name << ": " << compared
              << " outputs, ids exact, max|diff| " << worst << "\n";
    ++entries;
  }
  if (entries == 0) {
    EXPECT_TRUE(expected["generate"].empty());
  }
}

INSTANTIATE_TEST_SUITE_P(ClvpFixtures, ClvpParity, ::testing::ValuesIn(model_cases()), case_name);

// ---- Config: nested sub-configs, as transformers writes them ----

TEST(ClvpConfig, LoadsAndWritesNestedConfigsAsTransformers) {
  for (const std::string name : {"clvp-model-for-conditional-generation"}) {
    std::string file = fixture(name) + "/model/config.json";
    auto config = std::dynamic_pointer_cast<ClvpConfig>(AutoConfig::from_pretrained(file));
    ASSERT_TRUE(config);
    EXPECT_EQ(config->text_config->hidden_size, 64);
    EXPECT_EQ(config->text_config->vocab_size, 99);
    EXPECT_EQ(*config->text_config->bos_token_id, 98);
    EXPECT_EQ(config->speech_config->vocab_size, 60);
    EXPECT_EQ(config->decoder_config->num_mel_attn_blocks, 1);
    EXPECT_EQ(config->decoder_config->decoder_fixing_codes, (std::vector<int64_t>{30, 12, 12, 40}));
    EXPECT_EQ(config->projection_dim, 16);
    // save_pretrained writes exactly what transformers wrote: each sub-config in full (to_dict) inside the dict.
    EXPECT_EQ(config->to_diff_dict(), read_json(file));
  }
  for (const std::string name : {"clvp-encoder", "clvp-for-causal-lm"}) {
    std::string file = fixture(name) + "/model/config.json";
    EXPECT_EQ(AutoConfig::from_pretrained(file)->to_diff_dict(), read_json(file)) << name;
  }
  std::string extra = source_dir() + "/tests/fixtures/hf/clvp-extra-conditional-generation/model/config.json";
  EXPECT_EQ(AutoConfig::from_pretrained(extra)->to_diff_dict(), read_json(extra));
}

TEST(ClvpConfig, DefaultsAndSubModelConfigs) {
  ClvpConfig config;
  EXPECT_EQ(config.text_config->vocab_size, 256);
  EXPECT_EQ(*config.text_config->bos_token_id, 255);
  EXPECT_EQ(config.text_config->eos_token_id, TokenIds{0});
  EXPECT_EQ(config.decoder_config->vocab_size, 8194);
  EXPECT_EQ(config.decoder_config->eos_token_id, TokenIds{8193});
  EXPECT_FALSE(config.decoder_config->n_inner.has_value());
  json dict = config.to_diff_dict();
  EXPECT_EQ(dict["text_config"]["model_type"], "clvp_encoder");
  EXPECT_EQ(dict["decoder_config"]["model_type"], "clvp_decoder");
  EXPECT_FALSE(dict["text_config"].contains("transformers_version"));

  ClvpEncoderConfig text, speech;
  text.hidden_size = 32;
  speech.vocab_size = 77;
  ClvpDecoderConfig decoder;
  decoder.num_mel_attn_blocks = 2;
  auto composed = ClvpConfig::from_sub_model_configs(text, speech, decoder);
  EXPECT_EQ(composed->text_config->hidden_size, 32);
  EXPECT_EQ(composed->speech_config->vocab_size, 77);
  EXPECT_EQ(composed->decoder_config->num_mel_attn_blocks, 2);
}

TEST(ClvpConfig, BadSubConfigIsAConfigError) {
  TempDir tmp;
  json dict = read_json(fixture("clvp-model-for-conditional-generation") + "/model/config.json");
  dict["text_config"]["hidden_size"] = "wide";
  write_json_file(dict, tmp / "config.json");
  try {
    AutoConfig::from_pretrained(tmp.str());
    ADD_FAILURE() << "no exception";
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("text_config"), std::string::npos) << what;
    EXPECT_NE(what.find("hidden_size"), std::string::npos) << what;
  }
  dict["text_config"] = 3;
  write_json_file(dict, tmp / "config.json");
  EXPECT_THROW(AutoConfig::from_pretrained(tmp.str()), ConfigError);
}

// A new model's generation config: from_model_config takes text_config's bos/eos (transformers' special case).
TEST(ClvpConfig, FreshGenerationConfigFollowsTransformers) {
  std::string dir = source_dir() + "/tests/fixtures/hf/clvp-extra-conditional-generation";
  json expected = read_json(dir + "/expected.json");
  auto config = std::dynamic_pointer_cast<ClvpConfig>(AutoConfig::from_pretrained(dir + "/model"));
  ClvpModelForConditionalGeneration model(config);
  json diff = model.generation_config.to_diff_dict();
  diff.erase("transformers_version");
  EXPECT_EQ(diff, expected["fresh_generation_config"]);
}

// ---- Pieces checked directly ----

TEST(ClvpModel, FixSpeechDecoderOutput) {
  auto model = ClvpModelForConditionalGeneration::from_pretrained(fixture("clvp-model-for-conditional-generation") + "/model");
  // codes [30, 12, 12, 40], decoder eos 59; the bos column is dropped.
  at::Tensor ids = at::tensor({58, 1, 2, 59, 5, 6, 7, 8, 58, 1, 2, 3, 4, 5, 6, 7}, at::kLong).view({2, 8});
  at::Tensor fixed = model->fix_speech_decoder_output(ids);
  at::Tensor want = at::tensor({1, 2, 30, 30, 12, 12, 40, 1, 2, 3, 4, 5, 6, 7}, at::kLong).view({2, 7});
  EXPECT_TRUE(at::equal(fixed, want)) << fixed;
}

TEST(ClvpModel, PadExtraBosEosTokens) {
  at::Tensor ids = at::tensor({5, 6, 7, 8, 0, 0}, at::kLong).view({2, 3});
  at::Tensor mask = at::tensor({1, 1, 1, 1, 0, 0}, at::kLong).view({2, 3});
  auto [padded, padded_mask] = _pad_extra_bos_eos_tokens(ids, mask, 0, 9, 1);
  EXPECT_TRUE(at::equal(padded, at::tensor({9, 5, 6, 7, 1, 9, 8, 1, 0, 0}, at::kLong).view({2, 5})));
  EXPECT_TRUE(at::equal(padded_mask, at::tensor({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, at::kLong).view({2, 5})));
}

TEST(ClvpModel, ReturnLossMatchesTransformers) {
  std::string dir = source_dir() + "/tests/fixtures/hf/clvp-extra-conditional-generation";
  auto model = ClvpModelForConditionalGeneration::from_pretrained(dir + "/model");
  json entry = read_json(dir + "/inputs.json")["forward"];
  ModelInputs in;
  in.input_ids = tensor_from_json(entry["inputs"]["input_ids"], "input_ids");
  in.attention_mask = tensor_from_json(entry["inputs"]["attention_mask"], "attention_mask");
  in.extra["input_features"] = tensor_from_json(entry["inputs"]["input_features"], "input_features");
  in.extra["return_loss"] = at::scalar_tensor(true, at::kBool);
  c10::InferenceMode guard;
  ModelOutput out = model->forward(in);
  ASSERT_TRUE(out.loss.defined());
  EXPECT_TRUE(tensors_close("loss", out.loss, read_tensors(dir + "/expected.safetensors")["aux.loss"], 1e-4, 1e-4));
}

TEST(ClvpModel, SpeechFeaturesFromSpeechIds) {
  std::string dir = fixture("clvp-model-for-conditional-generation-generate");
  auto model = ClvpModelForConditionalGeneration::from_pretrained(dir + "/model");
  json expected = read_json(dir + "/expected.json");
  auto reference = read_tensors(dir + "/expected.safetensors");
  at::Tensor speech_ids = reference["generate.greedy.speech_ids"];
  c10::InferenceMode guard;
  at::Tensor embeds = model->get_speech_features(speech_ids);
  // generate's speech_embeds are these, normalised
  at::Tensor normalised = embeds / embeds.norm(2, {-1}, true);
  EXPECT_TRUE(tensors_close("speech_embeds", normalised, reference["generate.greedy.speech_embeds"], 1e-4, 1e-4));
  ModelInputs in;
  in.extra["speech_ids"] = speech_ids;
  auto named = model->call_method("get_speech_features", in).named_tensors();
  ASSERT_EQ(named.size(), 1u);
  EXPECT_EQ(named[0].first, "speech_embeds");
  EXPECT_TRUE(at::equal(named[0].second, embeds));
}

TEST(ClvpModel, SaveLoadRoundTrip) {
  TempDir tmp;
  std::string dir = source_dir() + "/tests/fixtures/hf/clvp-extra-conditional-generation";
  auto model = ClvpModelForConditionalGeneration::from_pretrained(dir + "/model");
  model->save_pretrained(tmp.str());
  EXPECT_TRUE(fs::exists(tmp / "generation_config.json"));
  EXPECT_EQ(read_json(tmp / "config.json")["text_config"], read_json(dir + "/model/config.json")["text_config"]);
  auto loaded = ClvpModelForConditionalGeneration::from_pretrained(tmp.str());
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(loaded->loading_info.unexpected_keys.empty());
  EXPECT_EQ(loaded->generation_config.to_diff_dict(), model->generation_config.to_diff_dict());
  json inputs = read_case_inputs(dir + "/inputs.json");
  auto a = run_forward_case(*model, inputs), b = run_forward_case(*loaded, inputs);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
  // The checkpoint's keys are transformers' (rotary inv_freq included, as a persistent buffer).
  std::set<std::string> keys;
  for (const auto& [k, t] : loaded->state_dict()) keys.insert(k);
  EXPECT_TRUE(keys.count("text_encoder_model.rotary_pos_emb.inv_freq"));
  EXPECT_TRUE(keys.count("speech_decoder_model.model.decoder.layers.0.mlp.c_fc.weight"));
  EXPECT_TRUE(keys.count("conditioning_encoder.group_norms.1.weight"));
}

TEST(ClvpModel, FreshModelsBuildAndRun) {
  at::manual_seed(0);  // random weights: keep the run reproducible
  auto config = std::make_shared<ClvpConfig>();
  config->text_config->hidden_size = 64;
  config->text_config->num_attention_heads = 2;
  config->text_config->num_hidden_layers = 1;
  config->text_config->intermediate_size = 16;
  config->text_config->vocab_size = 30;
  config->text_config->bos_token_id = 29;
  *config->speech_config = *config->text_config;
  config->decoder_config->hidden_size = 32;
  config->decoder_config->num_attention_heads = 2;
  config->decoder_config->num_hidden_layers = 1;
  config->decoder_config->num_mel_attn_blocks = 1;
  config->decoder_config->vocab_size = 30;
  config->decoder_config->bos_token_id = 28;
  config->decoder_config->eos_token_id = TokenIds{29};
  config->decoder_config->max_position_embeddings = 32;
  config->decoder_config->max_text_tokens = 16;
  config->decoder_config->feature_size = 8;
  config->decoder_config->decoder_fixing_codes = {1, 2, 2, 3};
  config->projection_dim = 8;
  config->text_config->projection_dim = config->speech_config->projection_dim = 8;
  auto model = std::make_shared<ClvpModelForConditionalGeneration>(config);
  // transformers' init: encoder projections ~ N(0, hidden^-0.5), the gated unit ~ N(0, (2 hidden)^-0.5).
  double projection_std = model->text_encoder_model->projection->weight.std().item<double>();
  EXPECT_NEAR(projection_std, 0.125, 0.04);
  double fc1_std = model->text_encoder_model->layers->operator[](0)->mlp->fc1->proj->weight.std().item<double>();
  EXPECT_NEAR(fc1_std, std::pow(128.0, -0.5), 0.03);
  EXPECT_EQ(model->logit_scale.item<double>(), static_cast<float>(2.6592));
  GenerationConfig gen = model->generation_config;
  gen.max_new_tokens = 4;
  gen.min_new_tokens = 4;  // a random model may pick EOS at once; fix_speech_decoder_output needs the fixing codes
  gen.eos_token_id = TokenIds{29};
  ModelInputs kwargs;
  kwargs.extra["input_features"] = at::randn({1, 8, 5});
  GenerateOutput out = generate(*model, at::tensor({3, 4, 5}, at::kLong).view({1, 3}), gen, kwargs);
  ASSERT_TRUE(out.extra.count("speech_ids"));
  EXPECT_EQ(out.extra["speech_ids"].size(0), 1);
  EXPECT_EQ(out.extra["logits_per_text"].sizes(), (std::vector<int64_t>{1, 1}));
}

// Gradients with gradient checkpointing equal those of the plain graph (dropout on: the RNG is replayed).
std::vector<std::pair<std::string, at::Tensor>> gradients_of(const std::string& dir, const std::string& cls,
                                                             bool checkpointing) {
  auto model = model_from_pretrained(dir + "/model", cls);
  model->train();
  if (checkpointing) model->gradient_checkpointing_enable();
  json entry = read_json(dir + "/inputs.json")["forward"];
  ModelInputs in;
  for (auto& [name, spec] : entry["inputs"].items()) {
    at::Tensor t = tensor_from_json(spec, name);
    if (name == "input_ids") in.input_ids = t;
    else if (name == "attention_mask") in.attention_mask = t;
    else if (name == "labels") in.labels = t;
    else if (name == "token_type_ids") in.token_type_ids = t;
    else in.extra[name] = t;
  }
  in.extra["return_loss"] = at::scalar_tensor(true, at::kBool);
  at::manual_seed(0);
  ModelOutput out = model->forward(in);
  out.loss.backward();
  std::vector<std::pair<std::string, at::Tensor>> grads;
  for (const auto& p : model->named_parameters())
    if (p.value().grad().defined()) grads.emplace_back(p.key(), p.value().grad().clone());
  return grads;
}

TEST(ClvpModel, GradientCheckpointingGivesTheSameGradients) {
  std::string root = source_dir() + "/tests/fixtures/hf/";
  for (auto [name, cls] : std::vector<std::pair<std::string, std::string>>{
           {"clvp-extra-for-causal-lm", "ClvpForCausalLM"},
           {"clvp-extra-conditional-generation", "ClvpModelForConditionalGeneration"}}) {
    SCOPED_TRACE(name);
    auto plain = gradients_of(root + name, cls, false);
    auto checkpointed = gradients_of(root + name, cls, true);
    ASSERT_EQ(plain.size(), checkpointed.size());
    EXPECT_GT(plain.size(), 10u);
    for (size_t i = 0; i < plain.size(); ++i) {
      EXPECT_EQ(plain[i].first, checkpointed[i].first);
      EXPECT_TRUE(tensors_close(plain[i].first, checkpointed[i].second, plain[i].second, 1e-6, 1e-5));
    }
  }
}

// ---- Bad input: typed errors naming the problem ----

template <typename E>
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no exception";
  } catch (const E& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what() << " lacks " << f;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

TEST(ClvpBadInput, ConditionalGenerationInputs) {
  auto model = ClvpModelForConditionalGeneration::from_pretrained(fixture("clvp-model-for-conditional-generation") + "/model");
  at::Tensor ids = at::tensor({5, 6, 7}, at::kLong).view({1, 3});
  ModelInputs in;
  in.input_ids = ids;
  in.extra["input_features"] = at::randn({1, 40, 7});  // 80 mel bins expected
  expect_error<ValueError>([&] { model->forward(in); }, {"input_features", "80"});
  in.extra["input_features"] = at::randn({3, 80, 7});
  in.input_ids = at::tensor({5, 6, 7, 5, 6, 7}, at::kLong).view({2, 3});
  expect_error<ValueError>([&] { model->forward(in); }, {"number of texts and number of audios", "2 texts vs 3"});
  in.input_ids = at::tensor({5, 6, 700}, at::kLong).view({1, 3});
  expect_error<ValueError>([&] { model->forward(in); }, {"input_ids", "700"});
  in.extra.erase("input_features");
  in.input_ids = ids;
  expect_error<ValueError>([&] { model->forward(in); }, {"input_features"});
  expect_error<ValueError>([&] { model->call_method("decode", in); }, {"decode", "get_text_features"});
  GenerationConfig gen = model->generation_config;
  gen.max_new_tokens = 2;
  ModelInputs kwargs;
  kwargs.extra["input_features"] = at::randn({1, 80, 7});
  at::Tensor long_ids = at::ones({1, 40}, at::kLong);  // max_text_tokens 32 - 3
  expect_error<ValueError>([&] { generate(*model, long_ids, gen, kwargs); }, {"Maximum sequence length", "29"});
  ModelInputs embeds;
  embeds.extra["input_features"] = at::randn({1, 80, 7});
  embeds.extra["conditioning_encoder_inputs_embeds"] = at::randn({1, 3, 32});
  expect_error<ValueError>([&] { model->forward(embeds); }, {"input_ids"});
}

TEST(ClvpBadInput, EncoderAndDecoderInputs) {
  auto encoder = ClvpEncoder::from_pretrained(fixture("clvp-encoder") + "/model");
  ModelInputs in;
  in.input_ids = at::tensor({1, 2, 3}, at::kLong).view({1, 3});
  in.attention_mask = at::ones({1, 4}, at::kLong);
  expect_error<ValueError>([&] { encoder->forward(in); }, {"attention_mask", "[1, 3]"});
  in.attention_mask = at::Tensor();
  in.inputs_embeds = at::randn({1, 3, 64});
  expect_error<ValueError>([&] { encoder->forward(in); }, {"both input_ids and inputs_embeds"});
  auto lm = ClvpForCausalLM::from_pretrained(fixture("clvp-for-causal-lm") + "/model");
  ModelInputs long_in;
  long_in.input_ids = at::zeros({1, 70}, at::kLong);  // max_position_embeddings 64
  expect_error<ValueError>([&] { lm->forward(long_in); }, {"position_ids", "64"});
  expect_error<ConfigError>([&] { model_from_pretrained(fixture("clvp-encoder") + "/model", "ClvpForCausalLM"); },
                            {"clvp_encoder", "ClvpForCausalLM"});
}

// ---- ClvpFeatureExtractor and the WAV reader against the oracle ----

TEST(ClvpFeatureExtractor, MatchesTransformersOnWavFiles) {
  std::string dir = source_dir() + "/tests/fixtures/hf/clvp-extra-feature-extractor";
  json expected = read_json(dir + "/expected.json");
  auto reference = read_tensors(dir + "/expected.safetensors");
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  int compared = 0;
  for (const auto& call : expected["calls"]) {
    std::string name = call["name"].get<std::string>();
    SCOPED_TRACE(name);
    auto fe = ClvpFeatureExtractor::from_pretrained(dir + "/" + call["feature_extractor"].get<std::string>());
    std::vector<at::Tensor> speech;
    for (const auto& file : call["wav_files"]) speech.push_back(fe.load_wav(dir + "/" + file.get<std::string>()));
    ClvpFeatureExtractor::CallOptions options;
    const json& kw = call["kwargs"];
    if (kw.contains("sampling_rate")) options.sampling_rate = kw["sampling_rate"].get<int64_t>();
    if (kw.contains("max_length")) options.max_length = kw["max_length"].get<int64_t>();
    if (kw.contains("padding")) options.padding = kw["padding"].get<std::string>();
    if (kw.contains("pad_to_multiple_of")) options.pad_to_multiple_of = kw["pad_to_multiple_of"].get<int64_t>();
    if (kw.contains("return_attention_mask")) options.return_attention_mask = kw["return_attention_mask"].get<bool>();
    auto out = fe(speech, options);
    const at::Tensor& want = reference.at(name + ".input_features");
    EXPECT_TRUE(tensors_close(name + ".input_features", out.at("input_features"), want, atol, rtol));
    if (out.at("input_features").sizes() == want.sizes())
      std::cout << "feature extractor " << name << ": input_features " << want.sizes() << " max|diff| "
                << max_abs_diff(out.at("input_features"), want) << "\n";
    ++compared;
    if (reference.count(name + ".attention_mask")) {
      ASSERT_TRUE(out.count("attention_mask"));
      EXPECT_EQ(out.at("attention_mask").scalar_type(), at::kInt);
      EXPECT_TRUE(at::equal(out.at("attention_mask").to(at::kLong), reference.at(name + ".attention_mask").to(at::kLong)));
    } else {
      EXPECT_FALSE(out.count("attention_mask"));
    }
  }
  EXPECT_EQ(compared, 4);
}

TEST(ClvpFeatureExtractor, ConfigRoundTripAndDefaults) {
  std::string dir = source_dir() + "/tests/fixtures/hf/clvp-extra-feature-extractor";
  for (const std::string sub : {"default", "other"}) {
    json file = read_json(dir + "/" + sub + "/preprocessor_config.json");
    auto fe = ClvpFeatureExtractor::from_pretrained(dir + "/" + sub);
    EXPECT_EQ(fe.to_dict(), file) << sub;
  }
  ClvpFeatureExtractor fe;
  EXPECT_EQ(fe.mel_filters.sizes(), (std::vector<int64_t>{513, 80}));
  EXPECT_EQ(fe.n_samples, 30 * 22050);
  EXPECT_EQ(fe.nb_max_frames, 30 * 22050 / 256);
  // A default call pads to default_audio_length seconds.
  auto out = fe({at::zeros({1000})});
  EXPECT_EQ(out.at("input_features").sizes(), (std::vector<int64_t>{1, 80, 1 + 6 * 22050 / 256}));
  EXPECT_EQ(out.at("attention_mask").sizes(), (std::vector<int64_t>{1, 6 * 22050}));
}

TEST(ClvpFeatureExtractor, BadInput) {
  ClvpFeatureExtractor fe;
  ClvpFeatureExtractor::CallOptions options;
  options.sampling_rate = 16000;
  expect_error<ValueError>([&] { fe({at::zeros({100})}, options); }, {"22050", "16000"});
  expect_error<ValueError>([&] { fe({at::zeros({2, 100})}); }, {"mono"});
  options = {};
  options.padding = "do_not_pad";
  options.truncation = false;
  expect_error<ValueError>([&] { fe({at::zeros({2000}), at::zeros({3000})}, options); }, {"different lengths"});
  options.padding = "sideways";
  expect_error<ValueError>([&] { fe({at::zeros({100})}, options); }, {"sideways"});
  expect_error<ConfigError>([&] { ClvpFeatureExtractor::from_dict(json{{"mel_norms", {1.0, 2.0}}}, "pp.json"); },
                            {"pp.json", "mel_norms"});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

std::string wav_bytes(uint16_t format, uint16_t channels, uint32_t rate, uint16_t bits, const std::string& data) {
  auto u16 = [](uint16_t v) { return std::string{static_cast<char>(v & 0xff), static_cast<char>(v >> 8)}; };
  auto u32 = [](uint32_t v) {
    return std::string{static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
                       static_cast<char>((v >> 16) & 0xff), static_cast<char>(v >> 24)};
  };
  std::string fmt = u16(format) + u16(channels) + u32(rate) + u32(rate * channels * bits / 8) +
                    u16(channels * bits / 8) + u16(bits);
  std::string body = "WAVE" + std::string("fmt ") + u32(16) + fmt + "data" + u32(data.size()) + data;
  return "RIFF" + u32(body.size()) + body;
}

TEST(ClvpFeatureExtractor, LoadWavAveragesChannelsAndChecksTheRate) {
  TempDir tmp;
  std::string samples{"\x00\x40\x00\xc0\xff\x7f\x00\x80", 8};  // 16384, -16384, 32767, -32768
  write_bytes(tmp / "mono.wav", wav_bytes(1, 1, 22050, 16, samples));
  ClvpFeatureExtractor fe;
  EXPECT_TRUE(at::equal(fe.load_wav(tmp / "mono.wav"), at::tensor({0.5f, -0.5f, 32767.0f / 32768.0f, -1.0f})));
  write_bytes(tmp / "stereo.wav", wav_bytes(1, 2, 22050, 16, samples));
  EXPECT_TRUE(at::allclose(fe.load_wav(tmp / "stereo.wav"), at::tensor({0.0f, (32767.0f / 32768.0f - 1.0f) / 2})));
  write_bytes(tmp / "8k.wav", wav_bytes(1, 1, 8000, 16, samples));
  expect_error<ValueError>([&] { fe.load_wav(tmp / "8k.wav"); }, {"8k.wav", "8000", "22050"});
  write_bytes(tmp / "text.wav", "hello, not a wav file");
  expect_error<AudioError>([&] { fe.load_wav(tmp / "text.wav"); }, {"text.wav"});
}

// ---- The CLI contract (shared/fixtures/README.md) ----

TEST(ClvpCli, GenerateJsonCarriesSpeechIds) {
  std::string dir = fixture("clvp-model-for-conditional-generation-generate");
  auto [code, out] = run_command(tfcpp_bin() + " generate --model " + dir + "/model --class "
                                 "ClvpModelForConditionalGeneration --inputs " + dir + "/inputs.json --name greedy --json");
  ASSERT_EQ(code, 0) << out;
  json result = json::parse(out);
  json expected = read_json(dir + "/expected.json");
  EXPECT_EQ(result["speech_ids"], expected["generate"]["greedy"]["ids"]);
  EXPECT_TRUE(result.contains("sequences"));
  EXPECT_TRUE(result.contains("logits_per_text"));
}

TEST(ClvpCli, ForwardWritesEveryOutput) {
  TempDir tmp;
  std::string dir = fixture("clvp-model-for-conditional-generation");
  auto [code, out] = run_command(tfcpp_bin() + " forward --model " + dir + "/model --class "
                                 "ClvpModelForConditionalGeneration --inputs " + dir + "/inputs.json --out " +
                                 (tmp / "out.safetensors"));
  ASSERT_EQ(code, 0) << out;
  auto actual = read_tensors(tmp / "out.safetensors");
  for (const auto& [name, want] : read_tensors(dir + "/expected.safetensors")) {
    if (starts_with(name, "aux.")) continue;
    ASSERT_TRUE(actual.count(name)) << name;
    EXPECT_TRUE(tensors_close(name, actual[name], want, 1e-4, 1e-4));
  }
}

TEST(ClvpCli, SpeechIdsFromWav) {
  std::string model = source_dir() + "/tests/fixtures/hf/clvp-extra-conditional-generation/model";
  std::string wav = source_dir() + "/tests/fixtures/hf/clvp-extra-feature-extractor/mono_16000.wav";
  // This model's decoder takes 24 mel bins: a matching extractor is given by flags.
  auto [code, out] = run_command(tfcpp_bin() + " clvp-speech-ids --model " + model + " --ids 5,17,33 --audio " + wav +
                                 " --feature-size 24 --sampling-rate 16000 --max-new-tokens 4 2>&1");
  ASSERT_EQ(code, 0) << out;
  json result = json::parse(out);
  ASSERT_TRUE(result.contains("speech_ids"));
  EXPECT_EQ(result["speech_ids"].size(), 1u);
  EXPECT_EQ(result["speech_ids"][0].size(), 4u);
  auto [bad, message] = run_command(tfcpp_bin() + " clvp-speech-ids --model " + model + " --ids 5,17 --audio " + wav +
                                    " --feature-size 24 2>&1");
  EXPECT_EQ(bad, 1) << message;
  EXPECT_NE(message.find("16000"), std::string::npos) << message;
}

}  // namespace
