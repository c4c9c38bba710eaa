// Port of transformers/models/bert/{configuration,modeling}_bert.py (4.40.2). The encoder blocks are shared with the
// RoBERTa family (modeling_roberta.py copies them from here).
#include "transformers/models/bert.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/gradient_checkpointing.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace transformers {

// ---- BertConfig ----

void BertConfig::visit(ConfigVisitor& v) {
  v("vocab_size", vocab_size);
  v("hidden_size", hidden_size);
  v("num_hidden_layers", num_hidden_layers);
  v("num_attention_heads", num_attention_heads);
  v("intermediate_size", intermediate_size);
  v("hidden_act", hidden_act);
  v("hidden_dropout_prob", hidden_dropout_prob);
  v("attention_probs_dropout_prob", attention_probs_dropout_prob);
  v("max_position_embeddings", max_position_embeddings);
  v("type_vocab_size", type_vocab_size);
  v("initializer_range", initializer_range);
  v("layer_norm_eps", layer_norm_eps);
  v("position_embedding_type", position_embedding_type);
  v("use_cache", use_cache);
  v("classifier_dropout", classifier_dropout);
}

void BertConfig::post_read(const std::string& source) {
  if (num_attention_heads <= 0 || hidden_size % num_attention_heads != 0)
    throw ConfigError(source + ": the hidden size (" + std::to_string(hidden_size) +
                      ") is not a multiple of the number of attention heads (" + std::to_string(num_attention_heads) +
                      ")");
  if (position_embedding_type != "absolute" && position_embedding_type != "relative_key" &&
      position_embedding_type != "relative_key_query")
    throw ConfigError(source + ": position_embedding_type '" + position_embedding_type +
                      "' is not supported (absolute, relative_key, relative_key_query)");
  try {
    nn::get_activation(hidden_act);
  } catch (const ValueError& e) {
    throw ConfigError(source + ": hidden_act: " + e.what());
  }
}

TFCPP_REGISTER_CONFIG("roberta", BertConfig);

TFCPP_REGISTER_CONFIG("bert", BertConfig);

namespace bert {
void check_ids_in_range(const at::Tensor& ids, int64_t size, const char* what, const char* limit) {
  if (ids.numel() == 0) return;
  int64_t low = ids.min().item<int64_t>(), high = ids.max().item<int64_t>();
  if (low < 0 || high >= size)
    throw ValueError(std::string(what) + " must lie in [0, " + std::to_string(size) + ") (config." + limit +
                     "), got values in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
}
}  // namespace bert

// ---- Embeddings ----

BertEmbeddings::BertEmbeddings(const BertConfig& config)
    : position_embedding_type(config.position_embedding_type), dropout(config.hidden_dropout_prob) {
  word_embeddings = register_module(
      "word_embeddings", std::make_shared<nn::Embedding>(config.vocab_size, config.hidden_size, config.pad_token_id));
  position_embeddings = register_module(
      "position_embeddings", std::make_shared<nn::Embedding>(config.max_position_embeddings, config.hidden_size));
  token_type_embeddings = register_module(
      "token_type_embeddings", std::make_shared<nn::Embedding>(config.type_vocab_size, config.hidden_size));
  LayerNorm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(config.hidden_size, config.layer_norm_eps));
  bind_buffer("position_ids", &position_ids, at::arange(config.max_position_embeddings, at::kLong).unsqueeze(0));
  set_non_persistent("position_ids");
  bind_buffer("token_type_ids", &token_type_ids, at::zeros({1, config.max_position_embeddings}, at::kLong));
  set_non_persistent("token_type_ids");
}

at::Tensor BertEmbeddings::forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids_in,
                                   const at::Tensor& position_ids_in, const at::Tensor& inputs_embeds_in,
                                   int64_t past_key_values_length) const {
  int64_t batch_size = input_ids.defined() ? input_ids.size(0) : inputs_embeds_in.size(0);
  int64_t seq_length = input_ids.defined() ? input_ids.size(1) : inputs_embeds_in.size(1);
  const int64_t max_positions = this->position_ids.size(1);
  at::Tensor position_ids = position_ids_in;
  if (!position_ids.defined()) {
    if (past_key_values_length + seq_length > max_positions)
      throw ValueError("sequence length " + std::to_string(past_key_values_length + seq_length) +
                       " (cached + new) exceeds max_position_embeddings (" + std::to_string(max_positions) + ")");
    position_ids = this->position_ids.narrow(1, past_key_values_length, seq_length);
  }
  at::Tensor token_type_ids = token_type_ids_in;
  if (!token_type_ids.defined()) {
    if (seq_length > max_positions)
      throw ValueError("sequence length " + std::to_string(seq_length) + " exceeds max_position_embeddings (" +
                       std::to_string(max_positions) + ")");
    token_type_ids = this->token_type_ids.narrow(1, 0, seq_length).expand({batch_size, seq_length});
  }
  at::Tensor inputs_embeds = inputs_embeds_in;
  if (!inputs_embeds.defined()) {
    bert::check_ids_in_range(input_ids, word_embeddings->num_embeddings, "input_ids", "vocab_size");
    inputs_embeds = word_embeddings->forward(input_ids);
  }
  bert::check_ids_in_range(token_type_ids, token_type_embeddings->num_embeddings, "token_type_ids", "type_vocab_size");
  at::Tensor embeddings = inputs_embeds + token_type_embeddings->forward(token_type_ids);
  if (position_embedding_type == "absolute") {
    bert::check_ids_in_range(position_ids, position_embeddings->num_embeddings, "position_ids", "max_position_embeddings");
    embeddings += position_embeddings->forward(position_ids);
  }
  embeddings = LayerNorm->forward(embeddings);
  return bert::dropout(embeddings, dropout, is_training());
}

// ---- Attention ----

