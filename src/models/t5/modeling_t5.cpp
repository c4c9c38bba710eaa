// Port of transformers/models/t5/{configuration,modeling}_t5.py (4.40.2).
#include "transformers/models/t5.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/gradient_checkpointing.h"
#include "transformers/models/bert.h"

#include <ATen/ATen.h>

#include <cmath>

namespace transformers {

// ---- T5Config ----

namespace {

// act_info = feed_forward_proj.split("-"): (dense_act_fn, is_gated_act), "gated-gelu" -> gelu_new for backwards
// compatibility. Returns false when the format is not `gated-{ACT_FN}` or `{ACT_FN}`.
bool parse_feed_forward_proj(const std::string& proj, std::string& act, bool& gated) {
  std::vector<std::string> act_info;
  size_t start = 0;
  while (true) {
    size_t dash = proj.find('-', start);
    act_info.push_back(proj.substr(start, dash == std::string::npos ? std::string::npos : dash - start));
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  act = act_info.back();
  gated = act_info.front() == "gated";
  if (proj == "gated-gelu") act = "gelu_new";
  return !((act_info.size() > 1 && act_info.front() != "gated") || act_info.size() > 2);
}

}  // namespace

void T5Config::visit(ConfigVisitor& v) {
  v("vocab_size", vocab_size);
  v("d_model", d_model);
  v("d_kv", d_kv);
  v("d_ff", d_ff);
  v("num_layers", num_layers);
  if (v.mode() == ConfigVisitor::Mode::kWrite) {
    int64_t n = decoder_layers();
    v("num_decoder_layers", n);
  } else {
    v("num_decoder_layers", num_decoder_layers);
  }
  v("num_heads", num_heads);
  v("relative_attention_num_buckets", relative_attention_num_buckets);
  v("relative_attention_max_distance", relative_attention_max_distance);
  v("dropout_rate", dropout_rate);
  v("classifier_dropout", classifier_dropout);
  v("layer_norm_epsilon", layer_norm_epsilon);
  v("initializer_factor", initializer_factor);
  v("feed_forward_proj", feed_forward_proj);
  v("use_cache", use_cache);
  // __init__ derives these from feed_forward_proj; a config.json that stores them sets them afterwards (kwargs).
  if (v.mode() == ConfigVisitor::Mode::kRead) parse_feed_forward_proj(feed_forward_proj, dense_act_fn, is_gated_act);
  v("dense_act_fn", dense_act_fn);
  v("is_gated_act", is_gated_act);
}

void T5Config::post_read(const std::string& source) {
  if (!num_decoder_layers) num_decoder_layers = num_layers;
  std::string act;
  bool gated = false;
  if (!parse_feed_forward_proj(feed_forward_proj, act, gated))
    throw ConfigError(source + ": `feed_forward_proj`: " + feed_forward_proj +
                      " is not a valid activation function of the dense layer. Please make sure `feed_forward_proj` "
                      "is of the format `gated-{ACT_FN}` or `{ACT_FN}`, e.g. 'gated-gelu' or 'relu'");
  auto positive = [&](const char* key, int64_t value) {
    if (value <= 0) throw ConfigError(source + ": `" + key + "` must be positive, got " + std::to_string(value));
  };
  positive("vocab_size", vocab_size);
  positive("d_model", d_model);
  positive("d_kv", d_kv);
  positive("d_ff", d_ff);
  positive("num_heads", num_heads);
  positive("relative_attention_num_buckets", relative_attention_num_buckets);
  positive("relative_attention_max_distance", relative_attention_max_distance);
  if (num_layers < 0 || *num_decoder_layers < 0)
    throw ConfigError(source + ": num_layers and num_decoder_layers must be >= 0");
  nn::get_activation(dense_act_fn);  // ValueError naming the supported activations
}

TFCPP_REGISTER_CONFIG("t5", T5Config);

// ---- Layers ----

T5LayerNorm::T5LayerNorm(int64_t hidden_size, double eps) : variance_epsilon(eps) {
  bind_parameter("weight", &weight, at::ones({hidden_size}));
}

at::Tensor T5LayerNorm::forward(const at::Tensor& hidden_states) const {
  // RMS norm: variance without mean, accumulated in float32 for half-precision inputs
  at::Tensor variance = hidden_states.to(at::kFloat).pow(2).mean(-1, /*keepdim=*/true);
  at::Tensor out = hidden_states * at::rsqrt(variance + variance_epsilon);
  // convert into half-precision if necessary
  if (weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kBFloat16) out = out.to(weight.scalar_type());
  return weight * out;
}

namespace {
// self.wo is kept in float32 for 8-bit models (_keep_in_fp32_modules): the input follows wo's dtype.
at::Tensor to_wo_dtype(const at::Tensor& hidden_states, const nn::Linear& wo) {
  if (hidden_states.scalar_type() != wo.weight.scalar_type() && wo.weight.scalar_type() != at::kChar)
    return hidden_states.to(wo.weight.scalar_type());
  return hidden_states;
}
}  // namespace

T5DenseActDense::T5DenseActDense(const T5Config& config)
    : dropout(config.dropout_rate), act(nn::get_activation(config.dense_act_fn)) {
  wi = register_module("wi", std::make_shared<nn::Linear>(config.d_model, config.d_ff, false));
  wo = register_module("wo", std::make_shared<nn::Linear>(config.d_ff, config.d_model, false));
}

at::Tensor T5DenseActDense::forward(const at::Tensor& hidden_states) const {
  at::Tensor h = act(wi->forward(hidden_states));
  h = nn::dropout(h, dropout, is_training());
  return wo->forward(to_wo_dtype(h, *wo));
}

T5DenseGatedActDense::T5DenseGatedActDense(const T5Config& config)
    : dropout(config.dropout_rate), act(nn::get_activation(config.dense_act_fn)) {
  wi_0 = register_module("wi_0", std::make_shared<nn::Linear>(config.d_model, config.d_ff, false));
  wi_1 = register_module("wi_1", std::make_shared<nn::Linear>(config.d_model, config.d_ff, false));
  wo = register_module("wo", std::make_shared<nn::Linear>(config.d_ff, config.d_model, false));
}

at::Tensor T5DenseGatedActDense::forward(const at::Tensor& hidden_states) const {
  at::Tensor hidden_gelu = act(wi_0->forward(hidden_states));
  at::Tensor hidden_linear = wi_1->forward(hidden_states);
  at::Tensor h = nn::dropout(hidden_gelu * hidden_linear, dropout, is_training());
  return wo->forward(to_wo_dtype(h, *wo));
}

T5LayerFF::T5LayerFF(const T5Config& config) : dropout(config.dropout_rate) {
  if (config.is_gated_act)
    dense_gated_act_dense = register_module("DenseReluDense", std::make_shared<T5DenseGatedActDense>(config));
  else
    dense_act_dense = register_module("DenseReluDense", std::make_shared<T5DenseActDense>(config));
  layer_norm = register_module("layer_norm", std::make_shared<T5LayerNorm>(config.d_model, config.layer_norm_epsilon));
}

at::Tensor T5LayerFF::forward(const at::Tensor& hidden_states) const {
  at::Tensor forwarded_states = layer_norm->forward(hidden_states);
  forwarded_states = dense_gated_act_dense ? dense_gated_act_dense->forward(forwarded_states)
                                           : dense_act_dense->forward(forwarded_states);
  return hidden_states + nn::dropout(forwarded_states, dropout, is_training());
}

T5Attention::T5Attention(const T5Config& config, bool has_relative_attention_bias_)
    : is_decoder(config.is_decoder), has_relative_attention_bias(has_relative_attention_bias_),
      relative_attention_num_buckets(config.relative_attention_num_buckets),
      relative_attention_max_distance(config.relative_attention_max_distance), d_model(config.d_model),
      key_value_proj_dim(config.d_kv), n_heads(config.num_heads), dropout(config.dropout_rate),
      inner_dim(config.num_heads * config.d_kv) {
  // Mesh TensorFlow initialization to avoid scaling before softmax
  q = register_module("q", std::make_shared<nn::Linear>(d_model, inner_dim, false));
  k = register_module("k", std::make_shared<nn::Linear>(d_model, inner_dim, false));
  v = register_module("v", std::make_shared<nn::Linear>(d_model, inner_dim, false));
  o = register_module("o", std::make_shared<nn::Linear>(inner_dim, d_model, false));
  if (has_relative_attention_bias)
    relative_attention_bias = register_module(
        "relative_attention_bias", std::make_shared<nn::Embedding>(relative_attention_num_buckets, n_heads));
}

void T5Attention::prune_heads(const std::vector<int64_t>& heads) {
  if (heads.empty()) return;
  for (int64_t h : heads)
    if (h < 0 || h >= n_heads + static_cast<int64_t>(pruned_heads.size()))
      throw ValueError("prune_heads: head " + std::to_string(h) + " does not exist (the layer has " +
                       std::to_string(n_heads + static_cast<int64_t>(pruned_heads.size())) + " heads)");
  auto [to_prune, index] = nn::find_pruneable_heads_and_indices(heads, n_heads, key_value_proj_dim, pruned_heads);
  // Prune linear layers
  nn::prune_linear_layer(*q, index);
  nn::prune_linear_layer(*k, index);
  nn::prune_linear_layer(*v, index);
  nn::prune_linear_layer(*o, index, 1);
  // Update hyper params
  n_heads -= static_cast<int64_t>(to_prune.size());
  inner_dim = key_value_proj_dim * n_heads;
  pruned_heads.insert(to_prune.begin(), to_prune.end());
}

at::Tensor T5Attention::_relative_position_bucket(const at::Tensor& relative_position_in, bool bidirectional,
                                                  int64_t num_buckets, int64_t max_distance) {
  at::Tensor relative_position = relative_position_in;
  at::Tensor relative_buckets = at::zeros_like(relative_position, relative_position.options().dtype(at::kLong));
  if (bidirectional) {
    num_buckets /= 2;
    relative_buckets = relative_buckets + (relative_position > 0).to(at::kLong) * num_buckets;
    relative_position = at::abs(relative_position);
  } else {
    relative_position = -at::min(relative_position, at::zeros_like(relative_position));
  }
  // now relative_position is in the range [0, inf)

  // half of the buckets are for exact increments in positions
  const int64_t max_exact = num_buckets / 2;
  at::Tensor is_small = relative_position < max_exact;

  // The other half of the buckets are for logarithmically bigger bins in positions up to max_distance
  at::Tensor relative_position_if_large =
      max_exact + (at::log(relative_position.to(at::kFloat) / max_exact) /
                   std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                   (num_buckets - max_exact))
                      .to(at::kLong);
  relative_position_if_large =
      at::min(relative_position_if_large, at::full_like(relative_position_if_large, num_buckets - 1));

  return relative_buckets + at::where(is_small, relative_position.to(at::kLong), relative_position_if_large);
}

at::Tensor T5Attention::compute_bias(int64_t query_length, int64_t key_length, int64_t query_offset) const {
  auto options = at::TensorOptions(at::kLong).device(relative_attention_bias->weight.device());
  at::Tensor context_position = at::arange(query_offset, query_offset + query_length, options).unsqueeze(1);
  at::Tensor memory_position = at::arange(key_length, options).unsqueeze(0);
  at::Tensor relative_position = memory_position - context_position;  // shape (query_length, key_length)
  at::Tensor relative_position_bucket = _relative_position_bucket(
      relative_position, /*bidirectional=*/!is_decoder, relative_attention_num_buckets, relative_attention_max_distance);
  at::Tensor values = relative_attention_bias->forward(relative_position_bucket);  // (query_length, key_length, H)
  return values.permute({2, 0, 1}).unsqueeze(0);  // (1, H, query_length, key_length)
}

T5Attention::Output T5Attention::forward(const at::Tensor& hidden_states, const at::Tensor& mask,
                                         const at::Tensor& key_value_states, const at::Tensor& position_bias_in,
                                         const std::pair<at::Tensor, at::Tensor>& past_key_value, Cache* cache,
                                         int64_t layer_idx, const at::Tensor& layer_head_mask,
                                         bool output_attentions) {
  const bool is_cross_attention = key_value_states.defined();
  const int64_t batch_size = hidden_states.size(0), seq_length = hidden_states.size(1);
  // [B, T, H * D] -> [B, H, T, D]
  auto shape = [&](const at::Tensor& states) {
    return states.view({batch_size, -1, n_heads, key_value_proj_dim}).transpose(1, 2);
  };

  at::Tensor query_states = shape(q->forward(hidden_states));
  at::Tensor key_states, value_states;
  if (is_cross_attention && past_key_value.first.defined() &&
      past_key_value.first.size(2) == key_value_states.size(1)) {
    key_states = past_key_value.first;
    value_states = past_key_value.second;
  } else if (is_cross_attention) {
    key_states = shape(k->forward(key_value_states));
    value_states = shape(v->forward(key_value_states));
  } else {
    key_states = shape(k->forward(hidden_states));
    value_states = shape(v->forward(hidden_states));
    // self-attn with a cache: (batch_size, n_heads, key_length, dim_per_head) over every position so far
    if (cache) std::tie(key_states, value_states) = cache->update(key_states, value_states, layer_idx);
  }
  const int64_t key_length = key_states.size(2);

  // compute scores (no 1/sqrt(d) scaling: folded into the initialization of q)
  at::Tensor scores = at::matmul(query_states, key_states.transpose(3, 2));

  Output out;
  at::Tensor position_bias = position_bias_in;
  if (!position_bias.defined()) {
    if (!has_relative_attention_bias) {
      position_bias = at::zeros({1, n_heads, seq_length, key_length}, scores.options());
    } else {
      // only the last query positions when keys and values are already cached
      int64_t real_seq_length = is_cross_attention ? seq_length : key_length;
      position_bias = compute_bias(seq_length, key_length, real_seq_length - seq_length).to(scores.scalar_type());
    }
    if (mask.defined()) position_bias = position_bias + mask;  // (batch_size, n_heads, seq_length, key_length)
  }
  at::Tensor position_bias_masked = position_bias;
  if (!pruned_heads.empty() && position_bias.size(1) != n_heads) {
    std::vector<int64_t> kept;
    for (int64_t h = 0; h < position_bias.size(1); ++h)
      if (!pruned_heads.count(h)) kept.push_back(h);
    position_bias_masked =
        position_bias.index_select(1, at::tensor(kept, at::TensorOptions(at::kLong).device(position_bias.device())));
  }

  scores = scores + position_bias_masked;
  at::Tensor attn_weights = at::softmax(scores.to(at::kFloat), -1).to(scores.scalar_type());  // [B, H, T, S]
  attn_weights = nn::dropout(attn_weights, dropout, is_training());

  // Mask heads if we want to
  if (layer_head_mask.defined()) attn_weights = attn_weights * layer_head_mask;

  at::Tensor attn_output = at::matmul(attn_weights, value_states);  // [B, H, T, D]
  attn_output = attn_output.transpose(1, 2).contiguous().view({batch_size, -1, inner_dim});
  out.attn_output = o->forward(attn_output);
  out.key_states = key_states;
  out.value_states = value_states;
  out.position_bias = position_bias;
  if (output_attentions) out.attn_weights = attn_weights;
  return out;
}

T5LayerSelfAttention::T5LayerSelfAttention(const T5Config& config, bool has_relative_attention_bias)
    : dropout(config.dropout_rate) {
  SelfAttention = register_module("SelfAttention", std::make_shared<T5Attention>(config, has_relative_attention_bias));
  layer_norm = register_module("layer_norm", std::make_shared<T5LayerNorm>(config.d_model, config.layer_norm_epsilon));
}

T5LayerCrossAttention::T5LayerCrossAttention(const T5Config& config) : dropout(config.dropout_rate) {
  EncDecAttention = register_module("EncDecAttention", std::make_shared<T5Attention>(config, false));
  layer_norm = register_module("layer_norm", std::make_shared<T5LayerNorm>(config.d_model, config.layer_norm_epsilon));
}

T5Block::T5Block(const T5Config& config, bool has_relative_attention_bias) : is_decoder(config.is_decoder) {
  layer = register_module("layer", std::make_shared<nn::ModuleList<nn::Module>>());
  self_attention = std::make_shared<T5LayerSelfAttention>(config, has_relative_attention_bias);
  layer->push_back(self_attention);
  if (is_decoder) {
    cross_attention = std::make_shared<T5LayerCrossAttention>(config);
    layer->push_back(cross_attention);
  }
  ff = std::make_shared<T5LayerFF>(config);
  layer->push_back(ff);
}

namespace {
// clamp inf values to enable fp16 training
at::Tensor clamp_fp16(const at::Tensor& hidden_states) {
  if (hidden_states.scalar_type() != at::kHalf) return hidden_states;
  double max = 65504.0;
  double clamp_value = at::isinf(hidden_states).any().item<bool>() ? max - 1000 : max;
  return at::clamp(hidden_states, -clamp_value, clamp_value);
}
}  // namespace

T5Block::Output T5Block::forward(const at::Tensor& hidden_states_in, const at::Tensor& attention_mask,
                                 const at::Tensor& position_bias, const at::Tensor& encoder_hidden_states,
                                 const at::Tensor& encoder_attention_mask,
                                 const at::Tensor& encoder_decoder_position_bias, const at::Tensor& layer_head_mask,
                                 const at::Tensor& cross_attn_layer_head_mask, Cache* self_cache,
                                 const std::pair<at::Tensor, at::Tensor>& cross_past_key_value, int64_t layer_idx,
                                 bool output_attentions) {
  Output out;
  // T5LayerSelfAttention
  at::Tensor normed_hidden_states = self_attention->layer_norm->forward(hidden_states_in);
  auto self_outputs = self_attention->SelfAttention->forward(normed_hidden_states, attention_mask, {}, position_bias,
                                                             {}, self_cache, layer_idx, layer_head_mask,
                                                             output_attentions);
  at::Tensor hidden_states =
      clamp_fp16(hidden_states_in + nn::dropout(self_outputs.attn_output, self_attention->dropout, is_training()));
  out.self_key_states = self_outputs.key_states;
  out.self_value_states = self_outputs.value_states;
  out.position_bias = self_outputs.position_bias;
  out.self_attn_weights = self_outputs.attn_weights;

  if (is_decoder && encoder_hidden_states.defined()) {
    // T5LayerCrossAttention
    at::Tensor normed = cross_attention->layer_norm->forward(hidden_states);
    auto cross_outputs = cross_attention->EncDecAttention->forward(
        normed, encoder_attention_mask, encoder_hidden_states, encoder_decoder_position_bias, cross_past_key_value,
        nullptr, layer_idx, cross_attn_layer_head_mask, output_attentions);
    hidden_states =
        clamp_fp16(hidden_states + nn::dropout(cross_outputs.attn_output, cross_attention->dropout, is_training()));
    out.cross_key_states = cross_outputs.key_states;
    out.cross_value_states = cross_outputs.value_states;
    out.encoder_decoder_position_bias = cross_outputs.position_bias;
    out.cross_attn_weights = cross_outputs.attn_weights;
  }

  // Apply Feed Forward layer
  out.hidden_states = clamp_fp16(ff->forward(hidden_states));
  return out;
}

// ---- T5PreTrainedModel ----

ModelInputs T5PreTrainedModel::dummy_inputs() const {
  ModelInputs inputs = PreTrainedModel::dummy_inputs();
  inputs.decoder_input_ids = inputs.input_ids;
  inputs.decoder_attention_mask =
      at::tensor(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1}).view({3, 5});  // DUMMY_MASK
  return inputs;
}

T5PreTrainedModel::T5PreTrainedModel(std::shared_ptr<T5Config> config, std::string class_name)
    : PreTrainedModel(std::move(config), std::move(class_name)) {
  base_model_prefix = "transformer";
  supports_gradient_checkpointing = true;
  _no_split_modules = {"T5Block"};
  _keep_in_fp32_modules = {"wo"};
  // T5_ATTENTION_CLASSES does not exist in transformers 4.40: eager only; the base class refuses sdpa / flash.
  _supports_sdpa = false;
  _supports_flash_attn_2 = false;
}

void T5PreTrainedModel::_init_weights(torch::nn::Module& module) {
  const T5Config& c = cfg();
  const double factor = c.initializer_factor;  // Used for testing weights initialization
  if (resizing_) {
    // resize_token_embeddings: nn.Embedding / nn.Linear built fresh keep torch's default init.
    if (auto* embedding = dynamic_cast<nn::Embedding*>(&module)) {
      embedding->weight.normal_(0.0, 1.0);
    } else if (auto* linear = dynamic_cast<nn::Linear*>(&module)) {
      double bound = 1.0 / std::sqrt(static_cast<double>(linear->in_features));
      linear->weight.uniform_(-bound, bound);
      if (linear->bias.defined()) linear->bias.uniform_(-bound, bound);
    }
    return;
  }
  auto normal = [](const std::shared_ptr<nn::Linear>& linear, double std) {
    linear->weight.normal_(0.0, std);
    if (linear->bias.defined()) linear->bias.zero_();
  };
  if (auto* norm = dynamic_cast<T5LayerNorm*>(&module)) {
    norm->weight.fill_(factor * 1.0);
  } else if (dynamic_cast<T5Model*>(&module) || dynamic_cast<T5ForConditionalGeneration*>(&module) ||
             dynamic_cast<T5EncoderModel*>(&module)) {
    // Mesh TensorFlow embeddings initialization
    auto* model = dynamic_cast<PreTrainedModel*>(&module);
    model->get_input_embeddings()->weight.normal_(0.0, factor * 1.0);
    if (auto head = model->get_output_embeddings(); head && !c.tie_word_embeddings)
      head->weight.normal_(0.0, factor * 1.0);
  } else if (auto* dense = dynamic_cast<T5DenseActDense*>(&module)) {
    // Mesh TensorFlow FF initialization
    normal(dense->wi, factor * std::pow(static_cast<double>(c.d_model), -0.5));
    normal(dense->wo, factor * std::pow(static_cast<double>(c.d_ff), -0.5));
  } else if (auto* gated = dynamic_cast<T5DenseGatedActDense*>(&module)) {
    normal(gated->wi_0, factor * std::pow(static_cast<double>(c.d_model), -0.5));
    normal(gated->wi_1, factor * std::pow(static_cast<double>(c.d_model), -0.5));
    normal(gated->wo, factor * std::pow(static_cast<double>(c.d_ff), -0.5));
  } else if (auto* attention = dynamic_cast<T5Attention*>(&module)) {
    // Mesh TensorFlow attention initialization to avoid scaling before softmax
    const double d_model = static_cast<double>(c.d_model), key_value_proj_dim = static_cast<double>(c.d_kv),
                 n_heads = static_cast<double>(c.num_heads);
    attention->q->weight.normal_(0.0, factor * std::pow(d_model * key_value_proj_dim, -0.5));
    attention->k->weight.normal_(0.0, factor * std::pow(d_model, -0.5));
    attention->v->weight.normal_(0.0, factor * std::pow(d_model, -0.5));
    attention->o->weight.normal_(0.0, factor * std::pow(n_heads * key_value_proj_dim, -0.5));
    if (attention->has_relative_attention_bias)
      attention->relative_attention_bias->weight.normal_(0.0, factor * std::pow(d_model, -0.5));
  }
}

std::shared_ptr<nn::Embedding> T5PreTrainedModel::resize_token_embeddings(std::optional<int64_t> new_num_tokens,
                                                                         std::optional<int64_t> pad_to_multiple_of) {
  struct Flag {
    bool& flag;
    explicit Flag(bool& f) : flag(f) { flag = true; }
    ~Flag() { flag = false; }
  } resizing(resizing_);
  return PreTrainedModel::resize_token_embeddings(new_num_tokens, pad_to_multiple_of);
}

at::Tensor T5PreTrainedModel::_shift_right(const at::Tensor& input_ids) const {
  const T5Config& c = cfg();
  if (!c.decoder_start_token_id)
    throw ValueError("self.model.config.decoder_start_token_id has to be defined. In T5 it is usually set to the "
                     "pad_token_id. See T5 docs for more information.");
  if (input_ids.dim() < 1 || input_ids.size(-1) == 0)
    throw ValueError("labels must have at least one position, got shape " + c10::str(input_ids.sizes()));
  // shift inputs to the right
  at::Tensor shifted_input_ids = at::zeros_like(input_ids);
  int64_t len = input_ids.size(-1);
  if (len > 1) shifted_input_ids.narrow(-1, 1, len - 1).copy_(input_ids.narrow(-1, 0, len - 1));
  shifted_input_ids.select(-1, 0).fill_(*c.decoder_start_token_id);
  if (!c.pad_token_id) throw ValueError("self.model.config.pad_token_id has to be defined.");
  // replace possible -100 values in labels by `pad_token_id`
  shifted_input_ids.masked_fill_(shifted_input_ids.eq(-100), *c.pad_token_id);
  return shifted_input_ids;
}

// ---- T5Stack ----

T5Stack::T5Stack(std::shared_ptr<T5Config> config, std::shared_ptr<nn::Embedding> embed_tokens_)
    : T5PreTrainedModel(config, "T5Stack"), is_decoder(config->is_decoder), dropout(config->dropout_rate) {
  const T5Config& c = *config;
  if (embed_tokens_) embed_tokens = register_module("embed_tokens", embed_tokens_);
  block = register_module("block", std::make_shared<nn::ModuleList<T5Block>>());
  for (int64_t i = 0; i < c.num_layers; ++i) block->push_back(std::make_shared<T5Block>(c, i == 0));
  final_layer_norm = register_module("final_layer_norm", std::make_shared<T5LayerNorm>(c.d_model, c.layer_norm_epsilon));
  // Tensor parallelism (distributed.h): self/cross attention by heads (the relative bias table by its head columns),
  // feed-forward split; embeddings and lm_head replicated.
  base_model_tp_plan = {{"block.*.layer.*.SelfAttention.q", "colwise"},   {"block.*.layer.*.SelfAttention.k", "colwise"},
                        {"block.*.layer.*.SelfAttention.v", "colwise"},   {"block.*.layer.*.SelfAttention.o", "rowwise"},
                        {"block.*.layer.*.EncDecAttention.q", "colwise"}, {"block.*.layer.*.EncDecAttention.k", "colwise"},
                        {"block.*.layer.*.EncDecAttention.v", "colwise"}, {"block.*.layer.*.EncDecAttention.o", "rowwise"},
                        {"block.*.layer.*.DenseReluDense.wi", "colwise"}, {"block.*.layer.*.DenseReluDense.wi_0", "colwise"},
                        {"block.*.layer.*.DenseReluDense.wi_1", "colwise"}, {"block.*.layer.*.DenseReluDense.wo", "rowwise"}};
  auto get_heads = [](torch::nn::Module& m) {
    auto& a = dynamic_cast<T5Attention&>(m);
    return distributed::TPHeads{a.n_heads, a.n_heads, a.key_value_proj_dim};
  };
  auto set_heads = [](torch::nn::Module& m, const distributed::TPHeads& h) {
    auto& a = dynamic_cast<T5Attention&>(m);
    a.n_heads = h.num_heads;
    a.inner_dim = h.num_heads * h.head_dim;
  };
  _tp_attention = {{"block.*.layer.*.SelfAttention", {}, {}, {"relative_attention_bias"}, get_heads, set_heads},
                   {"block.*.layer.*.EncDecAttention", {}, {}, {"relative_attention_bias"}, get_heads, set_heads}};
  post_init();
}

void T5Stack::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  if (embed_tokens) embed_tokens = replace_module("embed_tokens", value);
  else embed_tokens = register_module("embed_tokens", value);
}

