// Weight-only quantization (quantization.h): kernels against the dequantized matmul, int4 packing, the quantizer's
// module selection, quantize -> save -> load, dequantize, footprint, to() errors, error vs float on stories260K, CLI.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/models/gpt2.h"
#include "transformers/models/llama.h"
#include "transformers/quantization.h"

#include <c10/core/InferenceMode.h>

#include <fstream>

using namespace transformers;
using namespace tfcpp_test;

namespace {

std::shared_ptr<LlamaConfig> tiny_llama(bool tie) {
  auto config = std::make_shared<LlamaConfig>();
  config->vocab_size = 60;
  config->hidden_size = 64;
  config->intermediate_size = 96;
  config->num_hidden_layers = 2;
  config->num_attention_heads = 4;
  config->num_key_value_heads = 2;
  config->max_position_embeddings = 128;
  config->tie_word_embeddings = tie;
  return config;
}

at::Tensor ids() { return at::tensor({1, 5, 9, 33, 2, 17, 40, 11}, at::kLong).unsqueeze(0); }

at::Tensor logits_of(PreTrainedModel& model, const at::Tensor& input_ids) {
  c10::InferenceMode guard;
  ModelInputs in;
  in.input_ids = input_ids;
  return model.forward(in).logits;
}

// A saved random tiny Llama (float), for from_pretrained.
std::string save_tiny(const TempDir& tmp, bool tie) {
  torch::manual_seed(0);
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama(tie));
  model->save_pretrained(tmp / "float");
  return tmp / "float";
}

FromPretrainedOptions quantized(const std::string& method, int64_t group_size = 32) {
  FromPretrainedOptions o;
  o.quantization_config = {{"quant_method", method}, {"group_size", group_size}};
  return o;
}

nn::Linear make_linear(int64_t in, int64_t out, bool bias) {
  nn::Linear l(in, out, bias);
  at::NoGradGuard no_grad;
  l.weight.normal_(0, 0.2);
  if (bias) l.bias.normal_(0, 0.1);
  return l;
}

TEST(Quantization, GPT2Conv1DLayersAreConverted) {
  c10::InferenceMode guard;
  const std::string dir = fixture("gpt2-lm-head-model") + "/model";
  auto model = AutoModelForCausalLM::from_pretrained(dir);
  ModelInputs in;
  in.input_ids = at::tensor(std::vector<int64_t>{3, 17, 25, 9, 1}).unsqueeze(0);
  at::Tensor reference = model->forward(in).logits;
  auto conv = std::dynamic_pointer_cast<nn::Conv1D>(model->named_modules()["transformer.h.0.attn.c_attn"]);
  ASSERT_TRUE(conv);
  const int64_t nf = conv->nf, nx = conv->nx;
  const int n_layer = static_cast<int>(std::dynamic_pointer_cast<GPT2Config>(model->config)->n_layer);
  at::Tensor float_weight = conv->weight.clone();  // [nx, nf]
  // Every Conv1D (4 per block) is converted; the tied lm_head stays float.
  const int converted = quantize_model(*model, {{"quant_method", "tfcpp_int8"}});
  EXPECT_EQ(converted, 4 * n_layer);
  const auto state_list = model->state_dict();
  std::map<std::string, at::Tensor> state(state_list.begin(), state_list.end());
  ASSERT_EQ(state.at("transformer.h.0.attn.c_attn.weight").scalar_type(), at::kChar);
  EXPECT_EQ(state.at("transformer.h.0.attn.c_attn.weight").sizes(), (std::vector<int64_t>{nf, nx}));
  EXPECT_EQ(state.at("transformer.h.0.attn.c_attn.weight_scale").sizes(), (std::vector<int64_t>{nf}));
  EXPECT_EQ(state.at("lm_head.weight").scalar_type(), at::kFloat);
  at::Tensor quantized = model->forward(in).logits;
  EXPECT_LT(max_abs_diff(quantized, reference), 0.05 * reference.abs().max().item<double>());
  TempDir tmp;
  model->save_pretrained(tmp.str());
  auto reloaded = AutoModelForCausalLM::from_pretrained(tmp.str());
  EXPECT_TRUE(reloaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(reloaded->loading_info.unexpected_keys.empty());
  EXPECT_TRUE(at::equal(reloaded->forward(in).logits, quantized));
  reloaded->dequantize();
  auto back = std::dynamic_pointer_cast<nn::Conv1D>(reloaded->named_modules()["transformer.h.0.attn.c_attn"]);
  ASSERT_FALSE(back->quantized);
  ASSERT_EQ(back->weight.sizes(), (std::vector<int64_t>{nx, nf}));
  // Per-channel int8: each output column within half a step (max|w| / 127 / 2) of the float weight.
  at::Tensor step = float_weight.abs().amax(0) / 127.0;
  EXPECT_TRUE((back->weight - float_weight).abs().le(step * 0.5 + 1e-7).all().item<bool>());
  const auto dequantized_list = reloaded->state_dict();
  std::map<std::string, at::Tensor> dequantized(dequantized_list.begin(), dequantized_list.end());
  EXPECT_FALSE(dequantized.count("transformer.h.0.attn.c_attn.weight_scale"));
  // 4-bit too.
  auto int4 = AutoModelForCausalLM::from_pretrained(dir);
  quantize_model(*int4, {{"quant_method", "tfcpp_int4"}, {"group_size", 16}});
  EXPECT_EQ(int4->state_dict().size(), state.size() + 4 * n_layer);  // + weight_zero
  EXPECT_LT(max_abs_diff(int4->forward(in).logits, reference), 0.5 * reference.abs().max().item<double>());
}

}  // namespace