BertSelfAttention::BertSelfAttention(const BertConfig& config, const std::string& type)
    : num_attention_heads(config.num_attention_heads),
      attention_head_size(config.hidden_size / config.num_attention_heads),
      all_head_size(config.num_attention_heads * (config.hidden_size / config.num_attention_heads)),
      max_position_embeddings(config.max_position_embeddings),
      position_embedding_type(type.empty() ? config.position_embedding_type : type),
      is_decoder(config.is_decoder),
      dropout(config.attention_probs_dropout_prob) {
  if (config.hidden_size % config.num_attention_heads != 0)
    throw ConfigError("The hidden size (" + std::to_string(config.hidden_size) +
                      ") is not a multiple of the number of attention heads (" +
                      std::to_string(config.num_attention_heads) + ")");
  query = register_module("query", std::make_shared<nn::Linear>(config.hidden_size, all_head_size));
  key = register_module("key", std::make_shared<nn::Linear>(config.hidden_size, all_head_size));
  value = register_module("value", std::make_shared<nn::Linear>(config.hidden_size, all_head_size));
  if (position_embedding_type == "relative_key" || position_embedding_type == "relative_key_query")
    distance_embedding = register_module(
        "distance_embedding", std::make_shared<nn::Embedding>(2 * config.max_position_embeddings - 1, attention_head_size));
}

at::Tensor BertSelfAttention::transpose_for_scores(const at::Tensor& x) const {
  return x.view({x.size(0), x.size(1), num_attention_heads, attention_head_size}).permute({0, 2, 1, 3});
}

std::pair<at::Tensor, at::Tensor> BertSelfAttention::forward(const at::Tensor& hidden_states,
                                                                const at::Tensor& attention_mask_in,
                                                                const at::Tensor& head_mask,
                                                                const at::Tensor& encoder_hidden_states,
                                                                const at::Tensor& encoder_attention_mask,
                                                                Cache* past_key_value, int64_t layer_idx,
                                                                bool output_attentions) const {
  at::Tensor mixed_query_layer = query->forward(hidden_states);

  // If this is instantiated as a cross-attention module, the keys and values come from an encoder; the attention
  // mask needs to be such that the encoder's padding tokens are not attended to.
  const bool is_cross_attention = encoder_hidden_states.defined();
  at::Tensor key_layer, value_layer, attention_mask = attention_mask_in;
  bool use_cache = false;  // transformers: `past_key_value is not None` for this layer
  if (is_cross_attention) {
    auto* cache = dynamic_cast<EncoderDecoderCache*>(past_key_value);
    if (cache && cache->has_cross(layer_idx)) {
      // reuse k, v, cross_attentions
      auto cross = cache->cross_attention_cache->to_legacy_cache()[layer_idx];
      key_layer = cross[0];
      value_layer = cross[1];
    } else {
      key_layer = transpose_for_scores(key->forward(encoder_hidden_states));
      value_layer = transpose_for_scores(value->forward(encoder_hidden_states));
      if (cache) cache->cross_attention_cache->update(key_layer, value_layer, layer_idx);
    }
    attention_mask = encoder_attention_mask;
  } else {
    key_layer = transpose_for_scores(key->forward(hidden_states));
    value_layer = transpose_for_scores(value->forward(hidden_states));
    if (past_key_value) {
      use_cache = past_key_value->get_seq_length(layer_idx) > 0;
      std::tie(key_layer, value_layer) = past_key_value->update(key_layer, value_layer, layer_idx);
    }
  }
  at::Tensor query_layer = transpose_for_scores(mixed_query_layer);

  // Take the dot product between "query" and "key" to get the raw attention scores.
  at::Tensor attention_scores = at::matmul(query_layer, key_layer.transpose(-1, -2));

  if (distance_embedding) {
    int64_t query_length = query_layer.size(2), key_length = key_layer.size(2);
    auto options = at::TensorOptions(at::kLong).device(hidden_states.device());
    at::Tensor position_ids_l = use_cache ? at::full({1, 1}, key_length - 1, options)
                                          : at::arange(query_length, options).view({-1, 1});
    at::Tensor position_ids_r = at::arange(key_length, options).view({1, -1});
    at::Tensor distance = position_ids_l - position_ids_r;
    at::Tensor positional_embedding =
        distance_embedding->forward(distance + max_position_embeddings - 1).to(query_layer.scalar_type());
    if (position_embedding_type == "relative_key") {
      attention_scores = attention_scores + at::einsum("bhld,lrd->bhlr", {query_layer, positional_embedding});
    } else {
      at::Tensor relative_position_scores_query = at::einsum("bhld,lrd->bhlr", {query_layer, positional_embedding});
      at::Tensor relative_position_scores_key = at::einsum("bhrd,lrd->bhlr", {key_layer, positional_embedding});
      attention_scores = attention_scores + relative_position_scores_query + relative_position_scores_key;
    }
  }

  attention_scores = attention_scores / std::sqrt(static_cast<double>(attention_head_size));
  // The mask is precomputed for all layers in BertModel.forward.
  if (attention_mask.defined()) attention_scores = attention_scores + attention_mask;

  at::Tensor attention_probs = at::softmax(attention_scores, -1);
  // This drops out entire tokens to attend to, as in the original Transformer paper.
  attention_probs = bert::dropout(attention_probs, dropout, is_training());
  if (head_mask.defined()) attention_probs = attention_probs * head_mask;

  at::Tensor context_layer = at::matmul(attention_probs, value_layer).permute({0, 2, 1, 3}).contiguous();
  context_layer = context_layer.view({context_layer.size(0), context_layer.size(1), all_head_size});
  return {context_layer, output_attentions ? attention_probs : at::Tensor()};
}

BertSelfOutput::BertSelfOutput(const BertConfig& config) : dropout(config.hidden_dropout_prob) {
  dense = register_module("dense", std::make_shared<nn::Linear>(config.hidden_size, config.hidden_size));
  LayerNorm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(config.hidden_size, config.layer_norm_eps));
}

at::Tensor BertSelfOutput::forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor) const {
  at::Tensor h = bert::dropout(dense->forward(hidden_states), dropout, is_training());
  return LayerNorm->forward(h + input_tensor);
}

BertAttention::BertAttention(const BertConfig& config, const std::string& position_embedding_type) {
  self = register_module("self", std::make_shared<BertSelfAttention>(config, position_embedding_type));
  output = register_module("output", std::make_shared<BertSelfOutput>(config));
}