ModelOutput T5Stack::forward(const ModelInputs& in) {
  const T5Config& c = cfg();
  bool use_cache = in.use_cache.value_or(c.use_cache);
  const bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  const bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);
  const bool training = is_training();
  const std::string err_msg_prefix = is_decoder ? "decoder_" : "";

  if (in.input_ids.defined() && in.inputs_embeds.defined())
    throw ValueError("You cannot specify both " + err_msg_prefix + "input_ids and " + err_msg_prefix +
                     "inputs_embeds at the same time");
  if (!in.input_ids.defined() && !in.inputs_embeds.defined())
    throw ValueError("You have to specify either " + err_msg_prefix + "input_ids or " + err_msg_prefix +
                     "inputs_embeds");
  at::Tensor inputs_embeds = in.inputs_embeds;
  if (!inputs_embeds.defined()) {
    if (in.input_ids.dim() != 2)
      throw ValueError(err_msg_prefix + "input_ids must be 2-D [batch, seq], got shape " +
                       c10::str(in.input_ids.sizes()));
    if (!embed_tokens) throw ValueError("You have to initialize the model with valid token embeddings");
    int64_t vocab = embed_tokens->num_embeddings;
    if (in.input_ids.numel() > 0 && (in.input_ids.min().item<int64_t>() < 0 ||
                                     in.input_ids.max().item<int64_t>() >= vocab))
      throw ValueError(err_msg_prefix + "input_ids hold ids outside the vocabulary [0, " + std::to_string(vocab) + ")");
    inputs_embeds = embed_tokens->forward(in.input_ids);
  } else if (inputs_embeds.dim() != 3) {
    throw ValueError(err_msg_prefix + "inputs_embeds must be 3-D [batch, seq, d_model], got shape " +
                     c10::str(inputs_embeds.sizes()));
  }
  const int64_t batch_size = inputs_embeds.size(0), seq_length = inputs_embeds.size(1);
  const auto dtype = inputs_embeds.scalar_type();

  if (use_cache && !is_decoder)
    throw ValueError("`use_cache` can only be set to `True` if T5Stack is used as a decoder");
  if (gradient_checkpointing && training) use_cache = false;  // incompatible with gradient checkpointing

  std::shared_ptr<Cache> cache = in.past_key_values;
  if (use_cache && !cache) cache = std::make_shared<EncoderDecoderCache>();
  auto* encoder_decoder_cache = dynamic_cast<EncoderDecoderCache*>(cache.get());
  // required mask seq length can be calculated via length of past
  const int64_t past_length = cache ? cache->get_seq_length() : 0;
  const int64_t mask_seq_length = past_length + seq_length;

  at::Tensor attention_mask = in.attention_mask;
  if (!attention_mask.defined())
    attention_mask = at::ones({batch_size, mask_seq_length}, inputs_embeds.options().dtype(at::kFloat));
  if (attention_mask.dim() == 2 && (attention_mask.size(0) != batch_size ||
                                    (attention_mask.size(1) != mask_seq_length)))
    throw ValueError(err_msg_prefix + "attention_mask should be of size [" + std::to_string(batch_size) + ", " +
                     std::to_string(mask_seq_length) + "], but is " + c10::str(attention_mask.sizes()));
  at::Tensor extended_attention_mask =
      transformers::get_extended_attention_mask(attention_mask, {batch_size, seq_length}, is_decoder, dtype);

  const at::Tensor& encoder_hidden_states = in.encoder_hidden_states;
  at::Tensor encoder_extended_attention_mask;
  if (is_decoder && encoder_hidden_states.defined()) {
    at::Tensor encoder_attention_mask = in.encoder_attention_mask;
    if (!encoder_attention_mask.defined())
      encoder_attention_mask = at::ones({encoder_hidden_states.size(0), encoder_hidden_states.size(1)},
                                        inputs_embeds.options().dtype(at::kLong));
    if (encoder_attention_mask.dim() == 2 &&
        (encoder_attention_mask.size(0) != encoder_hidden_states.size(0) ||
         encoder_attention_mask.size(1) != encoder_hidden_states.size(1)))
      throw ValueError("attention_mask shape " + c10::str(encoder_attention_mask.sizes()) +
                       " does not match the encoder states " + c10::str(encoder_hidden_states.sizes()));
    encoder_extended_attention_mask = transformers::invert_attention_mask(encoder_attention_mask, dtype);
  }

  // Prepare head mask if needed
  const auto num_layers = static_cast<int64_t>(block->size());
  std::vector<at::Tensor> head_mask = get_head_mask(in.head_mask, num_layers, dtype);
  std::vector<at::Tensor> cross_attn_head_mask = get_head_mask(in.cross_attn_head_mask, num_layers, dtype);

  std::vector<std::vector<at::Tensor>> cross_past;
  if (encoder_decoder_cache && encoder_hidden_states.defined())
    cross_past = encoder_decoder_cache->cross_attention_cache->to_legacy_cache();

  ModelOutput out;
  at::Tensor position_bias, encoder_decoder_position_bias;
  at::Tensor hidden_states = nn::dropout(inputs_embeds, dropout, training);
  at::Tensor checkpoint_encoder_states = encoder_hidden_states;

  for (int64_t i = 0; i < num_layers; ++i) {
    const auto& layer_module = (*block)[static_cast<size_t>(i)];
    if (output_hidden_states) out.hidden_states.push_back(hidden_states);

    if (gradient_checkpointing && training) {
      // The first layer's relative bias is recomputed inside each checkpointed layer so that its gradient flows. The
      // encoder states travel with the hidden states ([B, T + S, d_model], passed through unchanged) so that the
      // cross-attention's gradient reaches the encoder.
      auto first_attention = (*block)[0]->self_attention->SelfAttention;
      at::Tensor mask = extended_attention_mask, enc_mask = encoder_extended_attention_mask,
                 layer_head_mask = head_mask[i], cross_layer_head_mask = cross_attn_head_mask[i];
      const bool with_encoder = encoder_hidden_states.defined() && is_decoder;
      at::Tensor packed = with_encoder ? at::cat({hidden_states, checkpoint_encoder_states}, 1) : hidden_states;
      packed = checkpoint(
          [layer_module, first_attention, mask, enc_mask, layer_head_mask, cross_layer_head_mask, i, seq_length,
           with_encoder](const at::Tensor& p) {
            at::Tensor h = with_encoder ? p.narrow(1, 0, seq_length) : p;
            at::Tensor enc_states = with_encoder ? p.narrow(1, seq_length, p.size(1) - seq_length) : at::Tensor();
            at::Tensor bias;
            if (i > 0) bias = first_attention->compute_bias(seq_length, seq_length).to(h.scalar_type()) + mask;
            at::Tensor out = layer_module
                                 ->forward(h, mask, bias, enc_states, enc_mask, {}, layer_head_mask,
                                           cross_layer_head_mask, nullptr, {}, i, false)
                                 .hidden_states;
            return with_encoder ? at::cat({out, enc_states}, 1) : out;
          },
          packed);
      hidden_states = with_encoder ? packed.narrow(1, 0, seq_length) : packed;
      if (with_encoder) checkpoint_encoder_states = packed.narrow(1, seq_length, packed.size(1) - seq_length);
      continue;
    }

    std::pair<at::Tensor, at::Tensor> cross_past_key_value;
    if (static_cast<size_t>(i) < cross_past.size() && cross_past[i].size() >= 2)
      cross_past_key_value = {cross_past[i][0], cross_past[i][1]};
    auto layer_outputs = layer_module->forward(hidden_states, extended_attention_mask, position_bias,
                                               encoder_hidden_states, encoder_extended_attention_mask,
                                               encoder_decoder_position_bias, head_mask[i], cross_attn_head_mask[i],
                                               cache.get(), cross_past_key_value, i, output_attentions);
    hidden_states = layer_outputs.hidden_states;
    // We share the position biases between the layers - the first layer store them
    position_bias = layer_outputs.position_bias;
    if (is_decoder && encoder_hidden_states.defined())
      encoder_decoder_position_bias = layer_outputs.encoder_decoder_position_bias;
    if (encoder_decoder_cache && layer_outputs.cross_key_states.defined() && !encoder_decoder_cache->has_cross(i))
      encoder_decoder_cache->cross_attention_cache->update(layer_outputs.cross_key_states,
                                                           layer_outputs.cross_value_states, i);
    if (output_attentions) {
      out.attentions.push_back(layer_outputs.self_attn_weights);
      if (is_decoder && layer_outputs.cross_attn_weights.defined())
        out.cross_attentions.push_back(layer_outputs.cross_attn_weights);
    }
  }

  hidden_states = final_layer_norm->forward(hidden_states);
  hidden_states = nn::dropout(hidden_states, dropout, training);
  // Add last layer
  if (output_hidden_states) out.hidden_states.push_back(hidden_states);
  out.last_hidden_state = hidden_states;
  if (use_cache) out.past_key_values = cache;
  return out;
}

