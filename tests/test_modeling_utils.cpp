// PreTrainedModel operations on Llama: resize_token_embeddings, attention dispatch (eager == sdpa == flash),
// gradient checkpointing, prune_heads support errors; the ModuleUtilsMixin inputs (dummy inputs, extended masks,
// padding warning), _keep_in_fp32_modules and _no_split_modules over the families.
#include "test_util.h"

#include "transformers/attention.h"
#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/logging.h"
#include "transformers/safetensors.h"
#include "transformers/models/llama.h"
#include "transformers/models/seamless_m4t.h"

#include <c10/core/InferenceMode.h>

#include <fstream>

using namespace transformers;
using namespace tfcpp_test;

namespace {

std::shared_ptr<LlamaConfig> tiny_llama(bool tie) {
  auto config = std::make_shared<LlamaConfig>();
  config->vocab_size = 50;
  config->hidden_size = 16;
  config->intermediate_size = 24;
  config->num_hidden_layers = 2;
  config->num_attention_heads = 4;
  config->num_key_value_heads = 2;
  config->max_position_embeddings = 256;
  config->tie_word_embeddings = tie;
  config->pad_token_id = 0;
  return config;
}

at::Tensor ids() { return at::tensor({1, 5, 9, 33, 2, 17, 40}, at::kLong).unsqueeze(0); }

at::Tensor logits_of(PreTrainedModel& model, const at::Tensor& input_ids, const at::Tensor& mask = {}) {
  c10::InferenceMode guard;
  ModelInputs in;
  in.input_ids = input_ids;
  in.attention_mask = mask;
  return model.forward(in).logits;
}

class ModelingUtilsResize : public ::testing::TestWithParam<bool> {};

TEST_P(ModelingUtilsResize, GrowAndShrinkKeepOldRows) {
  const bool tie = GetParam();
  torch::manual_seed(0);
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(tie));
  at::Tensor before = logits_of(*model, ids());
  at::Tensor old_embed = model->model->embed_tokens->weight.clone();
  at::Tensor old_head = model->lm_head->weight.clone();

  auto embeddings = model->resize_token_embeddings(60);
  EXPECT_EQ(embeddings->weight.size(0), 60);
  EXPECT_EQ(std::dynamic_pointer_cast<LlamaConfig>(model->config)->vocab_size, 60);
  EXPECT_EQ(model->lm_head->weight.size(0), 60);
  EXPECT_EQ(model->lm_head->weight.is_same(model->model->embed_tokens->weight), tie);
  EXPECT_TRUE(at::equal(embeddings->weight.narrow(0, 0, 50), old_embed));
  EXPECT_TRUE(at::equal(model->lm_head->weight.narrow(0, 0, 50), old_head));
  // New rows come from _init_weights (normal(0, 0.02)), not zeros or garbage.
  double std = embeddings->weight.narrow(0, 50, 10).std().item<double>();
  EXPECT_GT(std, 0.005);
  EXPECT_LT(std, 0.05);
  // Logits of the old vocabulary are unchanged.
  EXPECT_LT(max_abs_diff(logits_of(*model, ids()).narrow(-1, 0, 50), before), 1e-6);

  model->resize_token_embeddings(std::nullopt, 64);
  EXPECT_EQ(model->get_input_embeddings()->num_embeddings, 64);
  model->resize_token_embeddings(41, 8);  // rounds up to 48
  EXPECT_EQ(model->get_input_embeddings()->num_embeddings, 48);
  EXPECT_EQ(model->lm_head->weight.size(0), 48);
  EXPECT_TRUE(at::equal(model->get_input_embeddings()->weight.narrow(0, 0, 48), old_embed.narrow(0, 0, 48)) ||
              !tie);

  TempDir tmp;
  model->save_pretrained(tmp.str());
  EXPECT_EQ(read_json(tmp / "config.json")["vocab_size"], 48);
  auto loaded = AutoModelForCausalLM::from_pretrained(tmp.str());
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  // Same weights; the fused kernels may sum in another order for differently aligned (memory-mapped) weights.
  EXPECT_LT(max_abs_diff(logits_of(*loaded, ids()), logits_of(*model, ids())), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(TiedAndUntied, ModelingUtilsResize, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "tied" : "untied"; });

TEST(ModelingUtilsResize, NoArgumentsReturnsEmbeddingsUnchanged) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(false));
  auto embeddings = model->resize_token_embeddings(std::nullopt);
  EXPECT_EQ(embeddings.get(), model->model->embed_tokens.get());
  EXPECT_THROW(model->resize_token_embeddings(10, 0), ValueError);
}