void BertAttention::prune_heads(const std::vector<int64_t>& heads_in) {
  if (heads_in.empty()) return;
  for (int64_t h : heads_in)
    if (h < 0 || h >= self->num_attention_heads + static_cast<int64_t>(pruned_heads.size()))
      throw ValueError("prune_heads: head " + std::to_string(h) + " does not exist (the layer had " +
                       std::to_string(self->num_attention_heads + pruned_heads.size()) + " heads)");
  auto [heads, index] = nn::find_pruneable_heads_and_indices(heads_in, self->num_attention_heads,
                                                             self->attention_head_size, pruned_heads);
  // Prune linear layers
  nn::prune_linear_layer(*self->query, index);
  nn::prune_linear_layer(*self->key, index);
  nn::prune_linear_layer(*self->value, index);
  nn::prune_linear_layer(*output->dense, index, 1);
  // Update hyper params and store pruned heads
  self->num_attention_heads -= static_cast<int64_t>(heads.size());
  self->all_head_size = self->attention_head_size * self->num_attention_heads;
  pruned_heads.insert(heads.begin(), heads.end());
}

std::pair<at::Tensor, at::Tensor> BertAttention::forward(const at::Tensor& hidden_states,
                                                            const at::Tensor& attention_mask,
                                                            const at::Tensor& head_mask,
                                                            const at::Tensor& encoder_hidden_states,
                                                            const at::Tensor& encoder_attention_mask,
                                                            Cache* past_key_value, int64_t layer_idx,
                                                            bool output_attentions) const {
  auto [context, weights] = self->forward(hidden_states, attention_mask, head_mask, encoder_hidden_states,
                                          encoder_attention_mask, past_key_value, layer_idx, output_attentions);
  return {output->forward(context, hidden_states), weights};
}

BertIntermediate::BertIntermediate(const BertConfig& config)
    : intermediate_act_fn(nn::get_activation(config.hidden_act)) {
  dense = register_module("dense", std::make_shared<nn::Linear>(config.hidden_size, config.intermediate_size));
}

at::Tensor BertIntermediate::forward(const at::Tensor& hidden_states) const {
  return intermediate_act_fn(dense->forward(hidden_states));
}

BertOutput::BertOutput(const BertConfig& config) : dropout(config.hidden_dropout_prob) {
  dense = register_module("dense", std::make_shared<nn::Linear>(config.intermediate_size, config.hidden_size));
  LayerNorm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(config.hidden_size, config.layer_norm_eps));
}

at::Tensor BertOutput::forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor) const {
  at::Tensor h = bert::dropout(dense->forward(hidden_states), dropout, is_training());
  return LayerNorm->forward(h + input_tensor);
}

// ---- Layers ----

BertLayer::BertLayer(const BertConfig& config, int64_t idx)
    : layer_idx(idx), is_decoder(config.is_decoder), add_cross_attention(config.add_cross_attention) {
  attention = register_module("attention", std::make_shared<BertAttention>(config));
  if (add_cross_attention) {
    if (!is_decoder)
      throw ConfigError("BertLayer should be used as a decoder model if cross attention is added "
                        "(config.add_cross_attention requires config.is_decoder)");
    crossattention = register_module("crossattention", std::make_shared<BertAttention>(config, "absolute"));
  }
  intermediate = register_module("intermediate", std::make_shared<BertIntermediate>(config));
  output = register_module("output", std::make_shared<BertOutput>(config));
}

BertLayerOutput BertLayer::forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                                         const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                                         const at::Tensor& encoder_attention_mask, Cache* past_key_value,
                                         bool output_attentions) const {
  BertLayerOutput out;
  auto [attention_output, self_weights] = attention->forward(hidden_states, attention_mask, head_mask, {}, {},
                                                             past_key_value, layer_idx, output_attentions);
  out.self_attention = self_weights;
  if (is_decoder && encoder_hidden_states.defined()) {
    if (!crossattention)
      throw ValueError("If `encoder_hidden_states` are passed, BertLayer has to be instantiated with "
                       "cross-attention layers by setting `config.add_cross_attention=True`");
    auto [cross_output, cross_weights] =
        crossattention->forward(attention_output, attention_mask, head_mask, encoder_hidden_states,
                                encoder_attention_mask, past_key_value, layer_idx, output_attentions);
    attention_output = cross_output;
    out.cross_attention = cross_weights;
  }
  // feed_forward_chunk (chunking along the sequence gives the same values, so it is not split here)
  out.hidden_states = output->forward(intermediate->forward(attention_output), attention_output);
  return out;
}

BertEncoder::BertEncoder(const BertConfig& config) : add_cross_attention(config.add_cross_attention) {
  layer = register_module("layer", std::make_shared<nn::ModuleList<BertLayer>>());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layer->push_back(std::make_shared<BertLayer>(config, i));
}

void BertEncoder::forward(const at::Tensor& hidden_states_in, const at::Tensor& attention_mask,
                             const std::vector<at::Tensor>& head_mask, const at::Tensor& encoder_hidden_states,
                             const at::Tensor& encoder_attention_mask, Cache* past_key_values, bool output_attentions,
                             bool output_hidden_states, bool gradient_checkpointing, ModelOutput& out) const {
  at::Tensor hidden_states = hidden_states_in;
  for (size_t i = 0; i < layer->size(); ++i) {
    if (output_hidden_states) out.hidden_states.push_back(hidden_states);
    if (gradient_checkpointing && !output_attentions) {
      // Captured by value: backward re-runs the layer after this function has returned.
      hidden_states = checkpoint(
          [module = (*layer)[i], attention_mask, layer_head_mask = head_mask[i], encoder_hidden_states,
           encoder_attention_mask](const at::Tensor& h) {
            return module->forward(h, attention_mask, layer_head_mask, encoder_hidden_states, encoder_attention_mask,
                                   nullptr, false).hidden_states;
          },
          hidden_states);
      continue;
    }
    BertLayerOutput layer_outputs =
        (*layer)[i]->forward(hidden_states, attention_mask, head_mask[i], encoder_hidden_states,
                             encoder_attention_mask, past_key_values, output_attentions);
    hidden_states = layer_outputs.hidden_states;
    if (output_attentions) {
      out.attentions.push_back(layer_outputs.self_attention);
      if (add_cross_attention && layer_outputs.cross_attention.defined())
        out.cross_attentions.push_back(layer_outputs.cross_attention);
    }
  }
  if (output_hidden_states) out.hidden_states.push_back(hidden_states);
  out.last_hidden_state = hidden_states;
}

