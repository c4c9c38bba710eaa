// Port of transformers/models/blenderbot_small/{configuration,modeling}_blenderbot_small.py (4.40.2), with the mask
// helpers of modeling_attn_mask_utils.py it uses.
#include "transformers/models/blenderbot_small.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/gradient_checkpointing.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace transformers {

// ---- BlenderbotSmallConfig ----

void BlenderbotSmallConfig::visit(ConfigVisitor& v) {
  v("vocab_size", vocab_size);
  v("max_position_embeddings", max_position_embeddings);
  v("encoder_layers", encoder_layers);
  v("encoder_ffn_dim", encoder_ffn_dim);
  v("encoder_attention_heads", encoder_attention_heads);
  v("decoder_layers", decoder_layers);
  v("decoder_ffn_dim", decoder_ffn_dim);
  v("decoder_attention_heads", decoder_attention_heads);
  v("encoder_layerdrop", encoder_layerdrop);
  v("decoder_layerdrop", decoder_layerdrop);
  v("use_cache", use_cache);
  v("activation_function", activation_function);
  v("d_model", d_model);
  v("dropout", dropout);
  v("attention_dropout", attention_dropout);
  v("activation_dropout", activation_dropout);
  v("init_std", init_std);
  v("scale_embedding", scale_embedding);
  // self.num_hidden_layers = encoder_layers, unless config.json says otherwise.
  if (v.mode() == ConfigVisitor::Mode::kWrite && !num_hidden_layers) {
    int64_t encoder_layer_count = encoder_layers;
    v("num_hidden_layers", encoder_layer_count);
  } else {
    v("num_hidden_layers", num_hidden_layers);
  }
}

void BlenderbotSmallConfig::post_read(const std::string& source) {
  if (!num_hidden_layers) num_hidden_layers = encoder_layers;
  auto positive = [&](const char* key, int64_t value) {
    if (value <= 0) throw ConfigError(source + ": `" + key + "` must be positive, got " + std::to_string(value));
  };
  positive("vocab_size", vocab_size);
  positive("d_model", d_model);
  positive("max_position_embeddings", max_position_embeddings);
  positive("encoder_attention_heads", encoder_attention_heads);
  positive("decoder_attention_heads", decoder_attention_heads);
  for (auto [key, heads] : {std::pair<const char*, int64_t>{"encoder_attention_heads", encoder_attention_heads},
                            {"decoder_attention_heads", decoder_attention_heads}})
    if (d_model % heads != 0)
      throw ConfigError(source + ": d_model (" + std::to_string(d_model) + ") must be divisible by " + key + " (" +
                        std::to_string(heads) + ")");
  if (encoder_layers < 0 || decoder_layers < 0)
    throw ConfigError(source + ": encoder_layers and decoder_layers must be >= 0");
  nn::get_activation(activation_function);  // ValueError naming the supported activations
}

TFCPP_REGISTER_CONFIG("blenderbot-small", BlenderbotSmallConfig);

// ---- modeling_attn_mask_utils.py ----

namespace {

// _prepare_4d_attention_mask (AttentionMaskConverter._expand_mask): [B, S] -> [B, 1, T, S], 0 where attended and
// finfo.min where masked.
at::Tensor prepare_4d_attention_mask(const at::Tensor& mask, c10::ScalarType dtype, int64_t tgt_len = -1) {
  if (mask.dim() != 2)
    throw ValueError("attention mask must be 2-D [batch, seq], got " + std::to_string(mask.dim()) + "-D");
  int64_t bsz = mask.size(0), src_len = mask.size(1);
  if (tgt_len < 0) tgt_len = src_len;
  at::Tensor expanded_mask = mask.unsqueeze(1).unsqueeze(1).expand({bsz, 1, tgt_len, src_len}).to(dtype);
  at::Tensor inverted_mask = 1.0 - expanded_mask;
  return inverted_mask.masked_fill(inverted_mask.to(at::kBool), finfo_min(dtype));
}

// _make_causal_mask: [B, 1, T, past + T]
at::Tensor make_causal_mask(int64_t bsz, int64_t tgt_len, c10::ScalarType dtype, const at::Device& device,
                            int64_t past_key_values_length) {
  auto options = at::TensorOptions(dtype).device(device);
  at::Tensor mask = at::full({tgt_len, tgt_len}, finfo_min(dtype), options);
  at::Tensor mask_cond = at::arange(tgt_len, options.dtype(at::kLong));
  mask.masked_fill_(mask_cond < (mask_cond + 1).view({tgt_len, 1}), 0);
  if (past_key_values_length > 0)
    mask = at::cat({at::zeros({tgt_len, past_key_values_length}, options), mask}, -1);
  return mask.unsqueeze(0).unsqueeze(0).expand({bsz, 1, tgt_len, tgt_len + past_key_values_length});
}

// _prepare_4d_causal_attention_mask: the decoder's additive mask [B, 1, T, past + T], or undefined when a single
// query needs none.
at::Tensor prepare_4d_causal_attention_mask(const at::Tensor& attention_mask, int64_t bsz, int64_t query_length,
                                            const at::Tensor& inputs_embeds, int64_t past_key_values_length) {
  auto dtype = inputs_embeds.scalar_type();
  int64_t key_value_length = query_length + past_key_values_length;
  if (attention_mask.defined() && attention_mask.dim() == 2) {
    // AttentionMaskConverter.to_4d
    if (attention_mask.size(0) != bsz || attention_mask.size(1) != key_value_length)
      throw ValueError("decoder attention_mask should be of size [" + std::to_string(bsz) + ", " +
                       std::to_string(key_value_length) + "] (past + current tokens), but is [" +
                       std::to_string(attention_mask.size(0)) + ", " + std::to_string(attention_mask.size(1)) + "]");
    at::Tensor causal_4d_mask;
    if (query_length > 1)
      causal_4d_mask = make_causal_mask(bsz, query_length, dtype, inputs_embeds.device(),
                                        key_value_length - query_length);
    at::Tensor expanded_attn_mask = prepare_4d_attention_mask(attention_mask, dtype, query_length);
    if (causal_4d_mask.defined())
      expanded_attn_mask = causal_4d_mask.masked_fill(expanded_attn_mask.to(at::kBool), finfo_min(dtype));
    return expanded_attn_mask;
  }
  if (attention_mask.defined() && attention_mask.dim() == 4) {
    if (attention_mask.sizes() != at::IntArrayRef({bsz, 1, query_length, key_value_length}))
      throw ValueError("Incorrect 4D attention_mask shape: expected [" + std::to_string(bsz) + ", 1, " +
                       std::to_string(query_length) + ", " + std::to_string(key_value_length) + "]");
    at::Tensor inverted_mask = 1.0 - attention_mask.to(dtype);
    return inverted_mask.masked_fill(inverted_mask.to(at::kBool), finfo_min(dtype));
  }
  if (attention_mask.defined())
    throw ValueError("decoder attention_mask must be 2-D or 4-D, got " + std::to_string(attention_mask.dim()) + "-D");
  // AttentionMaskConverter.to_causal_4d
  if (query_length > 1)
    return make_causal_mask(bsz, query_length, dtype, inputs_embeds.device(), past_key_values_length);
  return {};
}

void check_head_mask(const at::Tensor& mask, const char* name, size_t num_layers, int64_t num_heads) {
  if (!mask.defined()) return;
  if (mask.dim() != 2 || mask.size(0) != static_cast<int64_t>(num_layers) || mask.size(1) != num_heads)
    throw ValueError(std::string("The `") + name + "` should be specified for " + std::to_string(num_layers) +
                     " layers and " + std::to_string(num_heads) + " heads ([layers, heads]), but has shape " +
                     c10::str(mask.sizes()));
}

at::Tensor layer_slice(const at::Tensor& mask, size_t idx) {
  return mask.defined() ? mask[static_cast<int64_t>(idx)] : at::Tensor();
}

// LayerDrop (https://arxiv.org/abs/1909.11556): skip the layer with probability `layerdrop` while training.
bool drop_layer(bool training, double layerdrop) {
  return training && at::rand({}).item<double>() < layerdrop;
}

}  // namespace

