// SeamlessM4T code HiFi-GAN vocoder: parity against transformers 4.40.2 fixtures (shared and repo-made), config
// round trip, weight norm, bad input, WAV files, and tfcpp vocode / forward.
#include "test_util.h"

#include "transformers/audio.h"
#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/models/seamless_m4t.h"

#include <c10/core/InferenceMode.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace transformers;
using namespace tfcpp_test;

namespace {

const std::string kCodeHifiGan = "seamless-m4t-code-hifigan";

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string case_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = fs::path(info.param).filename().string();
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

// Every tensor of expected.safetensors but aux.*: floats within the case tolerance, integers exactly.
void expect_outputs_match(const std::string& dir, const std::map<std::string, at::Tensor>& actual) {
  json expected = read_json(dir + "/expected.json");
  double atol = expected["tolerance"]["atol"].get<double>(), rtol = expected["tolerance"]["rtol"].get<double>();
  int compared = 0;
  for (const auto& [name, want] : read_tensors(dir + "/expected.safetensors")) {
    if (name.rfind("aux.", 0) == 0) continue;
    auto it = actual.find(name);
    ASSERT_NE(it, actual.end()) << "output " << name << " not produced";
    if (at::isFloatingType(want.scalar_type())) {
      EXPECT_TRUE(tensors_close(name, it->second, want, atol, rtol));
    } else {
      EXPECT_EQ(it->second.scalar_type(), want.scalar_type()) << name;
      EXPECT_EQ(it->second.sizes(), want.sizes()) << name;
      EXPECT_TRUE(it->second.sizes() == want.sizes() && at::equal(it->second, want))
          << name << ": " << it->second << " vs expected " << want;
    }
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

std::shared_ptr<SeamlessM4TCodeHifiGan> load_vocoder(const std::string& dir) {
  auto model = SeamlessM4TCodeHifiGan::from_pretrained(dir);
  if (!model) throw std::runtime_error("not a SeamlessM4TCodeHifiGan: " + dir);
  return model;
}

struct VocoderInputs {
  at::Tensor input_ids, spkr_id, lang_id;
};

VocoderInputs shared_inputs() {
  json in = read_case_inputs(fixture(kCodeHifiGan) + "/inputs.json")["forward"]["inputs"];
  return {tensor_from_json(in["input_ids"], "input_ids"), tensor_from_json(in["spkr_id"], "spkr_id"),
          tensor_from_json(in["lang_id"], "lang_id")};
}

std::pair<at::Tensor, at::Tensor> vocode(SeamlessM4TCodeHifiGan& model, const VocoderInputs& in) {
  c10::InferenceMode guard;
  return model.forward(in.input_ids, in.spkr_id, in.lang_id);
}

template <typename E, typename F>
void expect_error(F&& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one mentioning " << join(fragments);
  } catch (const E& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

// ---- Parity: every seamless-m4t-* case, shared and repo-made ----

class SeamlessM4TParity : public ::testing::TestWithParam<std::string> {};

TEST_P(SeamlessM4TParity, ForwardMatchesTransformers) {
  const std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  auto model = model_from_pretrained(dir + "/model", expected["load"]["class"].get<std::string>());
  EXPECT_TRUE(model->loading_info.missing_keys.empty()) << join(model->loading_info.missing_keys);
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty()) << join(model->loading_info.unexpected_keys);
  json inputs = read_case_inputs(dir + "/inputs.json");
  auto outputs = run_forward_case(*model, inputs);
  expect_outputs_match(dir, std::map<std::string, at::Tensor>(outputs.begin(), outputs.end()));

  // aux.*: the duration predictor's intermediate values.
  auto reference = read_tensors(dir + "/expected.safetensors");
  if (!reference.count("aux.log_dur_pred")) return;
  auto vocoder = std::dynamic_pointer_cast<SeamlessM4TCodeHifiGan>(model);
  ASSERT_TRUE(vocoder);
  c10::InferenceMode guard;
  at::Tensor ids = tensor_from_json(inputs["forward"]["inputs"]["input_ids"], "input_ids");
  at::Tensor hidden_states = vocoder->unit_embedding->forward(ids).transpose(1, 2);
  at::Tensor log_dur_pred = vocoder->dur_predictor->forward(hidden_states.transpose(1, 2));
  EXPECT_TRUE(tensors_close("aux.log_dur_pred", log_dur_pred, reference["aux.log_dur_pred"], 1e-4, 1e-4));
  at::Tensor dur_out = at::clamp_min(at::round(at::exp(log_dur_pred) - 1).to(at::kLong), 1);
  EXPECT_TRUE(at::equal(dur_out, reference["aux.dur_out"])) << dur_out << " vs " << reference["aux.dur_out"];
}

TEST_P(SeamlessM4TParity, CliForwardMatchesTransformers) {
  const std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  TempDir tmp;
  // The class the case names: SeamlessM4TCodeHifiGan, or SeamlessM4THifiGan (loaded through its container).
  auto [rc, output] = run_command(tfcpp_bin() + " forward --model " + dir + "/model --class " +
                                  expected["class"].get<std::string>() + " --inputs " + dir + "/inputs.json --out " +
                                  tmp / "out.safetensors" + " 2>&1");
  ASSERT_EQ(rc, 0) << output;
  expect_outputs_match(dir, read_tensors(tmp / "out.safetensors"));
}

INSTANTIATE_TEST_SUITE_P(SeamlessM4TFixtures, SeamlessM4TParity, ::testing::ValuesIn(fixture_cases("seamless-m4t-")), case_name);

TEST(SeamlessM4TParityCases, SharedAndRepoCasesArePresent) {
  auto cases = fixture_cases("seamless-m4t-");
  auto has = [&](const std::string& name) {
    return std::any_of(cases.begin(), cases.end(), [&](const std::string& c) { return fs::path(c).filename() == name; });
  };
  EXPECT_TRUE(has("seamless-m4t-code-hifigan"));
  EXPECT_TRUE(has("seamless-m4t-hifigan"));
  EXPECT_TRUE(has("seamless-m4t-extra-code-hifigan-sizes"));
  EXPECT_TRUE(has("seamless-m4t-extra-code-hifigan-weight-norm"));
  EXPECT_TRUE(has("seamless-m4t-extra-hifigan-parametrizations"));
}

// ---- Config ----

TEST(SeamlessM4TConfigTest, FixtureConfigJsonRoundTrips) {
  for (const std::string& dir : {fixture(kCodeHifiGan), source_dir() + "/tests/fixtures/hf/seamless-m4t-extra-code-hifigan-sizes"}) {
    json original = read_json(dir + "/model/config.json");
    auto config = std::dynamic_pointer_cast<SeamlessM4TConfig>(AutoConfig::from_pretrained(dir + "/model"));
    ASSERT_TRUE(config);
    EXPECT_TRUE(config->extra.empty()) << "unclaimed keys: " << config->extra.dump();
    json written = config->to_diff_dict();
    for (auto& [key, value] : original.items()) {
      ASSERT_TRUE(written.contains(key)) << dir << ": " << key << " not written back";
      EXPECT_EQ(written[key], value) << dir << ": " << key;
    }
    for (auto& [key, value] : written.items()) EXPECT_TRUE(original.contains(key)) << dir << ": extra key " << key;
  }
}

TEST(SeamlessM4TConfigTest, DefaultsMatchTransformers) {
  // SeamlessM4TConfig().to_dict() from transformers, stored by the case generator.
  json defaults = read_json(source_dir() + "/tests/fixtures/hf/seamless-m4t-extra-code-hifigan-sizes/expected.json")
                      ["config_defaults"];
  json ours = SeamlessM4TConfig().to_dict();
  int compared = 0;
  for (auto& [key, value] : defaults.items()) {
    if (key == "_name_or_path" || key == "transformers_version") continue;
    ASSERT_TRUE(ours.contains(key)) << key;
    EXPECT_EQ(ours[key], value) << key;
    ++compared;
  }
  EXPECT_GT(compared, 100);
}

TEST(SeamlessM4TConfigTest, AttentionHeadsAndLayersFollowTheDecoder) {
  SeamlessM4TConfig config;
  config.from_dict({{"decoder_attention_heads", 8}, {"decoder_layers", 3}}, "test");
  EXPECT_EQ(config.num_attention_heads, 8);
  EXPECT_EQ(config.num_hidden_layers, 3);
  config.from_dict({{"decoder_attention_heads", 8}, {"num_attention_heads", 4}}, "test");
  EXPECT_EQ(config.num_attention_heads, 4);
}

TEST(SeamlessM4TConfigTest, InconsistentGeneratorLayoutIsAConfigError) {
  auto config = std::make_shared<SeamlessM4TConfig>();
  config->from_dict(read_json(fixture(kCodeHifiGan) + "/model/config.json"), "config.json");
  auto bad = std::make_shared<SeamlessM4TConfig>(*config);
  bad->upsample_kernel_sizes = {4};
  expect_error<ConfigError>([&] { SeamlessM4TCodeHifiGan model(bad); }, {"upsample_kernel_sizes", "same length"});
  bad = std::make_shared<SeamlessM4TConfig>(*config);
  bad->resblock_dilation_sizes = {{1, 3}};
  expect_error<ConfigError>([&] { SeamlessM4TCodeHifiGan model(bad); }, {"resblock_dilation_sizes"});
  bad = std::make_shared<SeamlessM4TConfig>(*config);
  bad->upsample_rates = {5, 2};
  expect_error<ConfigError>([&] { SeamlessM4TCodeHifiGan model(bad); }, {"upsample_rates[0] (5)"});
}

// ---- Model structure, lengths ----

TEST(SeamlessM4TCodeHifiGanTest, ParameterNamesAreTheCheckpointKeys) {
  auto model = load_vocoder(fixture(kCodeHifiGan) + "/model");
  std::set<std::string> ours, checkpoint;
  for (const auto& [k, t] : model->state_dict()) ours.insert(k);
  for (const auto& [k, t] : read_tensors(fixture(kCodeHifiGan) + "/model/model.safetensors")) checkpoint.insert(k);
  EXPECT_EQ(ours, checkpoint);
  EXPECT_EQ(model->main_input_name, "input_embeds");
  EXPECT_EQ(model->config->model_type(), "seamless_m4t");
}

TEST(SeamlessM4TCodeHifiGanTest, BatchOfOneGivesZeroDimLengthsAndMatchesTheBatch) {
  auto model = load_vocoder(fixture(kCodeHifiGan) + "/model");
  VocoderInputs batch = shared_inputs();
  auto [waveform, lengths] = vocode(*model, batch);
  for (int64_t b = 0; b < 2; ++b) {
    VocoderInputs one{batch.input_ids.narrow(0, b, 1), batch.spkr_id.narrow(0, b, 1), batch.lang_id.narrow(0, b, 1)};
    auto [w, l] = vocode(*model, one);
    EXPECT_EQ(l.dim(), 0);  // squeeze() of [1, 1], as in transformers
    EXPECT_EQ(l.item<int64_t>(), lengths[b].item<int64_t>());
    // The padded batch agrees with the sample alone: everywhere for the longest sample, and away from the end
    // (the generator's receptive field, < 64 samples here) for a shorter one, whose batch row continues into padding.
    int64_t n = w.size(1) == waveform.size(1) ? w.size(1) : w.size(1) - 64;
    ASSERT_GT(n, 0);
    EXPECT_TRUE(tensors_close("sample " + std::to_string(b), waveform[b].narrow(0, 0, n), w[0].narrow(0, 0, n), 1e-5, 1e-5));
  }
}

TEST(SeamlessM4TCodeHifiGanTest, OutputLengthFormulaMatchesTheGenerator) {
  auto model = load_vocoder(fixture(kCodeHifiGan) + "/model");
  c10::InferenceMode guard;
  for (int64_t frames : {1, 2, 5, 13}) {
    at::Tensor embeds = at::randn({1, model->hifi_gan->model_in_dim, frames});
    at::Tensor waveform = model->hifi_gan->forward(embeds);
    at::Tensor expected = model->_get_output_hifigan_lengths(at::tensor({frames}, at::kLong));
    EXPECT_EQ(waveform.size(1), expected.item<int64_t>()) << frames << " frames";
  }
}

TEST(SeamlessM4TCodeHifiGanTest, SaveLoadRoundTripAndRandomInit) {
  auto config = std::make_shared<SeamlessM4TConfig>();
  config->from_dict(read_json(fixture(kCodeHifiGan) + "/model/config.json"), "config.json");
  auto model = std::dynamic_pointer_cast<SeamlessM4TCodeHifiGan>(model_from_config(config, "SeamlessM4TCodeHifiGan"));
  ASSERT_TRUE(model);
  model->eval();
  // _init_weights: normal(0, initializer_range) for convolutions, linears and embeddings; LayerNorm left at 1 / 0.
  EXPECT_NEAR(model->unit_embedding->weight.std().item<double>(), config->initializer_range, 0.05);
  EXPECT_NEAR(model->hifi_gan->conv_pre->weight.std().item<double>(), config->initializer_range, 0.05);
  EXPECT_TRUE(at::equal(model->dur_predictor->ln1->weight, at::ones({config->unit_embed_dim})));
  EXPECT_EQ(model->hifi_gan->conv_pre->bias.abs().max().item<double>(), 0.0);
  TempDir tmp;
  model->save_pretrained(tmp.str());
  auto loaded = load_vocoder(tmp.str());
  VocoderInputs in = shared_inputs();
  auto [a, la] = vocode(*model, in);
  auto [b, lb] = vocode(*loaded, in);
  EXPECT_TRUE(tensors_close("waveform after save/load", b, a, 0, 0));
  EXPECT_TRUE(at::equal(la, lb));
  EXPECT_EQ(read_json(tmp / "config.json")["architectures"], json::array({"SeamlessM4TCodeHifiGan"}));
}

TEST(SeamlessM4TCodeHifiGanTest, Bfloat16Runs) {
  // bfloat16 conv_transpose1d fails in libtorch 1.13 (and in Python); the upsampler computes it in float32.
  const std::string dir = fixture("seamless-m4t-hifigan");
  FromPretrainedOptions options;
  options.dtype = "bfloat16";
  auto model = SeamlessM4TCodeHifiGan::from_pretrained(dir + "/model", options);
  ASSERT_EQ(model->dtype(), at::kBFloat16);
  auto outputs = run_forward_case(*model, read_case_inputs(dir + "/inputs.json"));
  at::Tensor want = read_tensors(dir + "/expected.safetensors")["waveform"];
  EXPECT_EQ(outputs.at(0).second.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(tensors_close("bfloat16 waveform", outputs.at(0).second, want, 5e-2, 0));
}

// ---- Weight norm ----

bool has_key(const PreTrainedModel& model, const std::string& key) {
  for (const auto& [k, t] : model.state_dict())
    if (k == key) return true;
  return false;
}

TEST(SeamlessM4TWeightNorm, ApplyThenRemoveGivesIdenticalOutputs) {
  auto model = load_vocoder(fixture(kCodeHifiGan) + "/model");
  VocoderInputs in = shared_inputs();
  auto [before, before_lengths] = vocode(*model, in);
  at::Tensor weight_before = model->hifi_gan->conv_pre->weight.clone();

  model->apply_weight_norm();
  EXPECT_TRUE(model->has_weight_norm());
  EXPECT_TRUE(has_key(*model, "hifi_gan.conv_pre.weight_g"));
  EXPECT_TRUE(has_key(*model, "hifi_gan.resblocks.3.convs2.1.weight_v"));
  EXPECT_TRUE(has_key(*model, "hifi_gan.upsampler.1.weight_g"));
  EXPECT_FALSE(has_key(*model, "hifi_gan.conv_post.weight"));
  EXPECT_TRUE(has_key(*model, "dur_predictor.conv1.weight"));  // only the generator is weight-normed
  // g is ||w|| over all dims but 0: [out, 1, 1] for Conv1d, [in, 1, 1] for ConvTranspose1d.
  EXPECT_EQ(model->hifi_gan->conv_pre->weight_g.sizes(), (std::vector<int64_t>{16, 1, 1}));
  EXPECT_EQ(model->hifi_gan->upsampler->operator[](0)->weight_g.sizes(), (std::vector<int64_t>{16, 1, 1}));
  auto [normed, normed_lengths] = vocode(*model, in);
  EXPECT_TRUE(tensors_close("weight-normed waveform", normed, before, 1e-6, 0));
  EXPECT_TRUE(at::equal(normed_lengths, before_lengths));

  model->remove_weight_norm();
  EXPECT_FALSE(model->has_weight_norm());
  EXPECT_TRUE(has_key(*model, "hifi_gan.conv_pre.weight"));
  EXPECT_FALSE(has_key(*model, "hifi_gan.conv_pre.weight_g"));
  // g * v / ||v|| with g = ||v|| is v up to float rounding: transformers gives the same max|diff| on this model
  // (6.0e-8 on conv_pre.weight, 2.7e-7 on the waveform).
  EXPECT_TRUE(tensors_close("conv_pre.weight", model->hifi_gan->conv_pre->weight, weight_before, 1e-7, 0));
  auto [after, after_lengths] = vocode(*model, in);
  EXPECT_TRUE(tensors_close("waveform after apply + remove", after, before, 1e-6, 0));
  EXPECT_TRUE(at::equal(after_lengths, before_lengths));
}

TEST(SeamlessM4TWeightNorm, TwiceOrNotAppliedIsAnError) {
  auto model = load_vocoder(fixture(kCodeHifiGan) + "/model");
  expect_error<ValueError>([&] { model->remove_weight_norm(); }, {"weight_norm of 'weight' not found"});
  model->apply_weight_norm();
  expect_error<ValueError>([&] { model->apply_weight_norm(); }, {"Cannot register two weight_norm hooks"});
}

TEST(SeamlessM4TWeightNorm, SavedWeightNormCheckpointLoadsWithItsLayout) {
  auto model = load_vocoder(fixture(kCodeHifiGan) + "/model");
  VocoderInputs in = shared_inputs();
  auto [reference, reference_lengths] = vocode(*model, in);
  model->apply_weight_norm();
  TempDir tmp;
  model->save_pretrained(tmp.str());
  auto saved = read_tensors(tmp / "model.safetensors");
  EXPECT_TRUE(saved.count("hifi_gan.conv_pre.weight_g"));
  EXPECT_TRUE(saved.count("hifi_gan.conv_pre.weight_v"));
  EXPECT_FALSE(saved.count("hifi_gan.conv_pre.weight"));

  auto loaded = load_vocoder(tmp.str());
  EXPECT_TRUE(loaded->has_weight_norm());
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty()) << join(loaded->loading_info.missing_keys);
  EXPECT_TRUE(loaded->loading_info.unexpected_keys.empty()) << join(loaded->loading_info.unexpected_keys);
  auto [waveform, lengths] = vocode(*loaded, in);
  EXPECT_TRUE(tensors_close("reloaded weight-normed waveform", waveform, reference, 1e-6, 0));
  loaded->remove_weight_norm();
  auto [folded, folded_lengths] = vocode(*loaded, in);
  EXPECT_TRUE(tensors_close("after remove_weight_norm", folded, reference, 1e-6, 0));
  EXPECT_TRUE(at::equal(folded_lengths, reference_lengths));
}

TEST(SeamlessM4TWeightNorm, ParametrizationsLayoutIsRenamedOnLoad) {
  const std::string dir = source_dir() + "/tests/fixtures/hf/seamless-m4t-extra-hifigan-parametrizations/model";
  auto checkpoint = read_tensors(dir + "/model.safetensors");
  ASSERT_TRUE(checkpoint.count("hifi_gan.conv_pre.parametrizations.weight.original0"));
  auto model = load_vocoder(dir);
  EXPECT_TRUE(model->has_weight_norm());
  EXPECT_TRUE(model->loading_info.missing_keys.empty()) << join(model->loading_info.missing_keys);
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty()) << join(model->loading_info.unexpected_keys);
  EXPECT_TRUE(at::equal(model->hifi_gan->conv_pre->weight_g,
                        checkpoint["hifi_gan.conv_pre.parametrizations.weight.original0"]));
  EXPECT_TRUE(at::equal(model->hifi_gan->conv_pre->weight_v,
                        checkpoint["hifi_gan.conv_pre.parametrizations.weight.original1"]));
}

TEST(SeamlessM4TWeightNorm, PlainCheckpointIntoWeightNormedModel) {
  auto model = load_vocoder(fixture(kCodeHifiGan) + "/model");
  VocoderInputs in = shared_inputs();
  auto [reference, lengths] = vocode(*model, in);
  auto other = std::make_shared<SeamlessM4TCodeHifiGan>(std::dynamic_pointer_cast<SeamlessM4TConfig>(model->config));
  other->apply_weight_norm();
  auto checkpoint = read_tensors(fixture(kCodeHifiGan) + "/model/model.safetensors");
  auto info = other->load_state_dict({checkpoint.begin(), checkpoint.end()}, "model.safetensors");
  EXPECT_FALSE(other->has_weight_norm());
  EXPECT_TRUE(info.missing_keys.empty()) << join(info.missing_keys);
  other->eval();
  auto [waveform, l] = vocode(*other, in);
  EXPECT_TRUE(tensors_close("waveform", waveform, reference, 0, 0));
}

// ---- Bad input ----

class SeamlessM4TBadInput : public ::testing::Test {
 protected:
  void SetUp() override { model = load_vocoder(fixture(kCodeHifiGan) + "/model"); }
  std::shared_ptr<SeamlessM4TCodeHifiGan> model;
  at::Tensor ids(std::vector<int64_t> v) { return at::tensor(v, at::kLong).unsqueeze(0); }
  at::Tensor id(int64_t v) { return at::full({1, 1}, v, at::kLong); }
};

TEST_F(SeamlessM4TBadInput, UnitIdsOutOfRangeNameTheValidRange) {
  expect_error<ValueError>([&] { vocode(*model, {ids({3, 50, 2}), id(0), id(0)}); },
                           {"input_ids", "unit id 50", "0..49", "unit_hifi_gan_vocab_size"});
  expect_error<ValueError>([&] { vocode(*model, {ids({3, -1, 2}), id(0), id(0)}); }, {"unit id -1", "0..49"});
}

TEST_F(SeamlessM4TBadInput, SpeakerAndLanguageIdsNameTheValidRange) {
  expect_error<ValueError>([&] { vocode(*model, {ids({3, 4}), id(3), id(0)}); },
                           {"spkr_id", "speaker id 3", "0..2", "vocoder_num_spkrs"});
  expect_error<ValueError>([&] { vocode(*model, {ids({3, 4}), id(0), id(-2)}); },
                           {"lang_id", "language id -2", "0..3", "vocoder_num_langs"});
}

TEST_F(SeamlessM4TBadInput, EmptyMissingOrMisshapenInputs) {
  expect_error<ValueError>([&] { vocode(*model, {at::empty({1, 0}, at::kLong), id(0), id(0)}); }, {"non-empty"});
  expect_error<ValueError>([&] { vocode(*model, {at::tensor({1, 2}, at::kLong), id(0), id(0)}); }, {"[batch, units]"});
  expect_error<ValueError>([&] { vocode(*model, {ids({3, 4}), at::Tensor(), id(0)}); }, {"requires spkr_id"});
  expect_error<ValueError>([&] { vocode(*model, {ids({3, 4}), at::zeros({1}, at::kLong), id(0)}); },
                           {"spkr_id must have shape [batch, 1]"});
  expect_error<ValueError>([&] { vocode(*model, {ids({3, 4}), id(0), at::zeros({2, 1}, at::kLong)}); },
                           {"lang_id must have shape [batch, 1] = [1, 1]"});
  expect_error<ValueError>([&] { vocode(*model, {at::ones({1, 3}), id(0), id(0)}); }, {"integer ids"});
  ModelInputs in;
  in.input_ids = ids({3, 4});
  expect_error<ValueError>([&] { model->forward(in); }, {"requires spkr_id"});
}

TEST_F(SeamlessM4TBadInput, HifiGanInputsAndMethods) {
  ModelInputs in;
  expect_error<ValueError>([&] { model->call_method("hifi_gan.forward", in); }, {"requires input_embeds"});
  in.extra["input_embeds"] = at::zeros({1, 27, 5});
  expect_error<ValueError>([&] { model->call_method("hifi_gan.forward", in); }, {"27 channels", "expected 28"});
  in.extra["input_embeds"] = at::zeros({1, 28, 0});
  expect_error<ValueError>([&] { model->call_method("hifi_gan.forward", in); }, {"empty"});
  in.extra["input_embeds"] = at::zeros({28});
  expect_error<ValueError>([&] { model->call_method("hifi_gan.forward", in); }, {"[batch, channels, frames]"});
  expect_error<ValueError>([&] { model->call_method("generate", in); }, {"'generate'", "forward, hifi_gan.forward"});
  // An un-batched [channels, frames] input works, as in transformers ([1, samples] out).
  in.extra["input_embeds"] = at::zeros({28, 5});
  c10::InferenceMode guard;
  EXPECT_EQ(model->call_method("hifi_gan.forward", in).extra["waveform"].dim(), 2);
}

TEST_F(SeamlessM4TBadInput, DurationPredictorKernelOtherThanThreeIsReported) {
  auto config = std::make_shared<SeamlessM4TConfig>(model->cfg());
  config->variance_predictor_kernel_size = 5;
  SeamlessM4TCodeHifiGan other(config);
  other.eval();
  expect_error<ValueError>([&] { vocode(other, {ids({3, 4, 5, 6}), id(0), id(0)}); },
                           {"variance_predictor_kernel_size = 3"});
}

// ---- WAV ----

uint32_t u32(const std::vector<uint8_t>& b, size_t at) {
  return b[at] | b[at + 1] << 8 | b[at + 2] << 16 | static_cast<uint32_t>(b[at + 3]) << 24;
}
uint16_t u16(const std::vector<uint8_t>& b, size_t at) { return static_cast<uint16_t>(b[at] | b[at + 1] << 8); }
std::string tag(const std::vector<uint8_t>& b, size_t at) { return std::string(b.begin() + at, b.begin() + at + 4); }

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> folder_entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// When sox is installed, soxi must agree with the header; the byte-level checks below stand on their own.
void check_with_soxi_if_installed(const std::string& path, int64_t rate, int64_t channels, int64_t bits,
                                  int64_t samples) {
  if (run_command("command -v soxi >/dev/null 2>&1").first != 0) return;
  auto query = [&](const char* flag) {
    auto [rc, out] = run_command("soxi " + std::string(flag) + " " + path + " 2>&1");
    EXPECT_EQ(rc, 0) << out;
    return std::stoll(out);
  };
  EXPECT_EQ(query("-r"), rate);
  EXPECT_EQ(query("-c"), channels);
  EXPECT_EQ(query("-b"), bits);
  EXPECT_EQ(query("-s"), samples);
}

TEST(SeamlessM4TWav, Pcm16HeaderAndSamples) {
  TempDir tmp;
  at::Tensor wave = at::linspace(-1.2, 1.2, 101);  // beyond [-1, 1] at the ends: clipped
  wave[50] = std::numeric_limits<float>::quiet_NaN();
  write_wav(tmp / "a.wav", wave);
  auto b = file_bytes(tmp / "a.wav");
  ASSERT_EQ(b.size(), 44u + 202u);
  EXPECT_EQ(tag(b, 0), "RIFF");
  EXPECT_EQ(u32(b, 4), b.size() - 8);
  EXPECT_EQ(tag(b, 8), "WAVE");
  EXPECT_EQ(tag(b, 12), "fmt ");
  EXPECT_EQ(u32(b, 16), 16u);     // PCM fmt chunk
  EXPECT_EQ(u16(b, 20), 1u);      // WAVE_FORMAT_PCM
  EXPECT_EQ(u16(b, 22), 1u);      // mono
  EXPECT_EQ(u32(b, 24), 16000u);  // config.sampling_rate by default
  EXPECT_EQ(u32(b, 28), 32000u);  // byte rate
  EXPECT_EQ(u16(b, 32), 2u);      // block align
  EXPECT_EQ(u16(b, 34), 16u);     // bits per sample
  EXPECT_EQ(tag(b, 36), "data");
  EXPECT_EQ(u32(b, 40), 202u);
  auto sample = [&](int i) { return static_cast<int16_t>(u16(b, 44 + 2 * i)); };
  EXPECT_EQ(sample(0), -32767);
  EXPECT_EQ(sample(100), 32767);
  EXPECT_EQ(sample(50), 0);  // NaN
  for (int i : {10, 30, 70, 90})
    EXPECT_EQ(sample(i), static_cast<int16_t>(std::nearbyint(std::clamp(wave[i].item<double>(), -1.0, 1.0) * 32767)))
        << i;

  WavData back = read_wav(tmp / "a.wav");
  EXPECT_EQ(back.info.audio_format, 1);
  EXPECT_EQ(back.info.num_channels, 1);
  EXPECT_EQ(back.info.sampling_rate, 16000);
  EXPECT_EQ(back.info.bits_per_sample, 16);
  EXPECT_EQ(back.info.num_frames, 101);
  ASSERT_EQ(back.samples.sizes(), (std::vector<int64_t>{1, 101}));
  at::Tensor want = at::nan_to_num(wave, 0).clamp(-1, 1);
  // Written as x * 32767, read as n / 32768 (as libsndfile and soundfile read).
  EXPECT_TRUE(tensors_close("pcm16 round trip", back.samples[0], want, 2.0 / 32767, 0));
  check_with_soxi_if_installed(tmp / "a.wav", 16000, 1, 16, 101);
}

TEST(SeamlessM4TWav, Float32HeaderFactChunkAndExactSamples) {
  TempDir tmp;
  at::Tensor wave = at::randn({77}) * 0.5;
  write_wav(tmp / "f.wav", wave, {22050, WavFormat::kFloat32});
  auto b = file_bytes(tmp / "f.wav");
  ASSERT_EQ(b.size(), 58u + 77u * 4);
  EXPECT_EQ(tag(b, 0), "RIFF");
  EXPECT_EQ(u32(b, 4), b.size() - 8);
  EXPECT_EQ(tag(b, 8), "WAVE");
  EXPECT_EQ(tag(b, 12), "fmt ");
  EXPECT_EQ(u32(b, 16), 18u);  // non-PCM: cbSize present
  EXPECT_EQ(u16(b, 20), 3u);   // WAVE_FORMAT_IEEE_FLOAT
  EXPECT_EQ(u16(b, 22), 1u);
  EXPECT_EQ(u32(b, 24), 22050u);
  EXPECT_EQ(u32(b, 28), 22050u * 4);
  EXPECT_EQ(u16(b, 32), 4u);
  EXPECT_EQ(u16(b, 34), 32u);
  EXPECT_EQ(u16(b, 36), 0u);  // cbSize
  EXPECT_EQ(tag(b, 38), "fact");
  EXPECT_EQ(u32(b, 42), 4u);
  EXPECT_EQ(u32(b, 46), 77u);  // frames
  EXPECT_EQ(tag(b, 50), "data");
  EXPECT_EQ(u32(b, 54), 77u * 4);
  for (int i = 0; i < 77; ++i) {
    uint32_t bits = u32(b, 58 + 4 * i);
    float f;
    std::memcpy(&f, &bits, 4);
    EXPECT_EQ(f, wave[i].item<float>()) << i;
  }
  WavData back = read_wav(tmp / "f.wav");
  EXPECT_EQ(back.info.audio_format, 3);
  EXPECT_EQ(back.info.sampling_rate, 22050);
  EXPECT_TRUE(at::equal(back.samples[0], wave));
  check_with_soxi_if_installed(tmp / "f.wav", 22050, 1, 32, 77);
}

TEST(SeamlessM4TWav, ChannelsAreInterleaved) {
  TempDir tmp;
  at::Tensor stereo = at::stack({at::full({5}, 0.25), at::full({5}, -0.5)});
  write_wav(tmp / "s.wav", stereo, {8000, WavFormat::kPcm16});
  auto b = file_bytes(tmp / "s.wav");
  EXPECT_EQ(u16(b, 22), 2u);
  EXPECT_EQ(u32(b, 28), 8000u * 4);
  EXPECT_EQ(u16(b, 32), 4u);
  EXPECT_EQ(static_cast<int16_t>(u16(b, 44)), 8192);    // round(0.25 * 32767)
  EXPECT_EQ(static_cast<int16_t>(u16(b, 46)), -16384);  // round(-0.5 * 32767) = -16383.5 -> even
  WavData back = read_wav(tmp / "s.wav");
  EXPECT_EQ(back.samples.sizes(), (std::vector<int64_t>{2, 5}));
  EXPECT_TRUE(tensors_close("stereo", back.samples, stereo, 2.0 / 32767, 0));
}

TEST(SeamlessM4TWav, WritesAtomicallyAndLeavesNothingOnFailure) {
  TempDir tmp;
  write_wav(tmp / "out.wav", at::zeros({10}));
  write_wav(tmp / "out.wav", at::zeros({20}));  // replaces
  EXPECT_EQ(read_wav_info(tmp / "out.wav").num_frames, 20);
  EXPECT_EQ(folder_entries(tmp.str()), std::vector<std::string>{"out.wav"});
  expect_error<AudioError>([&] { write_wav(tmp / "missing/dir/x.wav", at::zeros({4})); }, {"missing/dir"});
  expect_error<AudioError>([&] { write_wav(tmp / "bad.wav", at::zeros({1, 2, 3})); }, {"[samples]"});
  expect_error<AudioError>([&] { write_wav(tmp / "bad.wav", at::zeros({4}), {0, WavFormat::kPcm16}); },
                           {"sampling rate"});
  EXPECT_EQ(folder_entries(tmp.str()), std::vector<std::string>{"out.wav"});
}

TEST(SeamlessM4TWav, MalformedFilesAreAudioErrors) {
  TempDir tmp;
  write_wav(tmp / "ok.wav", at::zeros({10}));
  auto b = file_bytes(tmp / "ok.wav");
  auto write = [&](const std::string& name, std::vector<uint8_t> bytes) {
    std::ofstream(tmp / name, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return tmp / name;
  };
  expect_error<AudioError>([&] { read_wav(write("short.wav", {b.begin(), b.begin() + 30})); }, {"short.wav"});
  auto not_riff = b;
  std::memcpy(not_riff.data(), "RIFX", 4);
  expect_error<AudioError>([&] { read_wav(write("rifx.wav", not_riff)); }, {"RIFF/WAVE"});
  expect_error<AudioError>([&] { read_wav(write("trunc.wav", {b.begin(), b.end() - 4})); }, {"'data' chunk"});
  auto adpcm = b;
  adpcm[20] = 2;
  expect_error<AudioError>([&] { read_wav(write("adpcm.wav", adpcm)); }, {"unsupported WAV sample format 2"});
  expect_error<AudioError>([&] { read_wav(tmp / "none.wav"); }, {"cannot open"});
}

// ---- tfcpp vocode ----

std::string vocode_cmd(const std::string& args) {
  return tfcpp_bin() + " vocode --model " + fixture(kCodeHifiGan) + "/model " + args + " 2>&1";
}

TEST(SeamlessM4TCli, VocodeWritesA16kHzWavOfTheModelsWaveform) {
  TempDir tmp;
  auto [rc, output] = run_command(vocode_cmd("--units \"14 5 18 22 6 0 35 9\" --speaker 0 --lang 3 --out " +
                                             tmp / "out.wav"));
  ASSERT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("16000 Hz"), std::string::npos) << output;
  auto model = load_vocoder(fixture(kCodeHifiGan) + "/model");
  VocoderInputs in{at::tensor({14, 5, 18, 22, 6, 0, 35, 9}, at::kLong).unsqueeze(0), at::zeros({1, 1}, at::kLong),
                   at::full({1, 1}, 3, at::kLong)};
  auto [waveform, lengths] = vocode(*model, in);
  WavData wav = read_wav(tmp / "out.wav");
  EXPECT_EQ(wav.info.audio_format, 1);
  EXPECT_EQ(wav.info.num_channels, 1);
  EXPECT_EQ(wav.info.sampling_rate, 16000);
  EXPECT_EQ(wav.info.bits_per_sample, 16);
  EXPECT_EQ(wav.info.num_frames, lengths.item<int64_t>());
  EXPECT_EQ(wav.info.num_frames, waveform.size(1));  // no pad units: every sample
  EXPECT_TRUE(tensors_close("pcm16 samples", wav.samples[0], waveform[0], 2.0 / 32767, 0));
  check_with_soxi_if_installed(tmp / "out.wav", 16000, 1, 16, wav.info.num_frames);

  auto [rc2, output2] = run_command(vocode_cmd("--units 14,5,18,22,6,0,35,9 -s 0 -l 3 --format float32 --out " +
                                               tmp / "f.wav"));
  ASSERT_EQ(rc2, 0) << output2;
  WavData f = read_wav(tmp / "f.wav");
  EXPECT_EQ(f.info.audio_format, 3);
  EXPECT_TRUE(tensors_close("float32 samples", f.samples[0], waveform[0], 1e-6, 0));
}

TEST(SeamlessM4TCli, VocodeTrimsPadUnitsToLengths) {
  TempDir tmp;
  auto [rc, output] = run_command(vocode_cmd("--units \"31 0 3 13 44 7 1 1\" --speaker 2 --lang 2 --out " +
                                             tmp / "out.wav"));
  ASSERT_EQ(rc, 0) << output;
  auto model = load_vocoder(fixture(kCodeHifiGan) + "/model");
  auto [waveform, lengths] = vocode(*model, {at::tensor({31, 0, 3, 13, 44, 7, 1, 1}, at::kLong).unsqueeze(0),
                                             at::full({1, 1}, 2, at::kLong), at::full({1, 1}, 2, at::kLong)});
  EXPECT_LT(lengths.item<int64_t>(), waveform.size(1));
  EXPECT_EQ(read_wav_info(tmp / "out.wav").num_frames, lengths.item<int64_t>());
}

TEST(SeamlessM4TCli, VocodeBadIdsNameTheValidRange) {
  TempDir tmp;
  struct Case {
    std::string args, message;
  } cases[] = {
      {"--units \"1 2 3\" --speaker 3", "valid speaker ids are 0..2"},
      {"--units \"1 2 3\" --speaker -1", "valid speaker ids are 0..2"},
      {"--units \"1 2 3\" --lang 4", "valid language ids are 0..3"},
      {"--units \"1 60 3\"", "valid unit ids are 0..49"},
      {"--units \"1 x 3\"", "'x' is not an integer unit id"},
      {"--units \" \"", "--units is empty"},
  };
  for (const auto& c : cases) {
    auto [rc, output] = run_command(vocode_cmd(c.args + " --out " + tmp / "bad.wav"));
    EXPECT_EQ(rc, 1) << c.args << ": " << output;
    EXPECT_NE(output.find("error: "), std::string::npos) << output;
    EXPECT_NE(output.find(c.message), std::string::npos) << c.args << ": " << output;
  }
  EXPECT_TRUE(folder_entries(tmp.str()).empty());
  auto [rc, output] = run_command(vocode_cmd("--units \"1 2\" --out " + tmp / "x.wav" + " --format mp3"));
  EXPECT_EQ(rc, 2) << output;
}

}  // namespace