BertPooler::BertPooler(const BertConfig& config) {
  dense = register_module("dense", std::make_shared<nn::Linear>(config.hidden_size, config.hidden_size));
}

at::Tensor BertPooler::forward(const at::Tensor& hidden_states) const {
  // "Pool" the model by taking the hidden state of the first token.
  return at::tanh(dense->forward(hidden_states.select(1, 0)));
}

void BertEncoder::prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  for (const auto& [layer_idx, heads] : heads_to_prune) {
    if (layer_idx < 0 || layer_idx >= static_cast<int64_t>(layer->size()))
      throw ValueError("prune_heads: layer " + std::to_string(layer_idx) + " does not exist (the model has " +
                       std::to_string(layer->size()) + " layers)");
    (*layer)[layer_idx]->attention->prune_heads(heads);
  }
}

// ---- Shared helpers ----

namespace bert {

ModelOutput model_forward(const BertConfig& c, const ModelInputs& in, c10::ScalarType dtype,
                          bool checkpointing, const std::function<at::Tensor(int64_t)>& embed,
                          const BertEncoder& encoder, const BertPooler* pooler) {
  bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);
  bool use_cache = c.is_decoder ? in.use_cache.value_or(c.use_cache) : false;
  if (checkpointing) use_cache = false;  // transformers: "`use_cache=True` is incompatible with gradient checkpointing"

  if (in.input_ids.defined() && in.inputs_embeds.defined())
    throw ValueError("You cannot specify both input_ids and inputs_embeds at the same time");
  if (!in.input_ids.defined() && !in.inputs_embeds.defined())
    throw ValueError("You have to specify either input_ids or inputs_embeds");
  if (in.input_ids.defined() && in.input_ids.dim() != 2)
    throw ValueError("input_ids must be 2-D [batch, seq], got " + std::to_string(in.input_ids.dim()) + "-D");
  if (in.inputs_embeds.defined() && in.inputs_embeds.dim() != 3)
    throw ValueError("inputs_embeds must be 3-D [batch, seq, hidden], got " + std::to_string(in.inputs_embeds.dim()) +
                     "-D");
  std::vector<int64_t> input_shape = in.input_ids.defined()
                                         ? std::vector<int64_t>{in.input_ids.size(0), in.input_ids.size(1)}
                                         : std::vector<int64_t>{in.inputs_embeds.size(0), in.inputs_embeds.size(1)};
  int64_t batch_size = input_shape[0], seq_length = input_shape[1];
  auto device = in.input_ids.defined() ? in.input_ids.device() : in.inputs_embeds.device();

  std::shared_ptr<Cache> cache = in.past_key_values;
  int64_t past_key_values_length = cache ? cache->get_seq_length() : 0;

  at::Tensor attention_mask = in.attention_mask.defined()
                                  ? in.attention_mask
                                  : at::ones({batch_size, seq_length + past_key_values_length},
                                             at::TensorOptions(dtype).device(device));
  if (attention_mask.size(0) != batch_size)
    throw ValueError("attention_mask batch size (" + std::to_string(attention_mask.size(0)) +
                     ") does not match the inputs (" + std::to_string(batch_size) + ")");
  at::Tensor extended_attention_mask = get_extended_attention_mask(attention_mask, input_shape, c.is_decoder, dtype);

  // If a 2D or 3D attention mask is provided for the cross-attention, make it broadcastable to [B, H, T, S].
  const at::Tensor& encoder_hidden_states = in.encoder_hidden_states;
  at::Tensor encoder_extended_attention_mask;
  if (c.is_decoder && encoder_hidden_states.defined()) {
    at::Tensor encoder_attention_mask = in.encoder_attention_mask;
    if (!encoder_attention_mask.defined())
      encoder_attention_mask = at::ones({encoder_hidden_states.size(0), encoder_hidden_states.size(1)},
                                        at::TensorOptions(dtype).device(device));
    encoder_extended_attention_mask = invert_attention_mask(encoder_attention_mask, dtype);
  }
  std::vector<at::Tensor> head_mask = get_head_mask(in.head_mask, c.num_hidden_layers, dtype);

  at::Tensor embedding_output = embed(past_key_values_length);
  if (use_cache && !cache) {
    if (c.add_cross_attention && encoder_hidden_states.defined()) cache = std::make_shared<EncoderDecoderCache>();
    else cache = std::make_shared<DynamicCache>();
  }
  ModelOutput out;
  encoder.forward(embedding_output, extended_attention_mask, head_mask, encoder_hidden_states,
                  encoder_extended_attention_mask, cache.get(), output_attentions, output_hidden_states,
                  checkpointing, out);
  if (pooler) out.pooler_output = pooler->forward(out.last_hidden_state);
  if (use_cache) out.past_key_values = cache;
  return out;
}

ModelInputs encoder_inputs(const ModelInputs& in) {
  ModelInputs inputs;
  inputs.input_ids = in.input_ids;
  inputs.attention_mask = in.attention_mask;
  inputs.token_type_ids = in.token_type_ids;
  inputs.position_ids = in.position_ids;
  inputs.head_mask = in.head_mask;
  inputs.inputs_embeds = in.inputs_embeds;
  inputs.output_attentions = in.output_attentions;
  inputs.output_hidden_states = in.output_hidden_states;
  return inputs;
}

at::Tensor tensor_argument(const ModelInputs& in, const char* name) {
  auto it = in.extra.find(name);
  return it == in.extra.end() ? at::Tensor() : it->second;
}