at::Tensor shift_tokens_right(const at::Tensor& input_ids, std::optional<int64_t> pad_token_id,
                              int64_t decoder_start_token_id) {
  if (input_ids.dim() != 2)
    throw ValueError("labels must be 2-D [batch, seq], got " + std::to_string(input_ids.dim()) + "-D");
  at::Tensor shifted_input_ids = at::zeros_like(input_ids);
  int64_t len = input_ids.size(1);
  if (len > 1) shifted_input_ids.narrow(1, 1, len - 1).copy_(input_ids.narrow(1, 0, len - 1));
  shifted_input_ids.select(1, 0).fill_(decoder_start_token_id);
  if (!pad_token_id) throw ValueError("self.model.config.pad_token_id has to be defined.");
  // replace possible -100 values in labels by `pad_token_id`
  shifted_input_ids.masked_fill_(shifted_input_ids.eq(-100), *pad_token_id);
  return shifted_input_ids;
}

// ---- Layers ----

at::Tensor BlenderbotSmallLearnedPositionalEmbedding::forward(at::IntArrayRef input_ids_shape,
                                                              int64_t past_key_values_length) const {
  int64_t seq_len = input_ids_shape[1];
  if (past_key_values_length + seq_len > num_embeddings)
    throw ValueError("sequence of " + std::to_string(past_key_values_length + seq_len) +
                     " positions exceeds max_position_embeddings (" + std::to_string(num_embeddings) + ")");
  at::Tensor positions = at::arange(past_key_values_length, past_key_values_length + seq_len,
                                    at::TensorOptions(at::kLong).device(weight.device()));
  return nn::Embedding::forward(positions);
}

BlenderbotSmallAttention::BlenderbotSmallAttention(int64_t embed_dim_, int64_t num_heads_, double dropout_,
                                                   bool is_decoder_, bool bias, bool is_causal_)
    : embed_dim(embed_dim_), num_heads(num_heads_), head_dim(embed_dim_ / num_heads_), dropout(dropout_),
      is_decoder(is_decoder_), is_causal(is_causal_) {
  if (head_dim * num_heads != embed_dim)
    throw ValueError("embed_dim must be divisible by num_heads (got `embed_dim`: " + std::to_string(embed_dim) +
                     " and `num_heads`: " + std::to_string(num_heads) + ").");
  scaling = std::pow(static_cast<double>(head_dim), -0.5);
  k_proj = register_module("k_proj", std::make_shared<nn::Linear>(embed_dim, embed_dim, bias));
  v_proj = register_module("v_proj", std::make_shared<nn::Linear>(embed_dim, embed_dim, bias));
  q_proj = register_module("q_proj", std::make_shared<nn::Linear>(embed_dim, embed_dim, bias));
  out_proj = register_module("out_proj", std::make_shared<nn::Linear>(embed_dim, embed_dim, bias));
}