// ---- Shared by T5Model / T5ForConditionalGeneration / T5EncoderModel ----

namespace {

// copy.deepcopy(config) with the stack's overrides; pruned heads are applied by the outer model.
std::shared_ptr<T5Config> stack_config(const T5Config& config, bool is_decoder) {
  auto copy = std::make_shared<T5Config>(config);
  copy->is_decoder = is_decoder;
  copy->is_encoder_decoder = false;
  if (is_decoder) copy->num_layers = config.decoder_layers();
  else copy->use_cache = false;
  copy->pruned_heads.clear();
  return copy;
}

std::shared_ptr<T5Config> encoder_only_config(const T5Config& config) {
  auto copy = std::make_shared<T5Config>(config);
  copy->use_cache = false;
  copy->is_encoder_decoder = false;
  copy->pruned_heads.clear();
  return copy;
}

void prune_encoder_heads(T5Stack& encoder, const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  for (const auto& [layer, heads] : heads_to_prune) {
    if (layer < 0 || layer >= static_cast<int64_t>(encoder.block->size()))
      throw ValueError("prune_heads: layer " + std::to_string(layer) + " does not exist (the encoder has " +
                       std::to_string(encoder.block->size()) + " layers)");
    (*encoder.block)[static_cast<size_t>(layer)]->self_attention->SelfAttention->prune_heads(heads);
  }
}

ModelInputs encoder_inputs(const ModelInputs& in, bool output_attentions, bool output_hidden_states) {
  ModelInputs e;
  e.input_ids = in.input_ids;
  e.attention_mask = in.attention_mask;
  e.inputs_embeds = in.inputs_embeds;
  e.head_mask = in.head_mask;
  e.output_attentions = output_attentions;
  e.output_hidden_states = output_hidden_states;
  return e;
}

// The encoder, then the decoder over its output: Seq2SeqModelOutput with the decoder's last_hidden_state.
ModelOutput encoder_decoder_forward(const T5Config& c, T5Stack& encoder, T5Stack& decoder, const ModelInputs& in,
                                    const at::Tensor& decoder_input_ids) {
  const bool use_cache = in.use_cache.value_or(c.use_cache);
  const bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  const bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);