double classifier_dropout_of(const BertConfig& config) {
  return config.classifier_dropout.value_or(config.hidden_dropout_prob);
}

at::Tensor sequence_classification_loss(PretrainedConfig& config, const at::Tensor& logits, const at::Tensor& labels_in,
                                         int64_t num_labels) {
  at::Tensor labels = labels_in;
  if (!config.problem_type) {
    if (num_labels == 1) config.problem_type = "regression";
    else if (num_labels > 1 && (labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt))
      config.problem_type = "single_label_classification";
    else config.problem_type = "multi_label_classification";
  }
  const std::string& problem_type = *config.problem_type;
  if (problem_type == "regression") {
    labels = labels.to(logits.scalar_type());
    return num_labels == 1 ? at::mse_loss(logits.squeeze(), labels.squeeze()) : at::mse_loss(logits, labels);
  }
  if (problem_type == "single_label_classification")
    return at::cross_entropy_loss(logits.view({-1, num_labels}), labels.reshape({-1}).to(at::kLong), {},
                                  at::Reduction::Mean, -100);
  if (problem_type == "multi_label_classification")
    return at::binary_cross_entropy_with_logits(logits, labels.to(logits.scalar_type()));
  throw ConfigError("problem_type '" + problem_type +
                    "' is not one of regression, single_label_classification, multi_label_classification");
}

at::Tensor question_answering_loss(const at::Tensor& start_logits, const at::Tensor& end_logits,
                                   at::Tensor start_positions, at::Tensor end_positions) {
  // If we are on multi-GPU, split add a dimension
  if (start_positions.dim() > 1) start_positions = start_positions.squeeze(-1);
  if (end_positions.dim() > 1) end_positions = end_positions.squeeze(-1);
  // sometimes the start/end positions are outside our model inputs, we ignore these terms
  int64_t ignored_index = start_logits.size(1);
  start_positions = start_positions.to(at::kLong).clamp(0, ignored_index);
  end_positions = end_positions.to(at::kLong).clamp(0, ignored_index);
  at::Tensor start_loss = at::cross_entropy_loss(start_logits, start_positions, {}, at::Reduction::Mean, ignored_index);
  at::Tensor end_loss = at::cross_entropy_loss(end_logits, end_positions, {}, at::Reduction::Mean, ignored_index);
  return (start_loss + end_loss) / 2;
}

int64_t flatten_multiple_choice(const ModelInputs& in, const std::string& class_name, ModelInputs& inputs) {
  const at::Tensor& choices = in.input_ids.defined() ? in.input_ids : in.inputs_embeds;
  if (!choices.defined()) throw ValueError("You have to specify either input_ids or inputs_embeds");
  if (choices.dim() != (in.input_ids.defined() ? 3 : 4))
    throw ValueError(std::string(in.input_ids.defined() ? "input_ids" : "inputs_embeds") + " of " + class_name +
                     " must be [batch, num_choices, seq" + (in.input_ids.defined() ? "]" : ", hidden]") + ", got " +
                     std::to_string(choices.dim()) + "-D");
  auto flat = [](const at::Tensor& t) { return t.defined() ? t.reshape({-1, t.size(-1)}) : t; };
  inputs = encoder_inputs(in);
  inputs.input_ids = flat(in.input_ids);
  inputs.position_ids = flat(in.position_ids);
  inputs.token_type_ids = flat(in.token_type_ids);
  inputs.attention_mask = flat(in.attention_mask);
  if (in.inputs_embeds.defined())
    inputs.inputs_embeds = in.inputs_embeds.reshape({-1, in.inputs_embeds.size(-2), in.inputs_embeds.size(-1)});
  return choices.size(1);
}

}  // namespace bert

// ---- BertPreTrainedModel ----

BertPreTrainedModel::BertPreTrainedModel(std::shared_ptr<BertConfig> config, std::string name)
    : PreTrainedModel(std::move(config), std::move(name)) {
  base_model_prefix = "bert";
  supports_gradient_checkpointing = true;
  // transformers 4.40 has only the eager BertSelfAttention: _supports_sdpa stays false.
}

void BertPreTrainedModel::_init_weights(torch::nn::Module& module) {
  double std = cfg().initializer_range;
  if (auto* linear = dynamic_cast<nn::Linear*>(&module)) {
    linear->weight.normal_(0.0, std);
    if (linear->bias.defined()) linear->bias.zero_();
  } else if (auto* embedding = dynamic_cast<nn::Embedding*>(&module)) {
    embedding->weight.normal_(0.0, std);
    if (embedding->padding_idx) embedding->weight[*embedding->padding_idx].zero_();
  } else if (auto* norm = dynamic_cast<nn::LayerNorm*>(&module)) {
    if (norm->bias.defined()) norm->bias.zero_();
    norm->weight.fill_(1.0);
  }
}

namespace {

at::Tensor masked_lm_loss(const at::Tensor& prediction_scores, const at::Tensor& labels) {
  return at::cross_entropy_loss(prediction_scores.view({-1, prediction_scores.size(-1)}), labels.reshape({-1}), {},
                                at::Reduction::Mean, -100);
}

void move_encoder_outputs(ModelOutput& from, ModelOutput& to) {
  to.hidden_states = std::move(from.hidden_states);
  to.attentions = std::move(from.attentions);
  to.cross_attentions = std::move(from.cross_attentions);
}
}  // namespace

// ---- BertModel ----

void declare_bert_encoder_tp_plan(PreTrainedModel& model) {
  model.base_model_tp_plan = {{"encoder.layer.*.attention.self.query", "colwise"},
                              {"encoder.layer.*.attention.self.key", "colwise"},
                              {"encoder.layer.*.attention.self.value", "colwise"},
                              {"encoder.layer.*.attention.output.dense", "rowwise"},
                              {"encoder.layer.*.intermediate.dense", "colwise"},
                              {"encoder.layer.*.output.dense", "rowwise"}};
  model._tp_attention = {{"encoder.layer.*.attention", {}, {}, {},
                          [](torch::nn::Module& m) {
                            auto& a = *dynamic_cast<BertAttention&>(m).self;
                            return distributed::TPHeads{a.num_attention_heads, a.num_attention_heads,
                                                        a.attention_head_size};
                          },
                          [](torch::nn::Module& m, const distributed::TPHeads& h) {
                            auto& a = *dynamic_cast<BertAttention&>(m).self;
                            a.num_attention_heads = h.num_heads;
                            a.all_head_size = h.num_heads * h.head_dim;
                          }}};
}