BlenderbotSmallAttention::Output BlenderbotSmallAttention::forward(
    const at::Tensor& hidden_states, const at::Tensor& key_value_states,
    const std::pair<at::Tensor, at::Tensor>& past_key_value, Cache* cache, int64_t layer_idx,
    const at::Tensor& attention_mask, const at::Tensor& layer_head_mask, bool output_attentions) {
  // if key_value_states are provided this layer is used as a cross-attention layer for the decoder
  const bool is_cross_attention = key_value_states.defined();
  const int64_t bsz = hidden_states.size(0), tgt_len = hidden_states.size(1);
  // [B, T, E] -> [B, H, T, D]
  auto shape = [&](const at::Tensor& t) {
    return t.view({bsz, -1, num_heads, head_dim}).transpose(1, 2).contiguous();
  };

  // get query proj
  at::Tensor query_states = q_proj->forward(hidden_states) * scaling;
  at::Tensor key_states, value_states;
  if (is_cross_attention && past_key_value.first.defined() &&
      past_key_value.first.size(2) == key_value_states.size(1)) {
    // reuse k, v, cross_attentions
    key_states = past_key_value.first;
    value_states = past_key_value.second;
  } else if (is_cross_attention) {
    key_states = shape(k_proj->forward(key_value_states));
    value_states = shape(v_proj->forward(key_value_states));
  } else {
    key_states = shape(k_proj->forward(hidden_states));
    value_states = shape(v_proj->forward(hidden_states));
    // reuse k, v, self_attention: the cache appends and returns every position so far
    if (cache) std::tie(key_states, value_states) = cache->update(key_states, value_states, layer_idx);
  }

  Output out;
  if (is_decoder) {
    out.key_states = key_states;
    out.value_states = value_states;
  }

  const int64_t bh = bsz * num_heads;
  query_states = shape(query_states).view({bh, -1, head_dim});
  key_states = key_states.reshape({bh, -1, head_dim});
  value_states = value_states.reshape({bh, -1, head_dim});

  const int64_t src_len = key_states.size(1);
  at::Tensor attn_weights = at::bmm(query_states, key_states.transpose(1, 2));

  if (attention_mask.defined()) {
    if (attention_mask.sizes() != at::IntArrayRef({bsz, 1, tgt_len, src_len}))
      throw ValueError("Attention mask should be of size [" + std::to_string(bsz) + ", 1, " + std::to_string(tgt_len) +
                       ", " + std::to_string(src_len) + "], but is " + c10::str(attention_mask.sizes()));
    attn_weights = attn_weights.view({bsz, num_heads, tgt_len, src_len}) + attention_mask;
    attn_weights = attn_weights.view({bh, tgt_len, src_len});
  }

  attn_weights = at::softmax(attn_weights, -1);

  if (layer_head_mask.defined()) {
    if (layer_head_mask.sizes() != at::IntArrayRef({num_heads}))
      throw ValueError("Head mask for a single layer should be of size [" + std::to_string(num_heads) + "], but is " +
                       c10::str(layer_head_mask.sizes()));
    attn_weights = layer_head_mask.view({1, -1, 1, 1}) * attn_weights.view({bsz, num_heads, tgt_len, src_len});
    attn_weights = attn_weights.view({bh, tgt_len, src_len});
  }

  if (output_attentions) out.attn_weights = attn_weights.view({bsz, num_heads, tgt_len, src_len});

  at::Tensor attn_probs = nn::dropout(attn_weights, dropout, is_training());
  at::Tensor attn_output = at::bmm(attn_probs, value_states);

  attn_output = attn_output.view({bsz, num_heads, tgt_len, head_dim});
  attn_output = attn_output.transpose(1, 2);
  attn_output = attn_output.reshape({bsz, tgt_len, embed_dim});
  out.attn_output = out_proj->forward(attn_output);
  return out;
}

namespace {

void check_attn_implementation(const BlenderbotSmallConfig& config) {
  // BLENDERBOT_SMALL_ATTENTION_CLASSES has "eager" only in transformers 4.40.
  if (config._attn_implementation() != "eager")
    throw ValueError("BlenderbotSmall supports attn_implementation \"eager\" only, got \"" +
                     config._attn_implementation() + "\"");
}

// The fp16 overflow guard of the encoder layer.
at::Tensor clamp_inf_fp16(const at::Tensor& hidden_states) {
  if (hidden_states.scalar_type() != at::kHalf) return hidden_states;
  if (!(at::isinf(hidden_states).any().item<bool>() || at::isnan(hidden_states).any().item<bool>()))
    return hidden_states;
  double clamp_value = 65504.0 - 1000;
  return at::clamp(hidden_states, -clamp_value, clamp_value);
}

}  // namespace

BlenderbotSmallEncoderLayer::BlenderbotSmallEncoderLayer(const BlenderbotSmallConfig& config)
    : embed_dim(config.d_model), dropout(config.dropout), activation_dropout(config.activation_dropout),
      activation_fn(nn::get_activation(config.activation_function)) {
  check_attn_implementation(config);
  self_attn = register_module("self_attn", std::make_shared<BlenderbotSmallAttention>(
                                               embed_dim, config.encoder_attention_heads, config.attention_dropout));
  self_attn_layer_norm = register_module("self_attn_layer_norm", std::make_shared<nn::LayerNorm>(embed_dim));
  fc1 = register_module("fc1", std::make_shared<nn::Linear>(embed_dim, config.encoder_ffn_dim));
  fc2 = register_module("fc2", std::make_shared<nn::Linear>(config.encoder_ffn_dim, embed_dim));
  final_layer_norm = register_module("final_layer_norm", std::make_shared<nn::LayerNorm>(embed_dim));
}

std::pair<at::Tensor, at::Tensor> BlenderbotSmallEncoderLayer::forward(const at::Tensor& hidden_states_in,
                                                                       const at::Tensor& attention_mask,
                                                                       const at::Tensor& layer_head_mask,
                                                                       bool output_attentions) {
  const bool training = is_training();
  at::Tensor residual = hidden_states_in;
  auto attn = self_attn->forward(hidden_states_in, {}, {}, nullptr, 0, attention_mask, layer_head_mask,
                                 output_attentions);
  at::Tensor hidden_states = nn::dropout(attn.attn_output, dropout, training);
  hidden_states = residual + hidden_states;
  hidden_states = self_attn_layer_norm->forward(hidden_states);

  residual = hidden_states;
  hidden_states = activation_fn(fc1->forward(hidden_states));
  hidden_states = nn::dropout(hidden_states, activation_dropout, training);
  hidden_states = fc2->forward(hidden_states);
  hidden_states = nn::dropout(hidden_states, dropout, training);
  hidden_states = residual + hidden_states;
  hidden_states = final_layer_norm->forward(hidden_states);
  return {clamp_inf_fp16(hidden_states), attn.attn_weights};
}

BlenderbotSmallDecoderLayer::BlenderbotSmallDecoderLayer(const BlenderbotSmallConfig& config)
    : embed_dim(config.d_model), dropout(config.dropout), activation_dropout(config.activation_dropout),
      activation_fn(nn::get_activation(config.activation_function)) {
  check_attn_implementation(config);
  self_attn = register_module("self_attn", std::make_shared<BlenderbotSmallAttention>(
                                               embed_dim, config.decoder_attention_heads, config.attention_dropout,
                                               /*is_decoder=*/true, /*bias=*/true, /*is_causal=*/true));
  self_attn_layer_norm = register_module("self_attn_layer_norm", std::make_shared<nn::LayerNorm>(embed_dim));
  encoder_attn = register_module("encoder_attn", std::make_shared<BlenderbotSmallAttention>(
                                                     embed_dim, config.decoder_attention_heads,
                                                     config.attention_dropout, /*is_decoder=*/true));
  encoder_attn_layer_norm = register_module("encoder_attn_layer_norm", std::make_shared<nn::LayerNorm>(embed_dim));
  fc1 = register_module("fc1", std::make_shared<nn::Linear>(embed_dim, config.decoder_ffn_dim));
  fc2 = register_module("fc2", std::make_shared<nn::Linear>(config.decoder_ffn_dim, embed_dim));
  final_layer_norm = register_module("final_layer_norm", std::make_shared<nn::LayerNorm>(embed_dim));
}