// ---- Attention dispatch ----

class ModelingUtilsAttention : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelingUtilsAttention, AgreesWithEager) {
  std::string dir = fixture("llama-for-causal-lm-gqa") + "/model";
  auto eager = AutoModelForCausalLM::from_pretrained(dir);
  FromPretrainedOptions options;
  options.attn_implementation = GetParam();
  auto other = AutoModelForCausalLM::from_pretrained(dir, options);
  EXPECT_EQ(other->config->_attn_implementation(), GetParam());
  // Left padding in row 1: compare only real (unpadded) positions.
  at::Tensor input_ids = at::tensor({1, 5, 9, 33, 2, 17, 60, 0, 0, 1, 4, 8, 15, 16}, at::kLong).view({2, 7});
  at::Tensor mask = at::tensor({1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1}, at::kLong).view({2, 7});
  at::Tensor a = logits_of(*eager, input_ids, mask), b = logits_of(*other, input_ids, mask);
  EXPECT_LT(max_abs_diff(a[0], b[0]), 1e-4);
  EXPECT_LT(max_abs_diff(a[1].narrow(0, 2, 5), b[1].narrow(0, 2, 5)), 1e-4);
  // A long sequence (several 128-blocks for the tiled kernel) and incremental decoding with a cache.
  at::Tensor long_ids = at::randint(1, 99, {1, 300}, at::kLong);
  EXPECT_LT(max_abs_diff(logits_of(*eager, long_ids), logits_of(*other, long_ids)), 1e-4);
  c10::InferenceMode guard;
  ModelInputs prefill;
  prefill.input_ids = long_ids.narrow(1, 0, 299);
  ModelOutput out = other->forward(prefill);
  ModelInputs step;
  step.input_ids = long_ids.narrow(1, 299, 1);
  step.past_key_values = out.past_key_values;
  at::Tensor last = other->forward(step).logits.squeeze(1);
  EXPECT_LT(max_abs_diff(last, logits_of(*eager, long_ids).select(1, 299)), 1e-4);
  // output_attentions falls back to eager and returns the weights.
  ModelInputs with_weights;
  with_weights.input_ids = input_ids;
  with_weights.attention_mask = mask;
  with_weights.output_attentions = true;
  ModelOutput w = other->forward(with_weights);
  ASSERT_EQ(w.attentions.size(), 2u);
  ModelOutput we = eager->forward(with_weights);
  EXPECT_LT(max_abs_diff(w.attentions[1][0], we.attentions[1][0]), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Implementations, ModelingUtilsAttention, ::testing::Values("sdpa", "flash_attention_2"));

TEST(ModelingUtilsAttention, UnknownOrUnsupportedImplementationIsAClearError) {
  auto config = tiny_llama(false);
  config->attn_implementation_internal = "paged_magic";
  try {
    model_from_config(config, "LlamaForCausalLM");
    FAIL();
  } catch (const ValueError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("paged_magic"), std::string::npos);
    EXPECT_NE(what.find("flash_attention_2"), std::string::npos);
  }
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(false));
  model->_supports_sdpa = false;  // as a family without sdpa would declare
  EXPECT_THROW(model->set_attn_implementation("sdpa"), ValueError);
  model->set_attn_implementation("");
  EXPECT_EQ(model->config->_attn_implementation(), "eager");
}

// ---- Gradient checkpointing ----

TEST(ModelingUtilsGradientCheckpointing, SameGradientsAndNoCache) {
  torch::manual_seed(3);
  auto config = tiny_llama(false);
  config->attention_dropout = 0.1;  // dropout masks must be replayed in the recomputation
  auto model = std::make_shared<LlamaForCausalLM>(config);
  model->train();
  auto grads = [&](bool enable) {
    if (enable) model->gradient_checkpointing_enable();
    else model->gradient_checkpointing_disable();
    for (auto& p : model->parameters()) p.mutable_grad() = at::Tensor();
    torch::manual_seed(7);
    ModelInputs in;
    in.input_ids = ids();
    in.labels = ids();
    ModelOutput out = model->forward(in);
    EXPECT_EQ(out.past_key_values == nullptr, enable);  // use_cache forced off while checkpointing
    out.loss.backward();
    std::vector<at::Tensor> g;
    for (const auto& p : model->parameters()) g.push_back(p.grad().clone());
    return std::make_pair(out.loss.item<double>(), g);
  };
  auto [loss_plain, plain] = grads(false);
  auto [loss_ckpt, ckpt] = grads(true);
  EXPECT_TRUE(model->is_gradient_checkpointing());
  EXPECT_TRUE(model->model->is_gradient_checkpointing());
  EXPECT_DOUBLE_EQ(loss_plain, loss_ckpt);
  ASSERT_EQ(plain.size(), ckpt.size());
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_LT(max_abs_diff(plain[i], ckpt[i]), 1e-6) << "parameter " << i;
}