  // FutureWarning: head_mask was separated into two input args - head_mask, decoder_head_mask
  at::Tensor decoder_head_mask = in.decoder_head_mask;
  if (in.head_mask.defined() && !decoder_head_mask.defined() && c.num_layers == c.decoder_layers())
    decoder_head_mask = in.head_mask;

  std::shared_ptr<ModelOutput> encoder_outputs = in.encoder_outputs;
  if (!encoder_outputs)
    encoder_outputs = std::make_shared<ModelOutput>(
        encoder.forward(encoder_inputs(in, output_attentions, output_hidden_states)));
  else if (!encoder_outputs->last_hidden_state.defined())
    throw ValueError("encoder_outputs has no last_hidden_state");

  ModelInputs d;
  d.input_ids = decoder_input_ids;
  d.attention_mask = in.decoder_attention_mask;
  d.inputs_embeds = in.decoder_inputs_embeds;
  d.past_key_values = in.past_key_values;
  d.encoder_hidden_states = encoder_outputs->last_hidden_state;
  d.encoder_attention_mask = in.attention_mask;
  d.head_mask = decoder_head_mask;
  d.cross_attn_head_mask = in.cross_attn_head_mask;
  d.use_cache = use_cache;
  d.output_attentions = output_attentions;
  d.output_hidden_states = output_hidden_states;
  ModelOutput decoder_outputs = decoder.forward(d);

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

}  // namespace