BlenderbotSmallDecoderLayer::Output BlenderbotSmallDecoderLayer::forward(
    const at::Tensor& hidden_states_in, const at::Tensor& attention_mask, const at::Tensor& encoder_hidden_states,
    const at::Tensor& encoder_attention_mask, const at::Tensor& layer_head_mask,
    const at::Tensor& cross_attn_layer_head_mask, Cache* self_cache,
    const std::pair<at::Tensor, at::Tensor>& cross_past_key_value, int64_t layer_idx, bool output_attentions) {
  const bool training = is_training();
  Output out;
  at::Tensor residual = hidden_states_in;

  // Self Attention
  auto self = self_attn->forward(hidden_states_in, {}, {}, self_cache, layer_idx, attention_mask, layer_head_mask,
                                 output_attentions);
  at::Tensor hidden_states = nn::dropout(self.attn_output, dropout, training);
  hidden_states = residual + hidden_states;
  hidden_states = self_attn_layer_norm->forward(hidden_states);
  out.self_attn_weights = self.attn_weights;

  // Cross-Attention Block
  if (encoder_hidden_states.defined()) {
    residual = hidden_states;
    auto cross = encoder_attn->forward(hidden_states, encoder_hidden_states, cross_past_key_value, nullptr, layer_idx,
                                       encoder_attention_mask, cross_attn_layer_head_mask, output_attentions);
    hidden_states = nn::dropout(cross.attn_output, dropout, training);
    hidden_states = residual + hidden_states;
    hidden_states = encoder_attn_layer_norm->forward(hidden_states);
    out.cross_attn_weights = cross.attn_weights;
    if (!cross.key_states.is_same(cross_past_key_value.first)) {
      out.cross_key_states = cross.key_states;
      out.cross_value_states = cross.value_states;
    }
  }

  // Fully Connected
  residual = hidden_states;
  hidden_states = activation_fn(fc1->forward(hidden_states));
  hidden_states = nn::dropout(hidden_states, activation_dropout, training);
  hidden_states = fc2->forward(hidden_states);
  hidden_states = nn::dropout(hidden_states, dropout, training);
  hidden_states = residual + hidden_states;
  out.hidden_states = final_layer_norm->forward(hidden_states);
  return out;
}

// ---- BlenderbotSmallPreTrainedModel ----

BlenderbotSmallPreTrainedModel::BlenderbotSmallPreTrainedModel(std::shared_ptr<BlenderbotSmallConfig> config,
                                                               std::string name)
    : PreTrainedModel(std::move(config), std::move(name)) {
  base_model_prefix = "model";
  supports_gradient_checkpointing = true;
}

ModelInputs BlenderbotSmallPreTrainedModel::dummy_inputs() const {
  const int64_t pad = cfg().pad_token_id.value_or(0);
  ModelInputs inputs;
  inputs.input_ids = at::tensor(std::vector<int64_t>{0, 6, 10, 4, 2, 0, 8, 12, 2, pad}).view({2, 5});
  inputs.attention_mask = inputs.input_ids.ne(pad);
  inputs.decoder_input_ids = inputs.input_ids;
  return inputs;
}

void BlenderbotSmallPreTrainedModel::_init_weights(torch::nn::Module& module) {
  double std = cfg().init_std;
  if (auto* linear = dynamic_cast<nn::Linear*>(&module)) {
    linear->weight.normal_(0.0, std);
    if (linear->bias.defined()) linear->bias.zero_();
  } else if (auto* embedding = dynamic_cast<nn::Embedding*>(&module)) {
    embedding->weight.normal_(0.0, std);
    if (embedding->padding_idx) embedding->weight[*embedding->padding_idx].zero_();
  }
}

// ---- BlenderbotSmallEncoder ----

BlenderbotSmallEncoder::BlenderbotSmallEncoder(std::shared_ptr<BlenderbotSmallConfig> config,
                                               std::shared_ptr<nn::Embedding> embed_tokens_)
    : BlenderbotSmallPreTrainedModel(config, "BlenderbotSmallEncoder") {
  const BlenderbotSmallConfig& c = *config;
  dropout = c.dropout;
  layerdrop = c.encoder_layerdrop;
  int64_t embed_dim = c.d_model;
  padding_idx = c.pad_token_id;
  max_source_positions = c.max_position_embeddings;
  embed_scale = c.scale_embedding ? std::sqrt(static_cast<double>(embed_dim)) : 1.0;
  embed_tokens = register_module(
      "embed_tokens",
      embed_tokens_ ? embed_tokens_ : std::make_shared<nn::Embedding>(c.vocab_size, embed_dim, padding_idx));
  embed_positions = register_module("embed_positions", std::make_shared<BlenderbotSmallLearnedPositionalEmbedding>(
                                                           c.max_position_embeddings, embed_dim));
  layers = register_module("layers", std::make_shared<nn::ModuleList<BlenderbotSmallEncoderLayer>>());
  for (int64_t i = 0; i < c.encoder_layers; ++i) layers->push_back(std::make_shared<BlenderbotSmallEncoderLayer>(c));
  layernorm_embedding = register_module("layernorm_embedding", std::make_shared<nn::LayerNorm>(embed_dim));
  post_init();
}

void BlenderbotSmallEncoder::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  embed_tokens = replace_module("embed_tokens", value);
}