TEST(ModelingUtilsGradientCheckpointing, FrozenEmbeddingsWithInputRequireGrads) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(false));
  model->train();
  model->gradient_checkpointing_enable();
  model->enable_input_require_grads();
  model->model->embed_tokens->weight.requires_grad_(false);
  ModelInputs in;
  in.input_ids = ids();
  in.labels = ids();
  model->forward(in).loss.backward();
  EXPECT_TRUE(model->model->layers->operator[](0)->mlp->up_proj->weight.grad().defined());
  EXPECT_FALSE(model->model->embed_tokens->weight.grad().defined());
}

TEST(ModelingUtilsCard, ModelTagsAreSavedInAModelCard) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(false));
  model->add_model_tags({"trl", "sft"});
  model->add_model_tags({"sft", "lora"});
  EXPECT_EQ(model->model_tags, (std::vector<std::string>{"trl", "sft", "lora"}));
  TempDir tmp;
  model->save_pretrained(tmp.str());
  std::ifstream in(tmp / "README.md");
  std::string card((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(card.rfind("---\nlibrary_name: transformers\ntags:\n- trl\n- sft\n- lora\n---\n", 0), 0u) << card;
}

TEST(ModelingUtilsCard, FloatingPointOps) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(false));
  ModelInputs in;
  in.input_ids = ids();
  int64_t non_embedding = model->num_parameters(false, true);
  EXPECT_EQ(non_embedding, model->num_parameters() - 50 * 16);  // lm_head is a Linear, so it counts
  EXPECT_EQ(model->floating_point_ops(in), 6 * 7 * non_embedding);
  EXPECT_EQ(model->floating_point_ops(in, false), 6 * 7 * model->num_parameters());
}

TEST(ModelingUtilsHeads, FamiliesWithoutPruningSaySo) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(false));
  try {
    model->prune_heads({{0, {1}}});
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("does not support prune_heads"), std::string::npos);
  }
}

// Captures library log messages while alive.
class LogCapture {
 public:
  LogCapture() {
    logging::set_handler([this](int, const std::string& message) { messages.push_back(message); });
  }
  ~LogCapture() { logging::set_handler({}); }
  std::vector<std::string> messages;
};

TEST(ModelingUtilsInputs, DummyInputsRunEachFamily) {
  c10::InferenceMode guard;
  for (const char* name : {"bert-model", "gpt2-lm-head-model", "llama-for-causal-lm", "camembert-model"}) {
    auto model = AutoModel::from_pretrained(fixture(name) + "/model");
    ModelInputs in = model->dummy_inputs();
    ASSERT_EQ(in.input_ids.sizes(), (std::vector<int64_t>{3, 5})) << name;
    EXPECT_EQ(in.input_ids[0][0].item<int64_t>(), 7);
    EXPECT_EQ(in.input_ids[2][4].item<int64_t>(), 5);
    EXPECT_EQ(model->forward(in).last_hidden_state.size(0), 3) << name;
  }
  auto t5 = AutoModelForSeq2SeqLM::from_pretrained(fixture("t5-for-conditional-generation") + "/model");
  ModelInputs in = t5->dummy_inputs();
  EXPECT_TRUE(in.decoder_input_ids.equal(in.input_ids));
  EXPECT_EQ(in.decoder_attention_mask.sum().item<int64_t>(), 10);  // DUMMY_MASK
  at::Tensor logits = t5->forward(in).logits;
  EXPECT_EQ(logits.size(0), 3);
  EXPECT_EQ(logits.size(1), 5);
  auto bb = AutoModelForSeq2SeqLM::from_pretrained(fixture("blenderbot-small-for-conditional-generation") + "/model");
  in = bb->dummy_inputs();
  const int64_t pad = *bb->config->pad_token_id;
  EXPECT_EQ(in.input_ids[1][4].item<int64_t>(), pad);
  EXPECT_TRUE(in.attention_mask.equal(in.input_ids.ne(pad)));
  EXPECT_EQ(bb->forward(in).logits.size(0), 2);
}