// ---- T5Model ----

T5Model::T5Model(std::shared_ptr<T5Config> config) : T5PreTrainedModel(config, "T5Model") {
  _keys_to_ignore_on_load_unexpected = {"decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"};
  _tied_weights_keys = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"};
  shared = register_module("shared", std::make_shared<nn::Embedding>(config->vocab_size, config->d_model));
  encoder = register_module("encoder", std::make_shared<T5Stack>(stack_config(*config, false), shared));
  decoder = register_module("decoder", std::make_shared<T5Stack>(stack_config(*config, true), shared));
  post_init();
}

std::shared_ptr<T5Model> T5Model::from_pretrained(const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<T5Model>(path, "T5Model", options);
}

void T5Model::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  shared = replace_module("shared", value);
  encoder->set_input_embeddings(shared);
  decoder->set_input_embeddings(shared);
}

void T5Model::_prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  prune_encoder_heads(*encoder, heads_to_prune);
}

ModelOutput T5Model::forward(const ModelInputs& in) {
  return encoder_decoder_forward(cfg(), *encoder, *decoder, in, in.decoder_input_ids);
}

TFCPP_REGISTER_MODEL("t5", "base", T5Model, T5Config);

// ---- T5ForConditionalGeneration ----

T5ForConditionalGeneration::T5ForConditionalGeneration(std::shared_ptr<T5Config> config)
    : T5PreTrainedModel(config, "T5ForConditionalGeneration"), model_dim(config->d_model) {
  _keys_to_ignore_on_load_unexpected = {"decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"};
  _tied_weights_keys = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"};
  shared = register_module("shared", std::make_shared<nn::Embedding>(config->vocab_size, config->d_model));
  encoder = register_module("encoder", std::make_shared<T5Stack>(stack_config(*config, false), shared));
  decoder = register_module("decoder", std::make_shared<T5Stack>(stack_config(*config, true), shared));
  lm_head = register_module("lm_head", std::make_shared<nn::Linear>(config->d_model, config->vocab_size, false));
  post_init();
}