ModelOutput BlenderbotSmallEncoder::forward(const ModelInputs& in) {
  const BlenderbotSmallConfig& c = cfg();
  bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);
  const bool training = is_training();

  // retrieve input_ids and inputs_embeds
  if (in.input_ids.defined() && in.inputs_embeds.defined())
    throw ValueError("You cannot specify both input_ids and inputs_embeds at the same time");
  if (!in.input_ids.defined() && !in.inputs_embeds.defined())
    throw ValueError("You have to specify either input_ids or inputs_embeds");
  if (in.input_ids.defined()) warn_if_padding_and_no_attention_mask(in.input_ids, in.attention_mask);
  at::Tensor inputs_embeds = in.inputs_embeds;
  std::vector<int64_t> input_shape;
  if (in.input_ids.defined()) {
    if (in.input_ids.dim() != 2)
      throw ValueError("input_ids must be 2-D [batch, seq], got " + std::to_string(in.input_ids.dim()) + "-D");
    input_shape = in.input_ids.sizes().vec();
    inputs_embeds = embed_tokens->forward(in.input_ids) * embed_scale;
  } else {
    if (inputs_embeds.dim() != 3)
      throw ValueError("inputs_embeds must be 3-D [batch, seq, d_model], got " + std::to_string(inputs_embeds.dim()) +
                       "-D");
    input_shape = {inputs_embeds.size(0), inputs_embeds.size(1)};
  }
  if (in.attention_mask.defined() && in.attention_mask.sizes() != at::IntArrayRef(input_shape))
    throw ValueError("attention_mask shape " + c10::str(in.attention_mask.sizes()) + " does not match the inputs " +
                     c10::str(at::IntArrayRef(input_shape)));

  at::Tensor embed_pos = embed_positions->forward(input_shape);
  at::Tensor hidden_states = inputs_embeds + embed_pos;
  hidden_states = layernorm_embedding->forward(hidden_states);
  hidden_states = nn::dropout(hidden_states, dropout, training);

  // expand attention_mask: [bsz, seq_len] -> [bsz, 1, tgt_seq_len, src_seq_len]
  at::Tensor attention_mask;
  if (in.attention_mask.defined())
    attention_mask = prepare_4d_attention_mask(in.attention_mask, inputs_embeds.scalar_type());

  check_head_mask(in.head_mask, "head_mask", layers->size(), c.encoder_attention_heads);
  const bool checkpointing = gradient_checkpointing && training;
  ModelOutput out;
  for (size_t idx = 0; idx < layers->size(); ++idx) {
    const auto& encoder_layer = (*layers)[idx];
    if (output_hidden_states) out.hidden_states.push_back(hidden_states);
    if (drop_layer(training, layerdrop)) {
      if (output_attentions) out.attentions.emplace_back();
      continue;
    }
    at::Tensor layer_head_mask = layer_slice(in.head_mask, idx);
    if (checkpointing && !output_attentions) {
      // Captures by value: the closure runs again in backward, after this call returned.
      hidden_states = checkpoint(
          [encoder_layer, attention_mask, layer_head_mask](const at::Tensor& h) {
            return encoder_layer->forward(h, attention_mask, layer_head_mask, false).first;
          },
          hidden_states);
      continue;
    }
    auto [h, weights] = encoder_layer->forward(hidden_states, attention_mask, layer_head_mask, output_attentions);
    hidden_states = h;
    if (output_attentions) out.attentions.push_back(weights);
  }
  if (output_hidden_states) out.hidden_states.push_back(hidden_states);
  out.last_hidden_state = hidden_states;
  return out;
}

// ---- BlenderbotSmallDecoder ----

BlenderbotSmallDecoder::BlenderbotSmallDecoder(std::shared_ptr<BlenderbotSmallConfig> config,
                                               std::shared_ptr<nn::Embedding> embed_tokens_)
    : BlenderbotSmallPreTrainedModel(config, "BlenderbotSmallDecoder") {
  const BlenderbotSmallConfig& c = *config;
  dropout = c.dropout;
  layerdrop = c.decoder_layerdrop;
  padding_idx = c.pad_token_id;
  max_target_positions = c.max_position_embeddings;
  embed_scale = c.scale_embedding ? std::sqrt(static_cast<double>(c.d_model)) : 1.0;
  embed_tokens = register_module(
      "embed_tokens",
      embed_tokens_ ? embed_tokens_ : std::make_shared<nn::Embedding>(c.vocab_size, c.d_model, padding_idx));
  embed_positions = register_module("embed_positions", std::make_shared<BlenderbotSmallLearnedPositionalEmbedding>(
                                                           c.max_position_embeddings, c.d_model));
  layers = register_module("layers", std::make_shared<nn::ModuleList<BlenderbotSmallDecoderLayer>>());
  for (int64_t i = 0; i < c.decoder_layers; ++i) layers->push_back(std::make_shared<BlenderbotSmallDecoderLayer>(c));
  layernorm_embedding = register_module("layernorm_embedding", std::make_shared<nn::LayerNorm>(c.d_model));
  post_init();
}

void BlenderbotSmallDecoder::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  embed_tokens = replace_module("embed_tokens", value);
}