BertModel::BertModel(std::shared_ptr<BertConfig> config, bool add_pooling_layer)
    : BertPreTrainedModel(config, "BertModel") {
  embeddings = register_module("embeddings", std::make_shared<BertEmbeddings>(*config));
  encoder = register_module("encoder", std::make_shared<BertEncoder>(*config));
  if (add_pooling_layer) pooler = register_module("pooler", std::make_shared<BertPooler>(*config));
  declare_bert_encoder_tp_plan(*this);
  post_init();
}

std::shared_ptr<BertModel> BertModel::from_pretrained(const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<BertModel>(path, "BertModel", options);
}

void BertModel::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  embeddings->word_embeddings = embeddings->replace_module("word_embeddings", value);
}

void BertModel::_prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  encoder->prune_heads(heads_to_prune);
}

ModelOutput BertModel::forward(const ModelInputs& in) {
  if (in.input_ids.defined() && !in.inputs_embeds.defined())
    warn_if_padding_and_no_attention_mask(in.input_ids, in.attention_mask);
  return bert::model_forward(
      cfg(), in, dtype(), gradient_checkpointing && is_training(),
      [&](int64_t past_key_values_length) {
        return embeddings->forward(in.input_ids, in.token_type_ids, in.position_ids, in.inputs_embeds,
                                   past_key_values_length);
      },
      *encoder, pooler.get());
}

TFCPP_REGISTER_MODEL("bert", "base", BertModel, BertConfig);

// ---- Heads ----

BertPredictionHeadTransform::BertPredictionHeadTransform(const BertConfig& config)
    : transform_act_fn(nn::get_activation(config.hidden_act)) {
  dense = register_module("dense", std::make_shared<nn::Linear>(config.hidden_size, config.hidden_size));
  LayerNorm = register_module("LayerNorm", std::make_shared<nn::LayerNorm>(config.hidden_size, config.layer_norm_eps));
}

at::Tensor BertPredictionHeadTransform::forward(const at::Tensor& hidden_states) const {
  return LayerNorm->forward(transform_act_fn(dense->forward(hidden_states)));
}

BertLMPredictionHead::BertLMPredictionHead(const BertConfig& config) {
  transform = register_module("transform", std::make_shared<BertPredictionHeadTransform>(config));
  // The output weights are the same as the input embeddings, but there is an output-only bias for each token.
  decoder = register_module("decoder", std::make_shared<nn::Linear>(config.hidden_size, config.vocab_size));
  bind_parameter("bias", &bias, at::zeros({config.vocab_size}));
  // Need a link between the two variables so that the bias is correctly resized with `resize_token_embeddings`
  decoder->replace_parameter("bias", bias);
}

at::Tensor BertLMPredictionHead::forward(const at::Tensor& hidden_states) const {
  return decoder->forward(transform->forward(hidden_states));
}

void BertLMPredictionHead::_tie_weights() {
  if (decoder->bias.defined()) replace_parameter("bias", decoder->bias);
}

BertOnlyMLMHead::BertOnlyMLMHead(const BertConfig& config) {
  predictions = register_module("predictions", std::make_shared<BertLMPredictionHead>(config));
}

BertOnlyNSPHead::BertOnlyNSPHead(const BertConfig& config) {
  seq_relationship = register_module("seq_relationship", std::make_shared<nn::Linear>(config.hidden_size, 2));
}

BertPreTrainingHeads::BertPreTrainingHeads(const BertConfig& config) {
  predictions = register_module("predictions", std::make_shared<BertLMPredictionHead>(config));
  seq_relationship = register_module("seq_relationship", std::make_shared<nn::Linear>(config.hidden_size, 2));
}

std::pair<at::Tensor, at::Tensor> BertPreTrainingHeads::forward(const at::Tensor& sequence_output,
                                                                const at::Tensor& pooled_output) const {
  return {predictions->forward(sequence_output), seq_relationship->forward(pooled_output)};
}

// ---- BertForPreTraining ----

BertForPreTraining::BertForPreTraining(std::shared_ptr<BertConfig> config)
    : BertPreTrainedModel(config, "BertForPreTraining") {
  _tied_weights_keys = {"predictions.decoder.bias", "cls.predictions.decoder.weight"};
  bert = register_module("bert", std::make_shared<BertModel>(config));
  cls = register_module("cls", std::make_shared<BertPreTrainingHeads>(*config));
  post_init();
}

std::shared_ptr<BertForPreTraining> BertForPreTraining::from_pretrained(const std::string& path,
                                                                        const FromPretrainedOptions& options) {
  return from_pretrained_as<BertForPreTraining>(path, "BertForPreTraining", options);
}

void BertForPreTraining::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  cls->predictions->decoder = cls->predictions->replace_module("decoder", value);
}

void BertForPreTraining::tie_weights() {
  PreTrainedModel::tie_weights();
  cls->predictions->_tie_weights();
}

ModelOutput BertForPreTraining::forward(const ModelInputs& in) {
  ModelOutput outputs = bert->forward(bert::encoder_inputs(in));
  auto [prediction_scores, seq_relationship_score] = cls->forward(outputs.last_hidden_state, outputs.pooler_output);
  ModelOutput out;
  at::Tensor next_sentence_label = bert::tensor_argument(in, "next_sentence_label");
  if (in.labels.defined() && next_sentence_label.defined()) {
    at::Tensor masked_lm = masked_lm_loss(prediction_scores, in.labels);
    at::Tensor next_sentence_loss = at::cross_entropy_loss(
        seq_relationship_score.view({-1, 2}), next_sentence_label.reshape({-1}).to(at::kLong), {}, at::Reduction::Mean,
        -100);
    out.loss = masked_lm + next_sentence_loss;
  }
  out.extra["prediction_logits"] = prediction_scores;
  out.extra["seq_relationship_logits"] = seq_relationship_score;
  move_encoder_outputs(outputs, out);
  return out;
}

