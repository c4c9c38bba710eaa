// Llama parity against transformers 4.40.2 fixtures, and PreTrainedModel loading/saving semantics on Llama.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/models/llama.h"

#include <c10/core/InferenceMode.h>

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

class LlamaParity : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaParity, ForwardMatchesTransformers) {
  std::string dir = GetParam();
  json expected = read_json(dir + "/expected.json");
  auto model = model_from_pretrained(dir + "/model", expected["class"].get<std::string>(), options_from(expected));
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
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlamaParity, ::testing::ValuesIn(fixture_cases("llama-")),
                         [](const auto& info) {
                           std::string n = fs::path(info.param).filename().string();
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

std::shared_ptr<LlamaConfig> tiny_config(bool tie = false) {
  auto config = std::make_shared<LlamaConfig>();
  config->vocab_size = 61;
  config->hidden_size = 16;
  config->intermediate_size = 24;
  config->num_hidden_layers = 2;
  config->num_attention_heads = 4;
  config->num_key_value_heads = 2;
  config->max_position_embeddings = 32;
  config->tie_word_embeddings = tie;
  config->pad_token_id = 0;
  return config;
}

at::Tensor logits_of(PreTrainedModel& model, const at::Tensor& ids) {
  c10::InferenceMode guard;
  ModelInputs in;
  in.input_ids = ids;
  return model.forward(in).logits;
}

at::Tensor sample_ids() { return at::tensor({1, 5, 9, 33, 2, 17, 60}, at::kLong).unsqueeze(0); }

TEST(LlamaSaveLoad, RoundTripGivesIdenticalOutputs) {
  TempDir tmp;
  auto model = std::make_shared<LlamaForCausalLM>(tiny_config());
  model->save_pretrained(tmp.str());
  EXPECT_TRUE(fs::exists(tmp / "config.json"));
  EXPECT_TRUE(fs::exists(tmp / "model.safetensors"));
  EXPECT_TRUE(fs::exists(tmp / "generation_config.json"));
  json saved = read_json(tmp / "config.json");
  EXPECT_EQ(saved["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(saved["model_type"], "llama");
  EXPECT_EQ(saved["torch_dtype"], "float32");
  auto loaded = AutoModelForCausalLM::from_pretrained(tmp.str());
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(loaded->loading_info.unexpected_keys.empty());
  model->eval();  // as from_pretrained returns a model: both take the inference kernels
  EXPECT_EQ(max_abs_diff(logits_of(*model, sample_ids()), logits_of(*loaded, sample_ids())), 0.0);
}

TEST(LlamaSaveLoad, ShardedSaveLoadsIdentically) {
  TempDir tmp;
  auto model = std::make_shared<LlamaForCausalLM>(tiny_config());
  SavePretrainedOptions options;
  options.max_shard_size = "4KB";
  model->save_pretrained(tmp.str(), options);
  json index = read_json(tmp / "model.safetensors.index.json");
  std::set<std::string> shards;
  int64_t total = 0;
  for (auto& [key, file] : index["weight_map"].items()) shards.insert(file.get<std::string>());
  for (const auto& [k, t] : model->state_dict()) total += t.numel() * 4;
  EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), total);
  EXPECT_GT(shards.size(), 2u);
  for (const auto& s : shards) {
    EXPECT_TRUE(fs::exists(tmp / s)) << s;
    EXPECT_NE(s.find("-of-"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(tmp / "model.safetensors"));
  auto loaded = AutoModelForCausalLM::from_pretrained(tmp.str());
  model->eval();  // as from_pretrained returns a model: both take the inference kernels
  EXPECT_EQ(max_abs_diff(logits_of(*model, sample_ids()), logits_of(*loaded, sample_ids())), 0.0);
  // A later unsharded save into the same folder removes the stale shards and index.
  model->save_pretrained(tmp.str());
  EXPECT_TRUE(fs::exists(tmp / "model.safetensors"));
  EXPECT_FALSE(fs::exists(tmp / "model.safetensors.index.json"));
  for (const auto& s : shards) EXPECT_FALSE(fs::exists(tmp / s)) << s;
}

TEST(LlamaSaveLoad, TiedWeightsAreStoredOnce) {
  TempDir tmp;
  auto model = std::make_shared<LlamaForCausalLM>(tiny_config(/*tie=*/true));
  EXPECT_TRUE(model->lm_head->weight.is_same(model->model->embed_tokens->weight));
  model->save_pretrained(tmp.str());
  safetensors::SafeOpen file(tmp / "model.safetensors");
  EXPECT_TRUE(file.contains("model.embed_tokens.weight"));
  EXPECT_FALSE(file.contains("lm_head.weight"));
  auto loaded = LlamaForCausalLM::from_pretrained(tmp.str());
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(loaded->lm_head->weight.is_same(loaded->model->embed_tokens->weight));
  model->eval();  // as from_pretrained returns a model: both take the inference kernels
  EXPECT_EQ(max_abs_diff(logits_of(*model, sample_ids()), logits_of(*loaded, sample_ids())), 0.0);
  // Parameters count tied weights once, as Python's model.parameters() does.
  int64_t untied = std::make_shared<LlamaForCausalLM>(tiny_config(false))->num_parameters();
  EXPECT_EQ(model->num_parameters() + 61 * 16, untied);
}

TEST(LlamaSaveLoad, BaseCheckpointIntoHeadModel) {
  TempDir tmp;
  auto base = std::make_shared<LlamaModel>(tiny_config());
  base->save_pretrained(tmp.str());
  auto head = LlamaForCausalLM::from_pretrained(tmp.str());
  EXPECT_EQ(head->loading_info.missing_keys, std::vector<std::string>{"lm_head.weight"});
  EXPECT_TRUE(head->loading_info.unexpected_keys.empty());
  EXPECT_TRUE(at::equal(head->model->embed_tokens->weight, base->embed_tokens->weight));
  EXPECT_TRUE(at::equal(head->model->layers->operator[](1)->mlp->down_proj->weight,
                        base->layers->operator[](1)->mlp->down_proj->weight));
  // The missing head was initialised (normal(0, initializer_range)), not left as garbage.
  double std = head->lm_head->weight.std().item<double>();
  EXPECT_GT(std, 0.01);
  EXPECT_LT(std, 0.03);
}

TEST(LlamaSaveLoad, HeadCheckpointIntoBaseModel) {
  TempDir tmp;
  auto head = std::make_shared<LlamaForCausalLM>(tiny_config());
  head->save_pretrained(tmp.str());
  auto base = model_from_pretrained(tmp.str(), "LlamaModel");
  EXPECT_TRUE(base->loading_info.missing_keys.empty());
  EXPECT_EQ(base->loading_info.unexpected_keys, std::vector<std::string>{"lm_head.weight"});
  auto typed = std::dynamic_pointer_cast<LlamaModel>(base);
  EXPECT_TRUE(at::equal(typed->norm->weight, head->model->norm->weight));
}

TEST(LlamaSaveLoad, BfloatDtypeAndAuto) {
  TempDir tmp;
  auto model = std::make_shared<LlamaForCausalLM>(tiny_config());
  SavePretrainedOptions options;
  options.dtype = "bfloat16";
  model->save_pretrained(tmp.str(), options);
  EXPECT_EQ(read_json(tmp / "config.json")["torch_dtype"], "bfloat16");
  EXPECT_EQ(safetensors::SafeOpen(tmp / "model.safetensors").info("lm_head.weight").dtype, "BF16");
  FromPretrainedOptions load;
  EXPECT_EQ(AutoModelForCausalLM::from_pretrained(tmp.str(), load)->dtype(), at::kFloat);
  load.dtype = "auto";
  auto bf16 = AutoModelForCausalLM::from_pretrained(tmp.str(), load);
  EXPECT_EQ(bf16->dtype(), at::kBFloat16);
  EXPECT_EQ(logits_of(*bf16, sample_ids()).scalar_type(), at::kFloat);
  EXPECT_LT(max_abs_diff(logits_of(*bf16, sample_ids()), logits_of(*model, sample_ids())), 0.1);
}

TEST(LlamaSaveLoad, Float16VariantComputesInFloat32) {
  TempDir tmp;
  auto model = std::make_shared<LlamaForCausalLM>(tiny_config());
  SavePretrainedOptions options;
  options.dtype = "float16";
  options.variant = "fp16";
  model->save_pretrained(tmp.str(), options);
  EXPECT_TRUE(fs::exists(tmp / "model.fp16.safetensors"));
  EXPECT_THROW(AutoModelForCausalLM::from_pretrained(tmp.str()), CheckpointError);
  FromPretrainedOptions load;
  load.variant = "fp16";
  load.dtype = "auto";
  auto loaded = AutoModelForCausalLM::from_pretrained(tmp.str(), load);
  EXPECT_EQ(loaded->dtype(), at::kFloat);
  EXPECT_LT(max_abs_diff(logits_of(*loaded, sample_ids()), logits_of(*model, sample_ids())), 1e-2);
}

// ---- Bad input: each a typed error naming the file / key ----

void copy_fixture_model(const std::string& to) {
  fs::copy(fixture("llama-for-causal-lm") + "/model", to, fs::copy_options::recursive);
}

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

TEST(LlamaBadInput, MissingConfig) {
  TempDir tmp;
  copy_fixture_model(tmp / "m");
  fs::remove(tmp / "m/config.json");
  expect_error<ConfigError>([&] { AutoModelForCausalLM::from_pretrained(tmp / "m"); }, {"config.json"});
}

TEST(LlamaBadInput, UnknownModelType) {
  TempDir tmp;
  copy_fixture_model(tmp / "m");
  json config = read_json(tmp / "m/config.json");
  config["model_type"] = "no-such-model";
  write_json_file(config, tmp / "m/config.json");
  expect_error<ConfigError>([&] { AutoModelForCausalLM::from_pretrained(tmp / "m"); },
                            {"no-such-model", "config.json", "llama"});
}

TEST(LlamaBadInput, WrongTypeInConfig) {
  TempDir tmp;
  copy_fixture_model(tmp / "m");
  json config = read_json(tmp / "m/config.json");
  config["hidden_size"] = "thirty-two";
  write_json_file(config, tmp / "m/config.json");
  expect_error<ConfigError>([&] { AutoModelForCausalLM::from_pretrained(tmp / "m"); }, {"hidden_size", "config.json"});
}

TEST(LlamaBadInput, WeightShapeMismatch) {
  TempDir tmp;
  copy_fixture_model(tmp / "m");
  json config = read_json(tmp / "m/config.json");
  config["vocab_size"] = 100;
  write_json_file(config, tmp / "m/config.json");
  expect_error<CheckpointError>([&] { AutoModelForCausalLM::from_pretrained(tmp / "m"); },
                                {"size mismatch for lm_head.weight", "model.safetensors", "[99, 32]", "[100, 32]"});
  FromPretrainedOptions options;
  options.ignore_mismatched_sizes = true;
  auto model = AutoModelForCausalLM::from_pretrained(tmp / "m", options);
  EXPECT_EQ(model->loading_info.mismatched_keys.size(), 2u);  // embed_tokens and lm_head
}

TEST(LlamaBadInput, MissingWeightsFile) {
  TempDir tmp;
  copy_fixture_model(tmp / "m");
  fs::remove(tmp / "m/model.safetensors");
  expect_error<CheckpointError>([&] { AutoModelForCausalLM::from_pretrained(tmp / "m"); }, {"model.safetensors", tmp / "m"});
}

TEST(LlamaBadInput, TruncatedWeights) {
  TempDir tmp;
  copy_fixture_model(tmp / "m");
  fs::resize_file(tmp / "m/model.safetensors", fs::file_size(tmp / "m/model.safetensors") - 100);
  expect_error<CheckpointError>([&] { AutoModelForCausalLM::from_pretrained(tmp / "m"); }, {"model.safetensors"});
}

TEST(LlamaBadInput, MissingShard) {
  TempDir tmp;
  auto model = std::make_shared<LlamaForCausalLM>(tiny_config());
  SavePretrainedOptions options;
  options.max_shard_size = "4KB";
  model->save_pretrained(tmp.str(), options);
  fs::remove(tmp / "model-00002-of-00003.safetensors");
  json index = read_json(tmp / "model.safetensors.index.json");
  std::string second;
  for (auto& [k, f] : index["weight_map"].items())
    if (f.get<std::string>().find("-00002-") != std::string::npos) second = f.get<std::string>();
  if (fs::exists(tmp / second)) fs::remove(tmp / second);
  expect_error<CheckpointError>([&] { AutoModelForCausalLM::from_pretrained(tmp.str()); }, {"-00002-of-", "index.json"});
}

TEST(LlamaBadInput, BadRopeScaling) {
  TempDir tmp;
  copy_fixture_model(tmp / "m");
  json config = read_json(tmp / "m/config.json");
  config["rope_scaling"] = {{"type", "cubic"}, {"factor", 2.0}};
  write_json_file(config, tmp / "m/config.json");
  expect_error<ConfigError>([&] { AutoModelForCausalLM::from_pretrained(tmp / "m"); }, {"rope_scaling", "cubic"});
}

TEST(LlamaBadInput, UnknownAttentionImplementation) {
  FromPretrainedOptions options;
  options.attn_implementation = "flash_attention_9";
  expect_error<ValueError>([&] { AutoModelForCausalLM::from_pretrained(fixture("llama-for-causal-lm") + "/model", options); },
                           {"flash_attention_9", "eager", "sdpa"});
}

TEST(LlamaAttention, SdpaMatchesEager) {
  std::string dir = fixture("llama-for-causal-lm-gqa") + "/model";
  auto eager = AutoModelForCausalLM::from_pretrained(dir);
  FromPretrainedOptions options;
  options.attn_implementation = "sdpa";
  auto sdpa = AutoModelForCausalLM::from_pretrained(dir, options);
  EXPECT_EQ(sdpa->config->_attn_implementation(), "sdpa");
  at::Tensor ids = at::tensor({1, 5, 9, 33, 2, 17, 60}, at::kLong).unsqueeze(0);
  EXPECT_LT(max_abs_diff(logits_of(*eager, ids), logits_of(*sdpa, ids)), 1e-5);
}

TEST(LlamaCache, IncrementalDecodingMatchesFullForward) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_config());
  c10::InferenceMode guard;
  at::Tensor ids = sample_ids();
  at::Tensor full = logits_of(*model, ids);
  ModelInputs in;
  in.input_ids = ids.narrow(1, 0, 4);
  ModelOutput out = model->forward(in);
  for (int64_t t = 4; t < ids.size(1); ++t) {
    ModelInputs step;
    step.input_ids = ids.narrow(1, t, 1);
    step.past_key_values = out.past_key_values;
    out = model->forward(step);
    EXPECT_LT(max_abs_diff(out.logits.squeeze(1), full.select(1, t)), 1e-5) << "position " << t;
  }
  EXPECT_EQ(out.past_key_values->get_seq_length(), ids.size(1));
}

TEST(LlamaTraining, LossAndGradients) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_config());
  model->train();
  ModelInputs in;
  in.input_ids = sample_ids();
  in.labels = sample_ids();
  ModelOutput out = model->forward(in);
  // Hand computation: mean cross entropy of shifted logits.
  at::Tensor logits = out.logits.narrow(1, 0, 6).reshape({6, 61});
  at::Tensor labels = sample_ids().narrow(1, 1, 6).reshape({6});
  at::Tensor manual = -at::log_softmax(logits, -1).gather(1, labels.unsqueeze(1)).mean();
  EXPECT_NEAR(out.loss.item<double>(), manual.item<double>(), 1e-6);
  out.loss.backward();
  EXPECT_TRUE(model->lm_head->weight.grad().defined());
  EXPECT_GT(model->model->embed_tokens->weight.grad().abs().sum().item<double>(), 0.0);
}

}  // namespace