TEST(Quantization, Int4PackRoundTrip) {
  at::Tensor codes = at::randint(0, 16, {5, 7}, at::kByte);
  at::Tensor packed = pack_int4(codes);
  ASSERT_EQ(packed.sizes(), (std::vector<int64_t>{5, 4}));
  EXPECT_TRUE(at::equal(unpack_int4(packed, 7), codes));
  // Input 2j in the low nibble, 2j+1 in the high nibble.
  at::Tensor row = pack_int4(at::tensor({1, 2, 3}, at::kByte).unsqueeze(0));
  EXPECT_EQ(row[0][0].item<int64_t>(), 0x21);
  EXPECT_EQ(row[0][1].item<int64_t>(), 0x03);
}

TEST(Quantization, Int8ErrorWithinHalfAStepPerRow) {
  torch::manual_seed(1);
  nn::Linear l = make_linear(70, 33, false);
  at::Tensor w = l.weight.clone();
  quantize_linear(l, 8, 0);
  EXPECT_EQ(l.weight.scalar_type(), at::kChar);
  EXPECT_EQ(l.weight_scale.sizes(), (std::vector<int64_t>{33}));
  at::Tensor err = (dequantize_linear_weight(l) - w).abs().amax(1);
  EXPECT_TRUE((err <= l.weight_scale * 0.5 + 1e-6).all().item<bool>()) << err.max().item<double>();
  EXPECT_TRUE(at::allclose(l.weight_scale, w.abs().amax(1) / 127.0));
}

TEST(Quantization, Int4ErrorWithinHalfAStepPerGroup) {
  torch::manual_seed(2);
  for (int64_t gs : {32, 48}) {
    nn::Linear l = make_linear(100, 9, false);  // 100 % gs != 0: a partial last group
    at::Tensor w = l.weight.clone();
    quantize_linear(l, 4, gs);
    const int64_t groups = (100 + gs - 1) / gs;
    EXPECT_EQ(l.weight.sizes(), (std::vector<int64_t>{9, 50}));
    EXPECT_EQ(l.weight_scale.sizes(), (std::vector<int64_t>{9, groups}));
    at::Tensor step = l.weight_scale.repeat_interleave(gs, 1).narrow(1, 0, 100);
    at::Tensor err = (dequantize_linear_weight(l) - w).abs();
    EXPECT_TRUE((err <= step * 0.5 + 1e-6).all().item<bool>()) << "group_size " << gs << " max err "
                                                                << err.max().item<double>();
  }
}