ModelOutput BlenderbotSmallDecoder::forward(const ModelInputs& in) {
  const BlenderbotSmallConfig& c = cfg();
  bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);
  bool use_cache = in.use_cache.value_or(c.use_cache);
  const bool training = is_training();
  const bool checkpointing = gradient_checkpointing && training;
  if (checkpointing) use_cache = false;  // "`use_cache=True` is incompatible with gradient checkpointing"

  // retrieve input_ids and inputs_embeds
  if (in.input_ids.defined() && in.inputs_embeds.defined())
    throw ValueError("You cannot specify both decoder_input_ids and decoder_inputs_embeds at the same time");
  if (!in.input_ids.defined() && !in.inputs_embeds.defined())
    throw ValueError("You have to specify either decoder_input_ids or decoder_inputs_embeds");
  std::vector<int64_t> input_shape;
  at::Tensor inputs_embeds = in.inputs_embeds;
  if (in.input_ids.defined()) {
    if (in.input_ids.dim() != 2)
      throw ValueError("decoder_input_ids must be 2-D [batch, seq], got " + std::to_string(in.input_ids.dim()) + "-D");
    input_shape = in.input_ids.sizes().vec();
  } else {
    if (inputs_embeds.dim() != 3)
      throw ValueError("decoder_inputs_embeds must be 3-D [batch, seq, d_model], got " +
                       std::to_string(inputs_embeds.dim()) + "-D");
    input_shape = {inputs_embeds.size(0), inputs_embeds.size(1)};
  }
  const int64_t bsz = input_shape[0], seq_len = input_shape[1];

  // The self-attention cache; an EncoderDecoderCache also holds the cross-attention keys/values.
  std::shared_ptr<Cache> cache = in.past_key_values;
  if (use_cache && !cache) cache = std::make_shared<EncoderDecoderCache>();
  auto* encoder_decoder_cache = dynamic_cast<EncoderDecoderCache*>(cache.get());
  // past_key_values_length
  int64_t past_key_values_length = cache ? cache->get_seq_length() : 0;

  if (!inputs_embeds.defined()) inputs_embeds = embed_tokens->forward(in.input_ids) * embed_scale;

  at::Tensor attention_mask =
      prepare_4d_causal_attention_mask(in.attention_mask, bsz, seq_len, inputs_embeds, past_key_values_length);

  // expand encoder attention mask: [bsz, seq_len] -> [bsz, 1, tgt_seq_len, src_seq_len]
  const at::Tensor& encoder_hidden_states = in.encoder_hidden_states;
  at::Tensor encoder_attention_mask;
  if (encoder_hidden_states.defined() && in.encoder_attention_mask.defined()) {
    if (in.encoder_attention_mask.dim() != 2 || in.encoder_attention_mask.size(0) != encoder_hidden_states.size(0) ||
        in.encoder_attention_mask.size(1) != encoder_hidden_states.size(1))
      throw ValueError("encoder attention_mask shape " + c10::str(in.encoder_attention_mask.sizes()) +
                       " does not match the encoder states " + c10::str(encoder_hidden_states.sizes()));
    encoder_attention_mask =
        prepare_4d_attention_mask(in.encoder_attention_mask, inputs_embeds.scalar_type(), seq_len);
  }

  // embed positions
  at::Tensor positions = embed_positions->forward(input_shape, past_key_values_length);

  // BlenderbotSmall applies layer norm on hidden_states
  inputs_embeds = layernorm_embedding->forward(inputs_embeds);
  at::Tensor hidden_states = inputs_embeds + positions;
  hidden_states = nn::dropout(hidden_states, dropout, training);

  check_head_mask(in.head_mask, "head_mask", layers->size(), c.decoder_attention_heads);
  check_head_mask(in.cross_attn_head_mask, "cross_attn_head_mask", layers->size(), c.decoder_attention_heads);

  // Cached cross-attention (key, value) per layer, fixed once the first step computed them.
  std::vector<std::vector<at::Tensor>> cross_past;
  if (encoder_decoder_cache && encoder_hidden_states.defined())
    cross_past = encoder_decoder_cache->cross_attention_cache->to_legacy_cache();

  ModelOutput out;
  for (size_t idx = 0; idx < layers->size(); ++idx) {
    const auto& decoder_layer = (*layers)[idx];
    // add LayerDrop (see https://arxiv.org/abs/1909.11556 for description)
    if (output_hidden_states) out.hidden_states.push_back(hidden_states);
    if (drop_layer(training, layerdrop)) continue;
    at::Tensor layer_head_mask = layer_slice(in.head_mask, idx);
    at::Tensor cross_layer_head_mask = layer_slice(in.cross_attn_head_mask, idx);
    // The checkpoint helper takes a single input: layers that cross-attend to states needing gradients run plainly.
    if (checkpointing && !output_attentions &&
        !(encoder_hidden_states.defined() && encoder_hidden_states.requires_grad())) {
      hidden_states = checkpoint(
          [decoder_layer, attention_mask, encoder_hidden_states, encoder_attention_mask, layer_head_mask,
           cross_layer_head_mask, idx](const at::Tensor& h) {
            return decoder_layer
                ->forward(h, attention_mask, encoder_hidden_states, encoder_attention_mask, layer_head_mask,
                          cross_layer_head_mask, nullptr, {}, static_cast<int64_t>(idx), false)
                .hidden_states;
          },
          hidden_states);
      continue;
    }
    std::pair<at::Tensor, at::Tensor> cross_past_key_value;
    if (idx < cross_past.size()) cross_past_key_value = {cross_past[idx][0], cross_past[idx][1]};
    auto layer_outputs = decoder_layer->forward(hidden_states, attention_mask, encoder_hidden_states,
                                                encoder_attention_mask, layer_head_mask, cross_layer_head_mask,
                                                cache.get(), cross_past_key_value,
                                                static_cast<int64_t>(idx), output_attentions);
    hidden_states = layer_outputs.hidden_states;
    if (encoder_decoder_cache && layer_outputs.cross_key_states.defined() &&
        !encoder_decoder_cache->has_cross(static_cast<int64_t>(idx)))
      encoder_decoder_cache->cross_attention_cache->update(layer_outputs.cross_key_states,
                                                           layer_outputs.cross_value_states, static_cast<int64_t>(idx));
    if (output_attentions) {
      out.attentions.push_back(layer_outputs.self_attn_weights);
      if (encoder_hidden_states.defined()) out.cross_attentions.push_back(layer_outputs.cross_attn_weights);
    }
  }
  // add hidden states from the last decoder layer
  if (output_hidden_states) out.hidden_states.push_back(hidden_states);
  out.last_hidden_state = hidden_states;
  if (use_cache) out.past_key_values = cache;
  return out;
}

// ---- BlenderbotSmallModel ----

BlenderbotSmallModel::BlenderbotSmallModel(std::shared_ptr<BlenderbotSmallConfig> config)
    : BlenderbotSmallPreTrainedModel(config, "BlenderbotSmallModel") {
  _tied_weights_keys = {"decoder.embed_tokens.weight", "encoder.embed_tokens.weight"};
  shared = register_module("shared", std::make_shared<nn::Embedding>(config->vocab_size, config->d_model,
                                                                     config->pad_token_id));
  encoder = register_module("encoder", std::make_shared<BlenderbotSmallEncoder>(config, shared));
  decoder = register_module("decoder", std::make_shared<BlenderbotSmallDecoder>(config, shared));
  post_init();
}

std::shared_ptr<BlenderbotSmallModel> BlenderbotSmallModel::from_pretrained(const std::string& path,
                                                                            const FromPretrainedOptions& options) {
  return std::dynamic_pointer_cast<BlenderbotSmallModel>(model_from_pretrained(path, "BlenderbotSmallModel", options));
}

void BlenderbotSmallModel::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  shared = replace_module("shared", value);
  encoder->set_input_embeddings(shared);
  decoder->set_input_embeddings(shared);
}