TEST(ModelingUtilsInputs, ExtendedAndInvertedAttentionMasks) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(false));
  const double min = std::numeric_limits<float>::lowest();
  at::Tensor mask = at::tensor({1, 1, 0, 1, 1, 1}, at::kLong).view({2, 3});
  at::Tensor ext = model->get_extended_attention_mask(mask, {2, 3});
  ASSERT_EQ(ext.sizes(), (std::vector<int64_t>{2, 1, 1, 3}));
  EXPECT_EQ(ext.scalar_type(), at::kFloat);
  EXPECT_EQ(ext[0][0][0][2].item<double>(), min);
  EXPECT_EQ(ext[0][0][0][1].item<double>(), 0.0);
  model->config->is_decoder = true;  // causal on top, with a cached prefix fully visible
  at::Tensor causal = model->get_extended_attention_mask(at::ones({1, 4}, at::kLong), {1, 2});
  ASSERT_EQ(causal.sizes(), (std::vector<int64_t>{1, 1, 2, 4}));
  EXPECT_EQ(causal[0][0][0][3].item<double>(), min);
  EXPECT_EQ(causal[0][0][0][2].item<double>(), 0.0);
  EXPECT_EQ(causal[0][0][1][3].item<double>(), 0.0);
  at::Tensor inverted = model->invert_attention_mask(mask);
  EXPECT_TRUE(inverted.equal(get_extended_attention_mask(mask, {2, 3}, /*is_decoder=*/false, at::kFloat)));
  EXPECT_EQ(inverted[0][0][0][2].item<double>(), min);
  EXPECT_EQ(inverted.sizes(), (std::vector<int64_t>{2, 1, 1, 3}));
  EXPECT_EQ(model->invert_attention_mask(at::ones({2, 4, 3})).sizes(), (std::vector<int64_t>{2, 1, 4, 3}));
  EXPECT_THROW(model->get_extended_attention_mask(at::ones({3}), {1, 3}), ValueError);
  EXPECT_THROW(model->invert_attention_mask(at::ones({1, 1, 1, 3})), ValueError);
  EXPECT_EQ(finfo_min(at::kBFloat16), -3.3895313892515355e+38);
  EXPECT_EQ(finfo_min(at::kHalf), -65504.0);
}

TEST(ModelingUtilsInputs, PaddingWithoutAttentionMaskWarnsOnce) {
  c10::InferenceMode guard;
  auto model = AutoModel::from_pretrained(fixture("bert-model") + "/model");
  // warning_once is per process (other tests may already have padded inputs): a pad id equal to the bos id gives
  // this test its own message, transformers' "You may ignore this warning ..." addition.
  const int64_t pad = 3;
  model->config->pad_token_id = pad;
  model->config->bos_token_id = pad;
  ModelInputs in;
  in.input_ids = at::tensor(std::vector<int64_t>{5, 6, 7, pad}).unsqueeze(0);
  LogCapture log;
  in.attention_mask = at::ones({1, 4}, at::kLong);
  model->forward(in);
  EXPECT_TRUE(log.messages.empty());  // a mask was given
  in.attention_mask = at::Tensor();
  model->forward(in);
  model->forward(in);
  std::vector<std::string> padded;
  for (const auto& m : log.messages)
    if (m.find("strongly recommend passing in an `attention_mask`") != std::string::npos) padded.push_back(m);
  ASSERT_EQ(padded.size(), 1u);  // warning_once
  EXPECT_NE(padded[0].find("You may ignore this warning if your `pad_token_id` (3) is identical to the `bos_token_id` "
                           "(3)"),
            std::string::npos)
      << padded[0];
  in.input_ids = at::tensor({5, 6, 7, 8}, at::kLong).unsqueeze(0);
  log.messages.clear();
  model->forward(in);
  EXPECT_TRUE(log.messages.empty());
}