TFCPP_REGISTER_MODEL("bert", "pretraining", BertForPreTraining, BertConfig);

// ---- BertLMHeadModel ----

BertLMHeadModel::BertLMHeadModel(std::shared_ptr<BertConfig> config) : BertPreTrainedModel(config, "BertLMHeadModel") {
  _tied_weights_keys = {"cls.predictions.decoder.bias", "cls.predictions.decoder.weight"};
  // transformers warns when config.is_decoder is false: the model then attends bidirectionally.
  bert = register_module("bert", std::make_shared<BertModel>(config, false));
  cls = register_module("cls", std::make_shared<BertOnlyMLMHead>(*config));
  post_init();
}

std::shared_ptr<BertLMHeadModel> BertLMHeadModel::from_pretrained(const std::string& path,
                                                                  const FromPretrainedOptions& options) {
  return from_pretrained_as<BertLMHeadModel>(path, "BertLMHeadModel", options);
}

void BertLMHeadModel::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  cls->predictions->decoder = cls->predictions->replace_module("decoder", value);
}

void BertLMHeadModel::tie_weights() {
  PreTrainedModel::tie_weights();
  cls->predictions->_tie_weights();
}

ModelOutput BertLMHeadModel::forward(const ModelInputs& in) {
  ModelInputs inputs = in;
  if (in.labels.defined()) inputs.use_cache = false;
  ModelOutput outputs = bert->forward(inputs);
  ModelOutput out;
  out.logits = cls->forward(outputs.last_hidden_state);
  if (in.labels.defined()) {
    // we are doing next-token prediction; shift prediction scores and input ids by one
    int64_t length = out.logits.size(1);
    at::Tensor shifted_prediction_scores = out.logits.narrow(1, 0, length - 1).contiguous();
    at::Tensor labels = in.labels.narrow(1, 1, in.labels.size(1) - 1).contiguous();
    out.loss = masked_lm_loss(shifted_prediction_scores, labels);
  }
  out.past_key_values = outputs.past_key_values;
  move_encoder_outputs(outputs, out);
  return out;
}

ModelInputs BertLMHeadModel::prepare_inputs_for_generation(const at::Tensor& input_ids_full,
                                                           const ModelInputs& kwargs) {
  at::Tensor input_ids = input_ids_full;
  // if model is used as a decoder in encoder-decoder model, the decoder attention mask is created on the fly
  at::Tensor attention_mask = kwargs.attention_mask.defined() ? kwargs.attention_mask : at::ones_like(input_ids);
  // cut decoder_input_ids if past_key_values is used
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
  return model_inputs;
}

TFCPP_REGISTER_MODEL("bert", "causal-lm", BertLMHeadModel, BertConfig);

// ---- BertForMaskedLM ----

BertForMaskedLM::BertForMaskedLM(std::shared_ptr<BertConfig> config) : BertPreTrainedModel(config, "BertForMaskedLM") {
  _tied_weights_keys = {"predictions.decoder.bias", "cls.predictions.decoder.weight"};
  // transformers warns when config.is_decoder is set: masked LM wants bi-directional self-attention.
  bert = register_module("bert", std::make_shared<BertModel>(config, false));
  cls = register_module("cls", std::make_shared<BertOnlyMLMHead>(*config));
  post_init();
}

std::shared_ptr<BertForMaskedLM> BertForMaskedLM::from_pretrained(const std::string& path,
                                                                  const FromPretrainedOptions& options) {
  return from_pretrained_as<BertForMaskedLM>(path, "BertForMaskedLM", options);
}

void BertForMaskedLM::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  cls->predictions->decoder = cls->predictions->replace_module("decoder", value);
}

void BertForMaskedLM::tie_weights() {
  PreTrainedModel::tie_weights();
  cls->predictions->_tie_weights();
}

ModelOutput BertForMaskedLM::forward(const ModelInputs& in) {
  ModelInputs inputs = in;
  inputs.past_key_values = nullptr;
  inputs.use_cache = std::nullopt;
  ModelOutput outputs = bert->forward(inputs);
  ModelOutput out;
  out.logits = cls->forward(outputs.last_hidden_state);
  if (in.labels.defined()) out.loss = masked_lm_loss(out.logits, in.labels);  // -100 index = padding token
  move_encoder_outputs(outputs, out);
  return out;
}

TFCPP_REGISTER_MODEL("bert", "masked-lm", BertForMaskedLM, BertConfig);

// ---- BertForNextSentencePrediction ----

BertForNextSentencePrediction::BertForNextSentencePrediction(std::shared_ptr<BertConfig> config)
    : BertPreTrainedModel(config, "BertForNextSentencePrediction") {
  bert = register_module("bert", std::make_shared<BertModel>(config));
  cls = register_module("cls", std::make_shared<BertOnlyNSPHead>(*config));
  post_init();
}

std::shared_ptr<BertForNextSentencePrediction> BertForNextSentencePrediction::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<BertForNextSentencePrediction>(path, "BertForNextSentencePrediction", options);
}

ModelOutput BertForNextSentencePrediction::forward(const ModelInputs& in) {
  // `next_sentence_label` is the deprecated name of `labels`
  at::Tensor labels = in.labels.defined() ? in.labels : bert::tensor_argument(in, "next_sentence_label");
  ModelOutput outputs = bert->forward(bert::encoder_inputs(in));
  ModelOutput out;
  out.logits = cls->forward(outputs.pooler_output);
  if (labels.defined())
    out.loss = at::cross_entropy_loss(out.logits.view({-1, 2}), labels.reshape({-1}).to(at::kLong), {},
                                      at::Reduction::Mean, -100);
  move_encoder_outputs(outputs, out);
  return out;
}

TFCPP_REGISTER_MODEL("bert", "next-sentence-prediction", BertForNextSentencePrediction, BertConfig);

// ---- BertForSequenceClassification ----