ModelOutput BlenderbotSmallModel::forward(const ModelInputs& in) {
  const BlenderbotSmallConfig& c = cfg();
  bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);
  bool use_cache = in.use_cache.value_or(c.use_cache);

  std::shared_ptr<ModelOutput> encoder_outputs = in.encoder_outputs;
  if (!encoder_outputs) {
    ModelInputs encoder_inputs;
    encoder_inputs.input_ids = in.input_ids;
    encoder_inputs.attention_mask = in.attention_mask;
    encoder_inputs.head_mask = in.head_mask;
    encoder_inputs.inputs_embeds = in.inputs_embeds;
    encoder_inputs.output_attentions = output_attentions;
    encoder_inputs.output_hidden_states = output_hidden_states;
    encoder_outputs = std::make_shared<ModelOutput>(encoder->forward(encoder_inputs));
  } else if (!encoder_outputs->last_hidden_state.defined()) {
    throw ValueError("encoder_outputs has no last_hidden_state");
  }

  // decoder outputs consists of (dec_features, past_key_value, dec_hidden, dec_attn)
  ModelInputs decoder_inputs;
  decoder_inputs.input_ids = in.decoder_input_ids;
  decoder_inputs.attention_mask = in.decoder_attention_mask;
  decoder_inputs.encoder_hidden_states = encoder_outputs->last_hidden_state;
  decoder_inputs.encoder_attention_mask = in.attention_mask;
  decoder_inputs.head_mask = in.decoder_head_mask;
  decoder_inputs.cross_attn_head_mask = in.cross_attn_head_mask;
  decoder_inputs.past_key_values = in.past_key_values;
  decoder_inputs.inputs_embeds = in.decoder_inputs_embeds;
  decoder_inputs.use_cache = use_cache;
  decoder_inputs.output_attentions = output_attentions;
  decoder_inputs.output_hidden_states = output_hidden_states;
  ModelOutput decoder_outputs = decoder->forward(decoder_inputs);

  ModelOutput out;
  out.last_hidden_state = decoder_outputs.last_hidden_state;
  out.past_key_values = decoder_outputs.past_key_values;
  out.decoder_hidden_states = std::move(decoder_outputs.hidden_states);
  out.decoder_attentions = std::move(decoder_outputs.attentions);
  out.cross_attentions = std::move(decoder_outputs.cross_attentions);
  out.encoder_last_hidden_state = encoder_outputs->last_hidden_state;
  out.encoder_hidden_states = encoder_outputs->hidden_states;
  out.encoder_attentions = encoder_outputs->attentions;
  return out;
}

TFCPP_REGISTER_MODEL("blenderbot-small", "base", BlenderbotSmallModel, BlenderbotSmallConfig);

// ---- BlenderbotSmallForConditionalGeneration ----

BlenderbotSmallForConditionalGeneration::BlenderbotSmallForConditionalGeneration(
    std::shared_ptr<BlenderbotSmallConfig> config)
    : BlenderbotSmallPreTrainedModel(config, "BlenderbotSmallForConditionalGeneration") {
  _keys_to_ignore_on_load_missing = {"final_logits_bias"};
  _tied_weights_keys = {"decoder.embed_tokens.weight", "encoder.embed_tokens.weight", "lm_head.weight"};
  model = register_module("model", std::make_shared<BlenderbotSmallModel>(config));
  int64_t num_embeddings = model->shared->num_embeddings;
  bind_buffer("final_logits_bias", &final_logits_bias, at::zeros({1, num_embeddings}));
  lm_head = register_module("lm_head", std::make_shared<nn::Linear>(config->d_model, num_embeddings, false));
  post_init();
}

std::shared_ptr<BlenderbotSmallForConditionalGeneration> BlenderbotSmallForConditionalGeneration::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return std::dynamic_pointer_cast<BlenderbotSmallForConditionalGeneration>(
      model_from_pretrained(path, "BlenderbotSmallForConditionalGeneration", options));
}

std::shared_ptr<nn::Embedding> BlenderbotSmallForConditionalGeneration::resize_token_embeddings(
    std::optional<int64_t> new_num_tokens, std::optional<int64_t> pad_to_multiple_of) {
  auto new_embeddings = PreTrainedModel::resize_token_embeddings(new_num_tokens, pad_to_multiple_of);
  _resize_final_logits_bias(new_embeddings->num_embeddings);
  return new_embeddings;
}

void BlenderbotSmallForConditionalGeneration::_resize_final_logits_bias(int64_t new_num_tokens) {
  at::NoGradGuard no_grad;
  int64_t old_num_tokens = final_logits_bias.size(-1);
  at::Tensor new_bias;
  if (new_num_tokens <= old_num_tokens) {
    new_bias = final_logits_bias.narrow(1, 0, new_num_tokens).clone();
  } else {
    at::Tensor extra_bias = at::zeros({1, new_num_tokens - old_num_tokens}, final_logits_bias.options());
    new_bias = at::cat({final_logits_bias, extra_bias}, 1);
  }
  final_logits_bias.set_data(new_bias);  // the registered buffer shares this tensor
}

void BlenderbotSmallForConditionalGeneration::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  lm_head = replace_module("lm_head", value);
}

ModelOutput BlenderbotSmallForConditionalGeneration::forward(const ModelInputs& in) {
  const BlenderbotSmallConfig& c = cfg();
  ModelInputs model_inputs = in;
  if (in.labels.defined()) {
    model_inputs.use_cache = false;
    if (!in.decoder_input_ids.defined() && !in.decoder_inputs_embeds.defined()) {
      if (!c.decoder_start_token_id)
        throw ValueError("config.decoder_start_token_id has to be defined to shift labels");
      model_inputs.decoder_input_ids = shift_tokens_right(in.labels, c.pad_token_id, *c.decoder_start_token_id);
    }
  }
  ModelOutput out = model->forward(model_inputs);
  at::Tensor hidden_states = out.last_hidden_state;
  // Generation reads only the last position's logits.
  if (in.num_logits_to_keep > 0 && in.num_logits_to_keep < hidden_states.size(1))
    hidden_states = hidden_states.narrow(1, hidden_states.size(1) - in.num_logits_to_keep, in.num_logits_to_keep);
  out.logits = lm_head->forward(hidden_states) + final_logits_bias;
  out.last_hidden_state = at::Tensor();

  if (in.labels.defined()) {
    if (in.labels.sizes() != out.logits.sizes().slice(0, 2))
      throw ValueError("labels shape " + c10::str(in.labels.sizes()) + " does not match the logits " +
                       c10::str(out.logits.sizes()));
    out.loss = at::cross_entropy_loss(out.logits.reshape({-1, c.vocab_size}), in.labels.reshape({-1}), {},
                                      at::Reduction::Mean, -100);
  }
  return out;
}