TEST(ModelingUtilsInputs, FloatingPointOpsWithoutMainInputWarnsOncePerModel) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(false));
  LogCapture log;
  ModelInputs in;
  in.inputs_embeds = at::zeros({1, 7, 16});
  EXPECT_EQ(model->floating_point_ops(in), 0);
  EXPECT_EQ(model->floating_point_ops(in), 0);
  EXPECT_TRUE(model->warnings_issued.at("estimate_tokens"));
  ASSERT_EQ(log.messages.size(), 1u);
  EXPECT_NE(log.messages[0].find("Could not estimate the number of tokens"), std::string::npos);
}

TEST(ModelingUtilsDtype, KeepInFp32ModulesStayFloat32InAFloat16Save) {
  auto model = AutoModelForSeq2SeqLM::from_pretrained(fixture("t5-for-conditional-generation") + "/model");
  EXPECT_EQ(model->_keep_in_fp32_modules, (std::vector<std::string>{"wo"}));
  TempDir tmp;
  SavePretrainedOptions options;
  options.dtype = "float16";
  model->save_pretrained(tmp.str(), options);
  int wo = 0, half = 0;
  for (const auto& [key, tensor] : safetensors::load_file(tmp / "model.safetensors")) {
    if (key.find(".wo.") != std::string::npos) {
      ++wo;
      EXPECT_EQ(tensor.scalar_type(), at::kFloat) << key;
    } else if (at::isFloatingType(tensor.scalar_type())) {
      ++half;
      EXPECT_EQ(tensor.scalar_type(), at::kHalf) << key;
    }
  }
  EXPECT_GT(wo, 0);
  EXPECT_GT(half, 0);
  // bfloat16 is not float16: transformers keeps the modules in fp32 only for float16.
  options.dtype = "bfloat16";
  TempDir tmp2;
  model->save_pretrained(tmp2.str(), options);
  for (const auto& [key, tensor] : safetensors::load_file(tmp2 / "model.safetensors")) {
    if (key.find(".wo.") != std::string::npos) {
      EXPECT_EQ(tensor.scalar_type(), at::kBFloat16) << key;
    }
  }
  auto reloaded = AutoModelForSeq2SeqLM::from_pretrained(tmp.str());
  EXPECT_EQ(reloaded->config->torch_dtype.value_or(""), "float16");
}

TEST(ModelingUtilsDeviceMap, EmptyNoSplitModulesIsSupportedUnsetIsNot) {
  auto camembert = AutoModel::from_pretrained(fixture("camembert-model") + "/model");
  EXPECT_TRUE(camembert->_get_no_split_modules("auto").empty());
  auto hifigan = SeamlessM4TCodeHifiGan::from_pretrained(fixture("seamless-m4t-code-hifigan") + "/model");
  EXPECT_TRUE(hifigan->_get_no_split_modules("auto").empty());
  auto gpt2 = AutoModelForCausalLM::from_pretrained(fixture("gpt2-lm-head-model") + "/model");
  EXPECT_EQ(gpt2->_get_no_split_modules("auto"), (std::vector<std::string>{"GPT2Block"}));
  auto bert = AutoModel::from_pretrained(fixture("bert-model") + "/model");
  try {
    bert->_get_no_split_modules("balanced");
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("BertModel does not support `device_map='balanced'`"), std::string::npos)
        << e.what();
  }
}

TEST(ModelingUtilsTying, TorchscriptClonesInsteadOfSharing) {
  auto shared = std::make_shared<LlamaForCausalLM>(tiny_llama(true));
  EXPECT_TRUE(shared->lm_head->weight.is_same(shared->get_input_embeddings()->weight));
  auto config = tiny_llama(true);
  config->torchscript = true;
  auto cloned = std::make_shared<LlamaForCausalLM>(config);
  at::Tensor in = cloned->get_input_embeddings()->weight, out = cloned->lm_head->weight;
  EXPECT_FALSE(out.is_same(in));
  EXPECT_NE(out.data_ptr(), in.data_ptr());
  EXPECT_TRUE(at::equal(out, in));
  TempDir tmp;
  cloned->save_pretrained(tmp.str());  // two tensors: both stored, as transformers stores a torchscript model
  auto reloaded = AutoModelForCausalLM::from_pretrained(tmp.str());
  EXPECT_TRUE(reloaded->loading_info.unexpected_keys.empty());
  cloned->eval();  // as from_pretrained returns a model: both take the inference kernels
  EXPECT_TRUE(at::equal(logits_of(*reloaded, ids()), logits_of(*cloned, ids())));
}

}  // namespace