TEST(Quantization, KernelsMatchDequantizedMatmul) {
  torch::manual_seed(3);
  struct Case {
    int bits;
    int64_t in, group;
  };
  for (const Case c : {Case{8, 200, 0}, Case{8, 64, 0}, Case{4, 256, 64}, Case{4, 200, 32}, Case{4, 90, 50}}) {
    nn::Linear l = make_linear(c.in, 37, true);
    quantize_linear(l, c.bits, c.group);
    at::Tensor w = dequantize_linear_weight(l);
    for (int64_t rows : {1, 2, 5}) {
      at::Tensor x = at::randn({rows, c.in});
      at::Tensor expected = at::linear(x, w, l.bias);
      // The kernels quantize the activations per block of 32 (Q8_0): about 1e-2 of the output's scale.
      EXPECT_TRUE(tensors_close("bits " + std::to_string(c.bits) + " in " + std::to_string(c.in) + " rows " +
                                    std::to_string(rows),
                                l.forward(x), expected, 2e-2 * expected.abs().max().item<double>(), 0));
    }
    // [B, T, in] inputs keep their shape; bf16 activations come back bf16.
    at::Tensor x3 = at::randn({2, 3, c.in});
    EXPECT_EQ(l.forward(x3).sizes(), (std::vector<int64_t>{2, 3, 37}));
    EXPECT_EQ(l.forward(x3.to(at::kBFloat16)).scalar_type(), at::kBFloat16);
  }
}

TEST(Quantization, KeysToNotConvertFollowTransformers) {
  auto untied = std::make_shared<LlamaForCausalLM>(tiny_llama(false));
  EXPECT_EQ(get_keys_to_not_convert(*untied), (std::vector<std::string>{"lm_head"}));
  auto tied = std::make_shared<LlamaForCausalLM>(tiny_llama(true));
  auto keys = get_keys_to_not_convert(*tied);
  std::sort(keys.begin(), keys.end());
  // The tied pair plus the last parameter's module (model.norm), ".weight" stripped.
  EXPECT_EQ(keys, (std::vector<std::string>{"lm_head", "model.embed_tokens", "model.norm"}));
}

class QuantizationMethods : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizationMethods, QuantizeSaveLoadGivesSameLogits) {
  const std::string method = GetParam();
  TempDir tmp;
  const std::string dir = save_tiny(tmp, false);
  auto reference = LlamaForCausalLM::from_pretrained(dir);
  auto model = LlamaForCausalLM::from_pretrained(dir, quantized(method));
  ASSERT_TRUE(model->is_quantized);
  ASSERT_TRUE(model->hf_quantizer);
  EXPECT_EQ(model->quantization_method, method);
  const int bits = method == "tfcpp_int8" ? 8 : 4;
  EXPECT_EQ((*model->model->layers)[0]->mlp->up_proj->quant_bits, bits);
  EXPECT_EQ(model->lm_head->quant_bits, 0) << "the output head stays float (get_keys_to_not_convert)";

  at::Tensor q_logits = logits_of(*model, ids()), f_logits = logits_of(*reference, ids());
  const double rel = max_abs_diff(q_logits, f_logits) / f_logits.abs().max().item<double>();
  EXPECT_LT(rel, bits == 8 ? 0.02 : 0.2) << method << " relative logits error " << rel;
  EXPECT_GT(rel, 0.0);