std::shared_ptr<T5ForConditionalGeneration> T5ForConditionalGeneration::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<T5ForConditionalGeneration>(path, "T5ForConditionalGeneration", options);
}

void T5ForConditionalGeneration::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  shared = replace_module("shared", value);
  encoder->set_input_embeddings(shared);
  decoder->set_input_embeddings(shared);
}

void T5ForConditionalGeneration::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  lm_head = replace_module("lm_head", value);
}

void T5ForConditionalGeneration::_prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  prune_encoder_heads(*encoder, heads_to_prune);
}

ModelOutput T5ForConditionalGeneration::forward(const ModelInputs& in) {
  const T5Config& c = cfg();
  at::Tensor decoder_input_ids = in.decoder_input_ids;
  if (in.labels.defined() && !decoder_input_ids.defined() && !in.decoder_inputs_embeds.defined())
    decoder_input_ids = _shift_right(in.labels);
  ModelOutput out = encoder_decoder_forward(c, *encoder, *decoder, in, decoder_input_ids);

  at::Tensor sequence_output = out.last_hidden_state;
  // Generation reads only the last position's logits.
  if (in.num_logits_to_keep > 0 && in.num_logits_to_keep < sequence_output.size(1))
    sequence_output = sequence_output.narrow(1, sequence_output.size(1) - in.num_logits_to_keep,
                                             in.num_logits_to_keep);
  // Rescale output before projecting on vocab
  // See https://github.com/tensorflow/mesh/blob/fa19d69eafc9a482aff0b59ddd96b025c0cb207d/mesh_tensorflow/transformer/transformer.py#L586
  if (c.tie_word_embeddings) sequence_output = sequence_output * std::pow(static_cast<double>(model_dim), -0.5);
  out.logits = lm_head->forward(sequence_output);
  out.last_hidden_state = at::Tensor();

  if (in.labels.defined()) {
    if (in.labels.sizes() != out.logits.sizes().slice(0, out.logits.dim() - 1))
      throw ValueError("labels shape " + c10::str(in.labels.sizes()) + " does not match the logits " +
                       c10::str(out.logits.sizes()));
    out.loss = at::cross_entropy_loss(out.logits.reshape({-1, out.logits.size(-1)}), in.labels.reshape({-1}), {},
                                      at::Reduction::Mean, -100);
  }
  return out;
}