ModelInputs BlenderbotSmallForConditionalGeneration::prepare_inputs_for_generation(const at::Tensor& decoder_input_ids,
                                                                                   const ModelInputs& kwargs) {
  at::Tensor ids = decoder_input_ids;
  // cut decoder_input_ids if past is used
  if (kwargs.past_key_values) {
    int64_t past_length = kwargs.past_key_values->get_seq_length();
    // Some generation methods already pass only the last input ID
    int64_t remove_prefix_length = ids.size(1) > past_length ? past_length : ids.size(1) - 1;
    ids = ids.narrow(1, remove_prefix_length, ids.size(1) - remove_prefix_length);
  }
  ModelInputs model_inputs;  // input_ids: none, encoder_outputs is defined
  model_inputs.encoder_outputs = kwargs.encoder_outputs;
  model_inputs.past_key_values = kwargs.past_key_values;
  model_inputs.decoder_input_ids = ids;
  model_inputs.attention_mask = kwargs.attention_mask;
  model_inputs.head_mask = kwargs.head_mask;
  model_inputs.decoder_head_mask = kwargs.decoder_head_mask;
  model_inputs.cross_attn_head_mask = kwargs.cross_attn_head_mask;
  model_inputs.use_cache = kwargs.use_cache;
  model_inputs.num_logits_to_keep = kwargs.num_logits_to_keep;
  return model_inputs;
}

void BlenderbotSmallForConditionalGeneration::_reorder_cache(Cache& past_key_values, const at::Tensor& beam_idx) {
  // cached cross_attention states don't have to be reordered -> they are always the same
  if (auto* cache = dynamic_cast<EncoderDecoderCache*>(&past_key_values))
    cache->self_attention_cache->reorder_cache(beam_idx);
  else
    past_key_values.reorder_cache(beam_idx);
}

TFCPP_REGISTER_MODEL("blenderbot-small", "seq2seq-lm", BlenderbotSmallForConditionalGeneration,
                     BlenderbotSmallConfig);

// ---- BlenderbotSmallForCausalLM ----

BlenderbotSmallDecoderWrapper::BlenderbotSmallDecoderWrapper(std::shared_ptr<BlenderbotSmallConfig> config)
    : BlenderbotSmallPreTrainedModel(config, "BlenderbotSmallDecoderWrapper") {
  decoder = register_module("decoder", std::make_shared<BlenderbotSmallDecoder>(config));
  post_init();
}

namespace {
// config = copy.deepcopy(config); config.is_decoder = True; config.is_encoder_decoder = False
std::shared_ptr<BlenderbotSmallConfig> decoder_only_config(const std::shared_ptr<BlenderbotSmallConfig>& config) {
  auto copy = std::make_shared<BlenderbotSmallConfig>(*config);
  copy->is_decoder = true;
  copy->is_encoder_decoder = false;
  return copy;
}
}  // namespace

BlenderbotSmallForCausalLM::BlenderbotSmallForCausalLM(std::shared_ptr<BlenderbotSmallConfig> config)
    : BlenderbotSmallPreTrainedModel(decoder_only_config(config), "BlenderbotSmallForCausalLM") {
  _tied_weights_keys = {"lm_head.weight"};
  const BlenderbotSmallConfig& c = cfg();
  model = register_module("model", std::make_shared<BlenderbotSmallDecoderWrapper>(
                                       std::static_pointer_cast<BlenderbotSmallConfig>(this->config)));
  lm_head = register_module("lm_head", std::make_shared<nn::Linear>(c.d_model, c.vocab_size, false));
  post_init();
}

std::shared_ptr<BlenderbotSmallForCausalLM> BlenderbotSmallForCausalLM::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return std::dynamic_pointer_cast<BlenderbotSmallForCausalLM>(
      model_from_pretrained(path, "BlenderbotSmallForCausalLM", options));
}

void BlenderbotSmallForCausalLM::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  lm_head = replace_module("lm_head", value);
}

ModelOutput BlenderbotSmallForCausalLM::forward(const ModelInputs& in) {
  ModelOutput out = model->decoder->forward(in);
  at::Tensor hidden_states = out.last_hidden_state;
  if (in.num_logits_to_keep > 0 && in.num_logits_to_keep < hidden_states.size(1))
    hidden_states = hidden_states.narrow(1, hidden_states.size(1) - in.num_logits_to_keep, in.num_logits_to_keep);
  out.logits = lm_head->forward(hidden_states);
  out.last_hidden_state = at::Tensor();
  if (in.labels.defined()) {
    if (in.labels.sizes() != out.logits.sizes().slice(0, 2))
      throw ValueError("labels shape " + c10::str(in.labels.sizes()) + " does not match the logits " +
                       c10::str(out.logits.sizes()));
    out.loss = at::cross_entropy_loss(out.logits.reshape({-1, cfg().vocab_size}), in.labels.reshape({-1}), {},
                                      at::Reduction::Mean, -100);
  }
  return out;
}

ModelInputs BlenderbotSmallForCausalLM::prepare_inputs_for_generation(const at::Tensor& input_ids_full,
                                                                      const ModelInputs& kwargs) {
  at::Tensor input_ids = input_ids_full;
  // if model is used as a decoder in encoder-decoder model, the decoder attention mask is created on the fly
  at::Tensor attention_mask =
      kwargs.attention_mask.defined() ? kwargs.attention_mask : at::ones_like(input_ids);
  if (kwargs.past_key_values) {
    int64_t past_length = kwargs.past_key_values->get_seq_length();
    // Some generation methods already pass only the last input ID
    int64_t remove_prefix_length = input_ids.size(1) > past_length ? past_length : input_ids.size(1) - 1;
    input_ids = input_ids.narrow(1, remove_prefix_length, input_ids.size(1) - remove_prefix_length);
  }
  ModelInputs model_inputs;
  model_inputs.input_ids = input_ids;
  model_inputs.attention_mask = attention_mask;
  model_inputs.past_key_values = kwargs.past_key_values;
  model_inputs.use_cache = kwargs.use_cache;
  model_inputs.num_logits_to_keep = kwargs.num_logits_to_keep;
  return model_inputs;
}

TFCPP_REGISTER_MODEL("blenderbot-small", "causal-lm", BlenderbotSmallForCausalLM, BlenderbotSmallConfig);

}  // namespace transformers