  model->save_pretrained(tmp / "q");
  json config = read_json(tmp / "q/config.json");
  ASSERT_TRUE(config.contains("quantization_config"));
  EXPECT_EQ(config["quantization_config"]["quant_method"], method);
  EXPECT_EQ(config["quantization_config"]["modules_to_not_convert"], json({"lm_head"}));
  auto saved = read_tensors(tmp / "q/model.safetensors");
  const std::string up = "model.layers.0.mlp.up_proj.";
  ASSERT_TRUE(saved.count(up + "weight_scale"));
  EXPECT_EQ(saved[up + "weight"].scalar_type(), bits == 8 ? at::kChar : at::kByte);
  EXPECT_EQ(saved.count(up + "weight_zero"), bits == 4 ? 1u : 0u);
  EXPECT_EQ(saved["lm_head.weight"].scalar_type(), at::kFloat);

  auto loaded = LlamaForCausalLM::from_pretrained(tmp / "q");
  EXPECT_TRUE(loaded->is_quantized);
  EXPECT_TRUE(loaded->loading_info.missing_keys.empty());
  EXPECT_TRUE(loaded->loading_info.unexpected_keys.empty());
  EXPECT_TRUE(at::equal(logits_of(*loaded, ids()), q_logits));
  // Decoding (one row per step goes through the GEMV kernels) agrees with the full-sequence forward.
  EXPECT_TRUE(tensors_close("last position", logits_of(*loaded, ids().narrow(1, 0, 1)),
                            q_logits.narrow(1, 0, 1), 1e-4, 1e-4));
}

TEST_P(QuantizationMethods, DequantizeRestoresFloatWeights) {
  const std::string method = GetParam();
  TempDir tmp;
  const std::string dir = save_tiny(tmp, true);
  auto model = LlamaForCausalLM::from_pretrained(dir, quantized(method));
  at::Tensor q_logits = logits_of(*model, ids());
  at::Tensor dq_expected = dequantize_linear_weight(*(*model->model->layers)[1]->self_attn->q_proj);
  model->dequantize();
  EXPECT_FALSE(model->is_quantized);
  EXPECT_FALSE(model->hf_quantizer);
  EXPECT_FALSE(model->config->extra.contains("quantization_config"));
  auto& q_proj = *(*model->model->layers)[1]->self_attn->q_proj;
  EXPECT_EQ(q_proj.quant_bits, 0);
  EXPECT_EQ(q_proj.weight.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(q_proj.weight, dq_expected));
  // The quantized forward also quantizes the activations per block (Q8_0): not equal to the float product.
  at::Tensor dq_logits = logits_of(*model, ids());
  EXPECT_TRUE(tensors_close("dequantized logits", dq_logits, q_logits, 2e-2 * q_logits.abs().max().item<double>(), 0));
  EXPECT_THROW(model->dequantize(), ValueError);
  // The float save loads with the keys of a plain model.
  model->save_pretrained(tmp / "dq");
  auto saved = read_tensors(tmp / "dq/model.safetensors");
  EXPECT_EQ(saved.count("model.layers.0.mlp.up_proj.weight_scale"), 0u);
  auto reloaded = LlamaForCausalLM::from_pretrained(tmp / "dq");
  EXPECT_FALSE(reloaded->is_quantized);
  EXPECT_TRUE(tensors_close("reloaded", logits_of(*reloaded, ids()), dq_logits, 1e-4, 1e-4));
}