ModelInputs T5ForConditionalGeneration::prepare_inputs_for_generation(const at::Tensor& decoder_input_ids,
                                                                      const ModelInputs& kwargs) {
  at::Tensor ids = decoder_input_ids;
  // cut decoder_input_ids if past_key_values is used
  if (kwargs.past_key_values) {
    int64_t past_length = kwargs.past_key_values->get_seq_length();
    // Some generation methods already pass only the last input ID
    int64_t remove_prefix_length = ids.size(1) > past_length ? past_length : ids.size(1) - 1;
    ids = ids.narrow(1, remove_prefix_length, ids.size(1) - remove_prefix_length);
  }
  ModelInputs model_inputs;
  model_inputs.decoder_input_ids = ids;
  model_inputs.past_key_values = kwargs.past_key_values;
  model_inputs.encoder_outputs = kwargs.encoder_outputs;
  model_inputs.attention_mask = kwargs.attention_mask;
  model_inputs.head_mask = kwargs.head_mask;
  model_inputs.decoder_head_mask = kwargs.decoder_head_mask;
  model_inputs.decoder_attention_mask = kwargs.decoder_attention_mask;
  model_inputs.cross_attn_head_mask = kwargs.cross_attn_head_mask;
  model_inputs.use_cache = kwargs.use_cache;
  model_inputs.num_logits_to_keep = kwargs.num_logits_to_keep;
  return model_inputs;
}