BertForSequenceClassification::BertForSequenceClassification(std::shared_ptr<BertConfig> config)
    : BertPreTrainedModel(config, "BertForSequenceClassification"),
      num_labels(config->num_labels()),
      dropout(bert::classifier_dropout_of(*config)) {
  bert = register_module("bert", std::make_shared<BertModel>(config));
  classifier = register_module("classifier", std::make_shared<nn::Linear>(config->hidden_size, num_labels));
  post_init();
}

std::shared_ptr<BertForSequenceClassification> BertForSequenceClassification::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<BertForSequenceClassification>(path, "BertForSequenceClassification", options);
}

ModelOutput BertForSequenceClassification::forward(const ModelInputs& in) {
  ModelOutput outputs = bert->forward(bert::encoder_inputs(in));
  at::Tensor pooled_output = bert::dropout(outputs.pooler_output, dropout, is_training());
  ModelOutput out;
  out.logits = classifier->forward(pooled_output);
  if (in.labels.defined()) out.loss = bert::sequence_classification_loss(*config, out.logits, in.labels, num_labels);
  move_encoder_outputs(outputs, out);
  return out;
}

TFCPP_REGISTER_MODEL("bert", "sequence-classification", BertForSequenceClassification, BertConfig);

// ---- BertForMultipleChoice ----

BertForMultipleChoice::BertForMultipleChoice(std::shared_ptr<BertConfig> config)
    : BertPreTrainedModel(config, "BertForMultipleChoice"), dropout(bert::classifier_dropout_of(*config)) {
  bert = register_module("bert", std::make_shared<BertModel>(config));
  classifier = register_module("classifier", std::make_shared<nn::Linear>(config->hidden_size, 1));
  post_init();
}

std::shared_ptr<BertForMultipleChoice> BertForMultipleChoice::from_pretrained(const std::string& path,
                                                                              const FromPretrainedOptions& options) {
  return from_pretrained_as<BertForMultipleChoice>(path, "BertForMultipleChoice", options);
}

ModelOutput BertForMultipleChoice::forward(const ModelInputs& in) {
  ModelInputs inputs;
  int64_t num_choices = bert::flatten_multiple_choice(in, class_name, inputs);
  ModelOutput outputs = bert->forward(inputs);
  at::Tensor pooled_output = bert::dropout(outputs.pooler_output, dropout, is_training());
  ModelOutput out;
  out.logits = classifier->forward(pooled_output).view({-1, num_choices});
  if (in.labels.defined())
    out.loss = at::cross_entropy_loss(out.logits, in.labels.reshape({-1}).to(at::kLong), {}, at::Reduction::Mean, -100);
  move_encoder_outputs(outputs, out);
  return out;
}

TFCPP_REGISTER_MODEL("bert", "multiple-choice", BertForMultipleChoice, BertConfig);

// ---- BertForTokenClassification ----

BertForTokenClassification::BertForTokenClassification(std::shared_ptr<BertConfig> config)
    : BertPreTrainedModel(config, "BertForTokenClassification"),
      num_labels(config->num_labels()),
      dropout(bert::classifier_dropout_of(*config)) {
  bert = register_module("bert", std::make_shared<BertModel>(config, false));
  classifier = register_module("classifier", std::make_shared<nn::Linear>(config->hidden_size, num_labels));
  post_init();
}

std::shared_ptr<BertForTokenClassification> BertForTokenClassification::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<BertForTokenClassification>(path, "BertForTokenClassification", options);
}

ModelOutput BertForTokenClassification::forward(const ModelInputs& in) {
  ModelOutput outputs = bert->forward(bert::encoder_inputs(in));
  at::Tensor sequence_output = bert::dropout(outputs.last_hidden_state, dropout, is_training());
  ModelOutput out;
  out.logits = classifier->forward(sequence_output);
  if (in.labels.defined())
    out.loss = at::cross_entropy_loss(out.logits.view({-1, num_labels}), in.labels.reshape({-1}).to(at::kLong), {},
                                      at::Reduction::Mean, -100);
  move_encoder_outputs(outputs, out);
  return out;
}

TFCPP_REGISTER_MODEL("bert", "token-classification", BertForTokenClassification, BertConfig);

// ---- BertForQuestionAnswering ----

BertForQuestionAnswering::BertForQuestionAnswering(std::shared_ptr<BertConfig> config)
    : BertPreTrainedModel(config, "BertForQuestionAnswering"), num_labels(config->num_labels()) {
  bert = register_module("bert", std::make_shared<BertModel>(config, false));
  qa_outputs = register_module("qa_outputs", std::make_shared<nn::Linear>(config->hidden_size, num_labels));
  post_init();
}

std::shared_ptr<BertForQuestionAnswering> BertForQuestionAnswering::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<BertForQuestionAnswering>(path, "BertForQuestionAnswering", options);
}

ModelOutput BertForQuestionAnswering::forward(const ModelInputs& in) {
  ModelOutput outputs = bert->forward(bert::encoder_inputs(in));
  at::Tensor logits = qa_outputs->forward(outputs.last_hidden_state);
  if (logits.size(-1) != 2)
    throw ConfigError(class_name + ": question answering needs num_labels == 2 (start, end), the config has " +
                      std::to_string(logits.size(-1)));
  auto split = logits.split(1, -1);
  at::Tensor start_logits = split[0].squeeze(-1).contiguous();
  at::Tensor end_logits = split[1].squeeze(-1).contiguous();
  ModelOutput out;
  at::Tensor start_positions = bert::tensor_argument(in, "start_positions");
  at::Tensor end_positions = bert::tensor_argument(in, "end_positions");
  if (start_positions.defined() && end_positions.defined())
    out.loss = bert::question_answering_loss(start_logits, end_logits, start_positions, end_positions);
  out.extra["start_logits"] = start_logits;
  out.extra["end_logits"] = end_logits;
  move_encoder_outputs(outputs, out);
  return out;
}

TFCPP_REGISTER_MODEL("bert", "question-answering", BertForQuestionAnswering, BertConfig);

}  // namespace transformers