TEST_P(QuantizationMethods, FootprintCountsCodesAndScales) {
  const std::string method = GetParam();
  TempDir tmp;
  const std::string dir = save_tiny(tmp, false);
  auto reference = LlamaForCausalLM::from_pretrained(dir);
  auto model = LlamaForCausalLM::from_pretrained(dir, quantized(method));
  int64_t expected = reference->get_memory_footprint();
  for (const auto& item : model->named_modules("", false)) {
    auto* l = dynamic_cast<nn::Linear*>(item.value().get());
    if (!l || !l->quant_bits) continue;
    expected -= l->in_features * l->out_features * 4;
    expected += l->weight.numel() + l->weight_scale.numel() * 4 + (l->weight_zero.defined() ? l->weight_zero.numel() : 0);
  }
  EXPECT_EQ(model->get_memory_footprint(), expected);
  EXPECT_LT(model->get_memory_footprint(), reference->get_memory_footprint());
  // num_parameters as transformers counts them: an int8 code is one parameter, a 4-bit weight's packed bytes count
  // twice (Params4bit), so the count is the float model's up to an odd row padded to whole bytes.
  int64_t expected_params = reference->num_parameters();
  for (const auto& item : model->named_modules("", false))
    if (auto* l = dynamic_cast<nn::Linear*>(item.value().get()); l && l->quant_bits == 4)
      expected_params += l->out_features * 2 * ((l->in_features + 1) / 2) - l->in_features * l->out_features;
  EXPECT_EQ(model->num_parameters(), expected_params);
}

INSTANTIATE_TEST_SUITE_P(Methods, QuantizationMethods, ::testing::Values("tfcpp_int8", "tfcpp_int4"));

TEST(Quantization, ToAndHalfRefusedOnQuantizedModels) {
  TempDir tmp;
  auto model = LlamaForCausalLM::from_pretrained(save_tiny(tmp, false), quantized("tfcpp_int8"));
  EXPECT_THROW(model->to(at::kBFloat16), ValueError);
  EXPECT_THROW(model->to(at::kFloat), ValueError);
  EXPECT_THROW(model->to(at::Device("cpu")), ValueError);
  EXPECT_THROW(model->half(), ValueError);
  try {
    model->to(at::kBFloat16);
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("`.to` is not supported"), std::string::npos) << e.what();
  }
  model->dequantize();
  model->to(at::kBFloat16);  // fine once float again
  EXPECT_EQ(model->dtype(), at::kBFloat16);
}

TEST(Quantization, BadConfigsAreValueErrors) {
  TempDir tmp;
  const std::string dir = save_tiny(tmp, false);
  FromPretrainedOptions o;
  o.quantization_config = {{"quant_method", "gptq"}};
  EXPECT_THROW(LlamaForCausalLM::from_pretrained(dir, o), ValueError);
  o.quantization_config = {{"quant_method", "tfcpp_int4"}, {"group_size", 7}};
  EXPECT_THROW(LlamaForCausalLM::from_pretrained(dir, o), ValueError);
  o.quantization_config = {{"quant_method", "tfcpp_int8"}, {"modules_to_not_convert", "lm_head"}};
  EXPECT_THROW(LlamaForCausalLM::from_pretrained(dir, o), ValueError);
  // An explicit list replaces get_keys_to_not_convert.
  o.quantization_config = {{"quant_method", "tfcpp_int8"}, {"modules_to_not_convert", {"lm_head", "mlp"}}};
  auto model = LlamaForCausalLM::from_pretrained(dir, o);
  EXPECT_EQ((*model->model->layers)[0]->mlp->down_proj->quant_bits, 0);
  EXPECT_EQ((*model->model->layers)[0]->self_attn->o_proj->quant_bits, 8);
}