void T5ForConditionalGeneration::_reorder_cache(Cache& past_key_values, const at::Tensor& beam_idx) {
  past_key_values.reorder_cache(beam_idx);
}

TFCPP_REGISTER_MODEL("t5", "seq2seq-lm", T5ForConditionalGeneration, T5Config);

// ---- T5EncoderModel ----

T5EncoderModel::T5EncoderModel(std::shared_ptr<T5Config> config) : T5PreTrainedModel(config, "T5EncoderModel") {
  _tied_weights_keys = {"encoder.embed_tokens.weight"};
  _keys_to_ignore_on_load_unexpected = {"decoder"};
  shared = register_module("shared", std::make_shared<nn::Embedding>(config->vocab_size, config->d_model));
  encoder = register_module("encoder", std::make_shared<T5Stack>(encoder_only_config(*config), shared));
  post_init();
}

std::shared_ptr<T5EncoderModel> T5EncoderModel::from_pretrained(const std::string& path,
                                                               const FromPretrainedOptions& options) {
  return from_pretrained_as<T5EncoderModel>(path, "T5EncoderModel", options);
}

void T5EncoderModel::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  shared = replace_module("shared", value);
  encoder->set_input_embeddings(shared);
}

void T5EncoderModel::_prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  prune_encoder_heads(*encoder, heads_to_prune);
}

ModelOutput T5EncoderModel::forward(const ModelInputs& in) {
  const T5Config& c = cfg();
  return encoder->forward(encoder_inputs(in, in.output_attentions.value_or(c.output_attentions),
                                         in.output_hidden_states.value_or(c.output_hidden_states)));
}

TFCPP_REGISTER_MODEL("t5", "text-encoding", T5EncoderModel, T5Config);

}  // namespace transformers