// Output error vs float and greedy agreement on the embedded stories260K (a real trained model).
TEST(Quantization, Stories260KErrorVsFloat) {
  const std::string dir = source_dir() + "/models/stories260K";
  auto reference = LlamaForCausalLM::from_pretrained(dir);
  at::Tensor prompt = at::tensor({1, 403, 407, 261, 378, 291}, at::kLong).unsqueeze(0);
  GenerationConfig gen = reference->generation_config;
  gen.max_new_tokens = 48;
  gen.do_sample = false;
  gen.num_beams = 1;
  at::Tensor f_seq = generate(*reference, prompt, gen).sequences;
  at::Tensor f_logits = logits_of(*reference, f_seq);
  for (const std::string method : {"tfcpp_int8", "tfcpp_int4"}) {
    auto model = LlamaForCausalLM::from_pretrained(dir, quantized(method, 32));
    at::Tensor q_logits = logits_of(*model, f_seq);
    const double max_abs = max_abs_diff(q_logits, f_logits);
    const double rel = max_abs / f_logits.abs().max().item<double>();
    const double top1 =
        q_logits.argmax(-1).eq(f_logits.argmax(-1)).to(at::kFloat).mean().item<double>();
    at::Tensor q_seq = generate(*model, prompt, gen).sequences;
    const int64_t n = std::min(q_seq.size(1), f_seq.size(1));
    int64_t same_prefix = 0;
    while (same_prefix < n && q_seq[0][same_prefix].item<int64_t>() == f_seq[0][same_prefix].item<int64_t>())
      ++same_prefix;
    std::cout << "[stories260K " << method << "] max|dlogits| " << max_abs << " relative " << rel
              << " top-1 agreement " << top1 << " greedy identical prefix " << same_prefix - prompt.size(1) << "/"
              << *gen.max_new_tokens << "\n";
    // A 64-wide model is hard on 4 bits: measured 0.021 / 0.29 relative, top-1 1.0 / 0.89 (group_size 32).
    EXPECT_LT(rel, method == "tfcpp_int8" ? 0.04 : 0.4);
    EXPECT_GT(top1, method == "tfcpp_int8" ? 0.98 : 0.75);
    if (method == "tfcpp_int8") {
      // The activations are quantized too (Q8_0, as llama.cpp): the greedy continuation holds for a while, not
      // necessarily to the end (measured 23 of 48 tokens).
      EXPECT_GE(same_prefix - prompt.size(1), 16) << "int8 keeps the start of the greedy continuation";
    }
  }
}

TEST(Quantization, CliQuantizeAndDequantize) {
  TempDir tmp;
  const std::string model = source_dir() + "/models/stories260K";
  auto [rc, out] = run_command(tfcpp_bin() + " quantize --model " + model + " --out " + (tmp / "q8") +
                               " --method int8 2>&1");
  ASSERT_EQ(rc, 0) << out;
  json config = read_json(tmp / "q8/config.json");
  EXPECT_EQ(config["quantization_config"]["quant_method"], "tfcpp_int8");
  auto [rc4, out4] = run_command(tfcpp_bin() + " quantize --model " + model + " --out " + (tmp / "q4") +
                                 " --method int4 --group-size 32 2>&1");
  ASSERT_EQ(rc4, 0) << out4;
  EXPECT_EQ(read_json(tmp / "q4/config.json")["quantization_config"]["group_size"], 32);
  auto [grc, gen] = run_command(tfcpp_bin() + " generate --model " + (tmp / "q8") +
                                " --prompt 'Once upon a time' --max-new-tokens 8 2>/dev/null");
  EXPECT_EQ(grc, 0) << gen;
  EXPECT_NE(gen.find("Once upon a time"), std::string::npos) << gen;
  auto [drc, dout] = run_command(tfcpp_bin() + " dequantize --model " + (tmp / "q8") + " --out " + (tmp / "dq") + " 2>&1");
  ASSERT_EQ(drc, 0) << dout;
  EXPECT_FALSE(read_json(tmp / "dq/config.json").contains("quantization_config"));
  EXPECT_EQ(read_tensors(tmp / "dq/model.safetensors").count("model.layers.0.mlp.up_proj.weight_scale"), 0u);
  // Dequantizing a float model is an error naming the problem; a bad method is a usage error.
  auto [erc, eout] = run_command(tfcpp_bin() + " dequantize --model " + model + " --out " + (tmp / "x") + " 2>&1");
  EXPECT_EQ(erc, 1);
  EXPECT_NE(eout.find("quantize your model"), std::string::npos) << eout;
  auto [brc, bout] = run_command(tfcpp_bin() + " quantize --model " + model + " --out " + (tmp / "y") +
                                 " --method int3 2>&1");
  EXPECT_EQ(brc, 2) << bout;
}
