// Port of transformers/models/gpt2/{configuration,modeling}_gpt2.py (4.40.2).
#include "transformers/models/gpt2.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/gradient_checkpointing.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace transformers {

// ---- GPT2Config ----

void GPT2Config::visit(ConfigVisitor& v) {
  v("vocab_size", vocab_size);
  v("n_positions", n_positions);
  v("n_embd", n_embd);
  v("n_layer", n_layer);
  v("n_head", n_head);
  v("n_inner", n_inner);
  v("activation_function", activation_function);
  v("resid_pdrop", resid_pdrop);
  v("embd_pdrop", embd_pdrop);
  v("attn_pdrop", attn_pdrop);
  v("layer_norm_epsilon", layer_norm_epsilon);
  v("initializer_range", initializer_range);
  v("summary_type", summary_type);
  v("summary_use_proj", summary_use_proj);
  v("summary_activation", summary_activation);
  v("summary_first_dropout", summary_first_dropout);
  v("summary_proj_to_labels", summary_proj_to_labels);
  v("scale_attn_weights", scale_attn_weights);
  v("use_cache", use_cache);
  v("scale_attn_by_inverse_layer_idx", scale_attn_by_inverse_layer_idx);
  v("reorder_and_upcast_attn", reorder_and_upcast_attn);
}

void GPT2Config::post_read(const std::string& source) {
  if (n_head <= 0 || n_embd % n_head != 0)
    throw ConfigError(source + ": `embed_dim` must be divisible by num_heads (got `embed_dim`: " +
                      std::to_string(n_embd) + " and `num_heads`: " + std::to_string(n_head) + ")");
  if (n_layer < 0 || n_positions <= 0 || vocab_size <= 0)
    throw ConfigError(source + ": n_layer, n_positions and vocab_size must be positive");
  try {
    nn::get_activation(activation_function);
  } catch (const ValueError& e) {
    throw ConfigError(source + ": activation_function: " + e.what());
  }
}

TFCPP_REGISTER_CONFIG("gpt2", GPT2Config);

namespace {

using nn::dropout;

void check_ids_in_range(const at::Tensor& ids, int64_t size, const char* what, const char* limit) {
  if (ids.numel() == 0) return;
  int64_t low = ids.min().item<int64_t>(), high = ids.max().item<int64_t>();
  if (low < 0 || high >= size)
    throw ValueError(std::string(what) + " must lie in [0, " + std::to_string(size) + ") (config." + limit +
                     "), got values in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
}

}  // namespace

// ---- pytorch_utils.prune_conv1d_layer ----

void prune_conv1d_layer(Conv1D& layer, const at::Tensor& index, int64_t dim) {
  at::NoGradGuard no_grad;
  at::Tensor w = layer.weight.index_select(dim, index).clone().contiguous();
  at::Tensor b = dim == 0 ? layer.bias.clone() : layer.bias.index_select(0, index).clone();
  layer.replace_parameter("weight", w.set_requires_grad(layer.weight.requires_grad()));
  layer.replace_parameter("bias", b.contiguous().set_requires_grad(layer.bias.requires_grad()));
  layer.nf = layer.weight.size(1);
  layer.nx = layer.weight.size(0);
}

// ---- GPT2Attention ----

GPT2Attention::GPT2Attention(const GPT2Config& config, bool cross, int64_t idx)
    : embed_dim(config.n_embd),
      num_heads(config.n_head),
      head_dim(config.n_embd / config.n_head),
      split_size(config.n_embd),
      layer_idx(idx),
      scale_attn_weights(config.scale_attn_weights),
      is_cross_attention(cross),
      scale_attn_by_inverse_layer_idx(config.scale_attn_by_inverse_layer_idx),
      reorder_and_upcast_attn(config.reorder_and_upcast_attn),
      attn_dropout(config.attn_pdrop),
      resid_dropout(config.resid_pdrop) {
  int64_t max_positions = config.n_positions;
  bind_buffer("bias", &bias,
              at::tril(at::ones({max_positions, max_positions}, at::kBool)).view({1, 1, max_positions, max_positions}));
  set_non_persistent("bias");
  bind_buffer("masked_bias", &masked_bias, at::scalar_tensor(-1e4));
  set_non_persistent("masked_bias");
  if (head_dim * num_heads != embed_dim)
    throw ConfigError("`embed_dim` must be divisible by num_heads (got `embed_dim`: " + std::to_string(embed_dim) +
                      " and `num_heads`: " + std::to_string(num_heads) + ").");
  if (is_cross_attention) {
    c_attn = register_module("c_attn", std::make_shared<Conv1D>(2 * embed_dim, embed_dim));
    q_attn = register_module("q_attn", std::make_shared<Conv1D>(embed_dim, embed_dim));
  } else {
    c_attn = register_module("c_attn", std::make_shared<Conv1D>(3 * embed_dim, embed_dim));
  }
  c_proj = register_module("c_proj", std::make_shared<Conv1D>(embed_dim, embed_dim));
}

void GPT2Attention::prune_heads(const std::vector<int64_t>& heads_in) {
  if (heads_in.empty()) return;
  int64_t original = num_heads + static_cast<int64_t>(pruned_heads.size());
  for (int64_t h : heads_in)
    if (h < 0 || h >= original)
      throw ValueError("prune_heads: head " + std::to_string(h) + " does not exist (the layer had " +
                       std::to_string(original) + " heads)");
  auto [heads, index] = nn::find_pruneable_heads_and_indices(heads_in, num_heads, head_dim, pruned_heads);
  at::Tensor index_attn = at::cat({index, index + split_size, index + (2 * split_size)});
  // Prune conv1d layers
  prune_conv1d_layer(*c_attn, index_attn, 1);
  prune_conv1d_layer(*c_proj, index, 0);
  // Update hyper params
  int64_t n = static_cast<int64_t>(heads.size());
  split_size = (split_size / num_heads) * (num_heads - n);
  num_heads = num_heads - n;
  pruned_heads.insert(heads.begin(), heads.end());
}

std::pair<at::Tensor, at::Tensor> GPT2Attention::_attn(const at::Tensor& query, const at::Tensor& key,
                                                       const at::Tensor& value, const at::Tensor& attention_mask,
                                                       const at::Tensor& head_mask) const {
  at::Tensor attn_weights = at::matmul(query, key.transpose(-1, -2));
  if (scale_attn_weights)
    attn_weights = attn_weights / at::full({}, std::pow(static_cast<double>(value.size(-1)), 0.5),
                                           attn_weights.options());
  // Layer-wise attention scaling
  if (scale_attn_by_inverse_layer_idx) attn_weights = attn_weights / static_cast<double>(layer_idx + 1);
  if (!is_cross_attention) {
    // if only "normal" attention layer implements causal mask
    int64_t query_length = query.size(-2), key_length = key.size(-2);
    if (key_length > bias.size(-1))
      throw ValueError("sequence length " + std::to_string(key_length) + " exceeds n_positions (" +
                       std::to_string(bias.size(-1)) + ")");
    at::Tensor causal_mask = bias.narrow(2, key_length - query_length, query_length).narrow(3, 0, key_length);
    at::Tensor mask_value = at::full({}, finfo_min(attn_weights.scalar_type()), attn_weights.options());
    attn_weights = at::where(causal_mask, attn_weights, mask_value);
  }
  // Apply the attention mask
  if (attention_mask.defined()) attn_weights = attn_weights + attention_mask;
  attn_weights = at::softmax(attn_weights, -1);
  // Downcast (if necessary) back to V's dtype (if in mixed-precision) -- No-Op otherwise
  attn_weights = attn_weights.to(value.scalar_type());
  attn_weights = transformers::dropout(attn_weights, attn_dropout, is_training());
  // Mask heads if we want to
  if (head_mask.defined()) attn_weights = attn_weights * head_mask;
  return {at::matmul(attn_weights, value), attn_weights};
}

std::pair<at::Tensor, at::Tensor> GPT2Attention::_upcast_and_reordered_attn(const at::Tensor& query,
                                                                            const at::Tensor& key,
                                                                            const at::Tensor& value,
                                                                            const at::Tensor& attention_mask,
                                                                            const at::Tensor& head_mask) const {
  int64_t bsz = query.size(0), heads = query.size(1), q_seq_len = query.size(2), dk = query.size(3);
  int64_t k_seq_len = key.size(2);
  // Preallocate attn_weights for `baddbmm`. Zeros, not torch.empty: libtorch 1.13's CPU baddbmm with beta=0 can
  // propagate NaNs from uninitialised memory (why transformers' version is unreliable under torch 1.13).
  at::Tensor attn_weights = at::zeros({bsz * heads, q_seq_len, k_seq_len}, query.options().dtype(at::kFloat));
  // Compute Scale Factor
  double scale_factor = 1.0;
  if (scale_attn_weights) scale_factor /= std::pow(static_cast<double>(value.size(-1)), 0.5);
  if (scale_attn_by_inverse_layer_idx) scale_factor /= static_cast<double>(layer_idx + 1);
  // Upcast and reorder (scale K by 1 / root(dk))
  at::Tensor q = query.reshape({-1, q_seq_len, dk}), k = key.transpose(-1, -2).reshape({-1, dk, k_seq_len});
  attn_weights = at::baddbmm(attn_weights, q.to(at::kFloat), k.to(at::kFloat), /*beta=*/0, /*alpha=*/scale_factor);
  attn_weights = attn_weights.reshape({bsz, heads, q_seq_len, k_seq_len});
  if (!is_cross_attention) {
    if (k_seq_len > bias.size(-1))
      throw ValueError("sequence length " + std::to_string(k_seq_len) + " exceeds n_positions (" +
                       std::to_string(bias.size(-1)) + ")");
    at::Tensor causal_mask = bias.narrow(2, k_seq_len - q_seq_len, q_seq_len).narrow(3, 0, k_seq_len);
    at::Tensor mask_value = at::full({}, finfo_min(attn_weights.scalar_type()), attn_weights.options());
    attn_weights = at::where(causal_mask, attn_weights, mask_value);
  }
  if (attention_mask.defined()) attn_weights = attn_weights + attention_mask;
  attn_weights = at::softmax(attn_weights, -1);
  attn_weights = attn_weights.to(value.scalar_type());
  attn_weights = transformers::dropout(attn_weights, attn_dropout, is_training());
  if (head_mask.defined()) attn_weights = attn_weights * head_mask;
  return {at::matmul(attn_weights, value), attn_weights};
}

at::Tensor GPT2Attention::_split_heads(const at::Tensor& tensor) const {
  return tensor.view({tensor.size(0), tensor.size(1), num_heads, head_dim}).permute({0, 2, 1, 3});
}

at::Tensor GPT2Attention::_merge_heads(const at::Tensor& tensor) const {
  at::Tensor t = tensor.permute({0, 2, 1, 3}).contiguous();
  return t.view({t.size(0), t.size(1), num_heads * head_dim});
}

std::pair<at::Tensor, at::Tensor> GPT2Attention::forward(const at::Tensor& hidden_states, Cache* layer_past,
                                                         const at::Tensor& attention_mask_in,
                                                         const at::Tensor& head_mask,
                                                         const at::Tensor& encoder_hidden_states,
                                                         const at::Tensor& encoder_attention_mask,
                                                         bool output_attentions) const {
  at::Tensor query, key, value, attention_mask = attention_mask_in;
  if (encoder_hidden_states.defined()) {
    if (!q_attn)
      throw ValueError("If class is used as cross attention, the weights `q_attn` have to be defined. Please make "
                       "sure to instantiate class with `GPT2Attention(..., is_cross_attention=True)`.");
    query = q_attn->forward(hidden_states);
    auto kv = c_attn->forward(encoder_hidden_states).split(split_size, 2);
    key = kv[0];
    value = kv[1];
    attention_mask = encoder_attention_mask;
  } else {
    auto qkv = c_attn->forward(hidden_states).split(split_size, 2);
    query = qkv[0];
    key = qkv[1];
    value = qkv[2];
  }
  query = _split_heads(query);
  key = _split_heads(key);
  value = _split_heads(value);

  if (layer_past && !encoder_hidden_states.defined()) std::tie(key, value) = layer_past->update(key, value, layer_idx);

  auto [attn_output, attn_weights] = reorder_and_upcast_attn
                                         ? _upcast_and_reordered_attn(query, key, value, attention_mask, head_mask)
                                         : _attn(query, key, value, attention_mask, head_mask);
  attn_output = _merge_heads(attn_output);
  attn_output = c_proj->forward(attn_output);
  attn_output = transformers::dropout(attn_output, resid_dropout, is_training());
  return {attn_output, output_attentions ? attn_weights : at::Tensor()};
}

// ---- GPT2MLP ----

GPT2MLP::GPT2MLP(int64_t intermediate_size, const GPT2Config& config)
    : act(nn::get_activation(config.activation_function)), dropout(config.resid_pdrop) {
  int64_t embed_dim = config.n_embd;
  c_fc = register_module("c_fc", std::make_shared<Conv1D>(intermediate_size, embed_dim));
  c_proj = register_module("c_proj", std::make_shared<Conv1D>(embed_dim, intermediate_size));
}

at::Tensor GPT2MLP::forward(const at::Tensor& hidden_states) const {
  at::Tensor h = c_fc->forward(hidden_states);
  h = act(h);
  h = c_proj->forward(h);
  return transformers::dropout(h, dropout, is_training());
}

// ---- GPT2Block ----

GPT2Block::GPT2Block(const GPT2Config& config, int64_t layer_idx) {
  int64_t hidden_size = config.n_embd;
  int64_t inner_dim = config.n_inner.value_or(4 * hidden_size);
  ln_1 = register_module("ln_1", std::make_shared<nn::LayerNorm>(hidden_size, config.layer_norm_epsilon));
  attn = register_module("attn", std::make_shared<GPT2Attention>(config, false, layer_idx));
  ln_2 = register_module("ln_2", std::make_shared<nn::LayerNorm>(hidden_size, config.layer_norm_epsilon));
  if (config.add_cross_attention) {
    crossattention = register_module("crossattention", std::make_shared<GPT2Attention>(config, true, layer_idx));
    ln_cross_attn =
        register_module("ln_cross_attn", std::make_shared<nn::LayerNorm>(hidden_size, config.layer_norm_epsilon));
  }
  mlp = register_module("mlp", std::make_shared<GPT2MLP>(inner_dim, config));
}

GPT2BlockOutput GPT2Block::forward(const at::Tensor& hidden_states_in, Cache* layer_past,
                                   const at::Tensor& attention_mask, const at::Tensor& head_mask,
                                   const at::Tensor& encoder_hidden_states, const at::Tensor& encoder_attention_mask,
                                   bool output_attentions) const {
  GPT2BlockOutput out;
  at::Tensor residual = hidden_states_in;
  at::Tensor hidden_states = ln_1->forward(hidden_states_in);
  auto [attn_output, attn_weights] =
      attn->forward(hidden_states, layer_past, attention_mask, head_mask, at::Tensor(), at::Tensor(), output_attentions);
  out.attentions = attn_weights;
  // residual connection
  hidden_states = attn_output + residual;

  if (encoder_hidden_states.defined()) {
    // add one self-attention block for cross-attention
    if (!crossattention)
      throw ValueError("If `encoder_hidden_states` are passed, GPT2Block has to be instantiated with cross-attention "
                       "layers by setting `config.add_cross_attention=True`");
    residual = hidden_states;
    hidden_states = ln_cross_attn->forward(hidden_states);
    auto [cross_output, cross_weights] = crossattention->forward(hidden_states, nullptr, attention_mask, head_mask,
                                                                 encoder_hidden_states, encoder_attention_mask,
                                                                 output_attentions);
    // residual connection
    hidden_states = residual + cross_output;
    out.cross_attentions = cross_weights;
  }

  residual = hidden_states;
  hidden_states = ln_2->forward(hidden_states);
  at::Tensor feed_forward_hidden_states = mlp->forward(hidden_states);
  // residual connection
  out.hidden_states = residual + feed_forward_hidden_states;
  return out;
}

// ---- GPT2PreTrainedModel ----

GPT2PreTrainedModel::GPT2PreTrainedModel(std::shared_ptr<GPT2Config> config, std::string name)
    : PreTrainedModel(std::move(config), std::move(name)) {
  base_model_prefix = "transformer";
  supports_gradient_checkpointing = true;
  _no_split_modules = {"GPT2Block"};
  // transformers 4.40 has eager and flash_attention_2 (CUDA-only) GPT-2 attention, no sdpa; only eager is ported.
}

void GPT2PreTrainedModel::_init_weights(torch::nn::Module& module) {
  const GPT2Config& c = cfg();
  double std = c.initializer_range;
  if (auto* linear = dynamic_cast<nn::Linear*>(&module)) {
    linear->weight.normal_(0.0, std);
    if (linear->bias.defined()) linear->bias.zero_();
  } else if (auto* conv = dynamic_cast<Conv1D*>(&module)) {
    conv->weight.normal_(0.0, std);
    conv->bias.zero_();
  } else if (auto* embedding = dynamic_cast<nn::Embedding*>(&module)) {
    embedding->weight.normal_(0.0, std);
    if (embedding->padding_idx) embedding->weight[*embedding->padding_idx].zero_();
  } else if (auto* norm = dynamic_cast<nn::LayerNorm*>(&module)) {
    if (norm->bias.defined()) norm->bias.zero_();
    norm->weight.fill_(1.0);
  }
  // Reinitialize selected weights subject to the OpenAI GPT-2 Paper Scheme: residual projections ("c_proj.weight" of
  // attention and MLP) scaled by 1/sqrt(2 * n_layer).
  std::shared_ptr<Conv1D> c_proj;
  if (auto* attention = dynamic_cast<GPT2Attention*>(&module)) c_proj = attention->c_proj;
  else if (auto* mlp = dynamic_cast<GPT2MLP*>(&module)) c_proj = mlp->c_proj;
  if (c_proj) c_proj->weight.normal_(0.0, std / std::sqrt(2.0 * static_cast<double>(c.n_layer)));
}

namespace {

// What the heads pass on to the transformer (GPT2Model.forward's arguments).
ModelInputs transformer_inputs(const ModelInputs& in) {
  ModelInputs inputs;
  inputs.input_ids = in.input_ids;
  inputs.past_key_values = in.past_key_values;
  inputs.attention_mask = in.attention_mask;
  inputs.token_type_ids = in.token_type_ids;
  inputs.position_ids = in.position_ids;
  inputs.head_mask = in.head_mask;
  inputs.inputs_embeds = in.inputs_embeds;
  inputs.use_cache = in.use_cache;
  inputs.output_attentions = in.output_attentions;
  inputs.output_hidden_states = in.output_hidden_states;
  return inputs;
}
}  // namespace

// ---- GPT2Model ----

GPT2Model::GPT2Model(std::shared_ptr<GPT2Config> config)
    : GPT2PreTrainedModel(config, "GPT2Model"), embed_dim(config->n_embd), drop(config->embd_pdrop) {
  const GPT2Config& c = *config;
  wte = register_module("wte", std::make_shared<nn::Embedding>(c.vocab_size, embed_dim));
  wpe = register_module("wpe", std::make_shared<nn::Embedding>(c.n_positions, embed_dim));
  h = register_module("h", std::make_shared<nn::ModuleList<GPT2Block>>());
  for (int64_t i = 0; i < c.n_layer; ++i) h->push_back(std::make_shared<GPT2Block>(c, i));
  ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(embed_dim, c.layer_norm_epsilon));
  // Tensor parallelism (distributed.h): c_attn holds [q | k | v], split by heads in each part.
  base_model_tp_plan = {{"wte", "vocab"},
                        {"h.*.attn.c_attn", "colwise"},
                        {"h.*.attn.c_proj", "rowwise"},
                        {"h.*.mlp.c_fc", "colwise"},
                        {"h.*.mlp.c_proj", "rowwise"}};
  _tp_attention = {{"h.*.attn", {}, {"c_attn"}, {},
                    [](torch::nn::Module& m) {
                      auto& a = dynamic_cast<GPT2Attention&>(m);
                      return distributed::TPHeads{a.num_heads, a.num_heads, a.head_dim};
                    },
                    [](torch::nn::Module& m, const distributed::TPHeads& h) {
                      auto& a = dynamic_cast<GPT2Attention&>(m);
                      a.num_heads = h.num_heads;
                      a.split_size = h.num_heads * h.head_dim;
                    }}};
  post_init();
}

std::shared_ptr<GPT2Model> GPT2Model::from_pretrained(const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<GPT2Model>(path, "GPT2Model", options);
}

void GPT2Model::set_input_embeddings(std::shared_ptr<nn::Embedding> value) { wte = replace_module("wte", value); }

void GPT2Model::_prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  for (const auto& [layer, heads] : heads_to_prune) {
    if (layer < 0 || layer >= static_cast<int64_t>(h->size()))
      throw ValueError("prune_heads: layer " + std::to_string(layer) + " does not exist (the model has " +
                       std::to_string(h->size()) + " layers)");
    (*h)[layer]->attn->prune_heads(heads);
  }
}

ModelOutput GPT2Model::forward(const ModelInputs& in) {
  const GPT2Config& c = cfg();
  bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);
  bool use_cache = in.use_cache.value_or(c.use_cache);

  if (in.input_ids.defined() && in.inputs_embeds.defined())
    throw ValueError("You cannot specify both input_ids and inputs_embeds at the same time");
  if (!in.input_ids.defined() && !in.inputs_embeds.defined())
    throw ValueError("You have to specify either input_ids or inputs_embeds");
  if (in.input_ids.defined()) warn_if_padding_and_no_attention_mask(in.input_ids, in.attention_mask);
  at::Tensor input_ids = in.input_ids;
  std::vector<int64_t> input_shape;
  if (input_ids.defined()) {
    if (input_ids.dim() < 1) throw ValueError("input_ids must have at least one dimension");
    input_shape.assign(input_ids.sizes().begin(), input_ids.sizes().end());
    input_ids = input_ids.view({-1, input_shape.back()});
    check_ids_in_range(input_ids, c.vocab_size, "input_ids", "vocab_size");
  } else {
    if (in.inputs_embeds.dim() != 3)
      throw ValueError("inputs_embeds must be 3-D [batch, seq, hidden], got " +
                       std::to_string(in.inputs_embeds.dim()) + "-D");
    input_shape = {in.inputs_embeds.size(0), in.inputs_embeds.size(1)};
  }
  int64_t batch_size = input_ids.defined() ? input_ids.size(0) : in.inputs_embeds.size(0);
  int64_t seq_length = input_shape.back();
  auto device = input_ids.defined() ? input_ids.device() : in.inputs_embeds.device();

  at::Tensor token_type_ids = in.token_type_ids;
  if (token_type_ids.defined()) {
    token_type_ids = token_type_ids.view({-1, seq_length});
    check_ids_in_range(token_type_ids, c.vocab_size, "token_type_ids", "vocab_size");
  }

  std::shared_ptr<Cache> cache = in.past_key_values;
  int64_t past_length = cache ? cache->get_seq_length() : 0;
  at::Tensor position_ids = in.position_ids;
  if (!position_ids.defined())
    position_ids = at::arange(past_length, seq_length + past_length, at::TensorOptions(at::kLong).device(device))
                       .unsqueeze(0);
  check_ids_in_range(position_ids, c.n_positions, "position_ids", "n_positions");

  auto dtype = this->dtype();
  at::Tensor attention_mask;
  if (in.attention_mask.defined()) {
    if (in.attention_mask.numel() % batch_size != 0)
      throw ValueError("attention_mask of " + std::to_string(in.attention_mask.numel()) +
                       " elements does not match the batch size " + std::to_string(batch_size));
    // [B, S] -> [B, 1, 1, S], 0 to attend and finfo.min not to
    attention_mask = in.attention_mask.view({batch_size, -1}).unsqueeze(1).unsqueeze(1).to(dtype);
    attention_mask = (1.0 - attention_mask) * finfo_min(dtype);
  }

  at::Tensor encoder_hidden_states, encoder_attention_mask;
  if (c.add_cross_attention && in.encoder_hidden_states.defined()) {
    encoder_hidden_states = in.encoder_hidden_states;
    at::Tensor mask = in.encoder_attention_mask.defined()
                          ? in.encoder_attention_mask
                          : at::ones({encoder_hidden_states.size(0), encoder_hidden_states.size(1)},
                                     at::TensorOptions(dtype).device(device));
    encoder_attention_mask = transformers::invert_attention_mask(mask, dtype);
  }

  std::vector<at::Tensor> head_mask = get_head_mask(in.head_mask, c.n_layer, dtype);

  at::Tensor inputs_embeds = in.inputs_embeds.defined() ? in.inputs_embeds : wte->forward(input_ids);
  at::Tensor position_embeds = wpe->forward(position_ids);
  at::Tensor hidden_states = inputs_embeds + position_embeds;
  if (token_type_ids.defined()) hidden_states = hidden_states + wte->forward(token_type_ids);
  hidden_states = transformers::dropout(hidden_states, drop, is_training());

  const bool checkpointing = gradient_checkpointing && is_training();
  if (checkpointing) use_cache = false;  // "`use_cache=True` is incompatible with gradient checkpointing"
  if (use_cache && !cache) cache = std::make_shared<DynamicCache>();

  ModelOutput out;
  for (size_t i = 0; i < h->size(); ++i) {
    const auto& block = (*h)[i];
    if (output_hidden_states) out.hidden_states.push_back(hidden_states);
    if (checkpointing && !output_attentions) {
      // By value: the recomputation runs in backward, after this frame is gone.
      at::Tensor layer_head_mask = head_mask[i];
      hidden_states = checkpoint(
          [block, attention_mask, layer_head_mask, encoder_hidden_states, encoder_attention_mask](const at::Tensor& x) {
            return block->forward(x, nullptr, attention_mask, layer_head_mask, encoder_hidden_states,
                                  encoder_attention_mask, false)
                .hidden_states;
          },
          hidden_states);
      continue;
    }
    GPT2BlockOutput outputs = block->forward(hidden_states, cache.get(), attention_mask, head_mask[i],
                                             encoder_hidden_states, encoder_attention_mask, output_attentions);
    hidden_states = outputs.hidden_states;
    if (output_attentions) {
      out.attentions.push_back(outputs.attentions);
      if (c.add_cross_attention && outputs.cross_attentions.defined()) out.cross_attentions.push_back(outputs.cross_attentions);
    }
  }
  hidden_states = ln_f->forward(hidden_states);
  std::vector<int64_t> output_shape(input_shape.begin(), input_shape.end());
  output_shape.front() = -1;
  output_shape.push_back(hidden_states.size(-1));
  hidden_states = hidden_states.view(output_shape);
  if (output_hidden_states) out.hidden_states.push_back(hidden_states);
  out.last_hidden_state = hidden_states;
  if (use_cache) out.past_key_values = cache;
  return out;
}

TFCPP_REGISTER_MODEL("gpt2", "base", GPT2Model, GPT2Config);

// ---- GPT2LMHeadModel ----

GPT2LMHeadModel::GPT2LMHeadModel(std::shared_ptr<GPT2Config> config) : GPT2PreTrainedModel(config, "GPT2LMHeadModel") {
  _tied_weights_keys = {"lm_head.weight"};
  transformer = register_module("transformer", std::make_shared<GPT2Model>(config));
  lm_head = register_module("lm_head", std::make_shared<nn::Linear>(config->n_embd, config->vocab_size, false));
  _tp_plan = {{"lm_head", "colwise_rep"}};
  post_init();
}

std::shared_ptr<GPT2LMHeadModel> GPT2LMHeadModel::from_pretrained(const std::string& path,
                                                                  const FromPretrainedOptions& options) {
  return from_pretrained_as<GPT2LMHeadModel>(path, "GPT2LMHeadModel", options);
}

void GPT2LMHeadModel::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  lm_head = replace_module("lm_head", value);
}

ModelOutput GPT2LMHeadModel::forward(const ModelInputs& in) {
  ModelInputs inputs = transformer_inputs(in);
  inputs.encoder_hidden_states = in.encoder_hidden_states;
  inputs.encoder_attention_mask = in.encoder_attention_mask;
  ModelOutput out = transformer->forward(inputs);
  at::Tensor hidden_states = out.last_hidden_state;
  // Generation asks only for the last position's logits (the others are never read).
  if (in.num_logits_to_keep > 0 && !in.labels.defined() && in.num_logits_to_keep < hidden_states.size(1))
    hidden_states = hidden_states.narrow(1, hidden_states.size(1) - in.num_logits_to_keep, in.num_logits_to_keep);
  out.logits = lm_head->forward(hidden_states);
  if (in.labels.defined()) {
    // Shift so that tokens < n predict n
    int64_t vocab = out.logits.size(-1);
    at::Tensor shift_logits = out.logits.narrow(-2, 0, out.logits.size(-2) - 1).contiguous();
    at::Tensor shift_labels = in.labels.narrow(-1, 1, in.labels.size(-1) - 1).contiguous();
    out.loss = at::cross_entropy_loss(shift_logits.view({-1, vocab}), shift_labels.view({-1}).to(at::kLong), {},
                                      at::Reduction::Mean, -100);
  }
  out.last_hidden_state = at::Tensor();
  return out;
}

ModelInputs GPT2LMHeadModel::prepare_inputs_for_generation(const at::Tensor& input_ids_full, const ModelInputs& kwargs) {
  at::Tensor input_ids = input_ids_full;
  at::Tensor token_type_ids = kwargs.token_type_ids;
  // Omit tokens covered by past_key_values (an empty cache is the legacy `None`).
  const bool has_past = kwargs.past_key_values && kwargs.past_key_values->get_seq_length() > 0;
  if (has_past) {
    int64_t past_length = kwargs.past_key_values->get_seq_length();
    // Some generation methods already pass only the last input ID
    int64_t remove_prefix_length = input_ids.size(1) > past_length ? past_length : input_ids.size(1) - 1;
    input_ids = input_ids.narrow(1, remove_prefix_length, input_ids.size(1) - remove_prefix_length);
    if (token_type_ids.defined())
      token_type_ids = token_type_ids.narrow(1, token_type_ids.size(1) - input_ids.size(1), input_ids.size(1));
  }
  const at::Tensor& attention_mask = kwargs.attention_mask;
  at::Tensor position_ids = kwargs.position_ids;
  if (attention_mask.defined() && !position_ids.defined()) {
    // create position_ids on the fly for batch generation
    position_ids = attention_mask.to(at::kLong).cumsum(-1) - 1;
    position_ids.masked_fill_(attention_mask.eq(0), 1);
    if (has_past) position_ids = position_ids.narrow(1, position_ids.size(1) - input_ids.size(1), input_ids.size(1));
  } else {
    position_ids = at::Tensor();  // as transformers 4.40: explicit position_ids are not forwarded
  }
  ModelInputs model_inputs;
  if (kwargs.inputs_embeds.defined() && !has_past) model_inputs.inputs_embeds = kwargs.inputs_embeds;
  else model_inputs.input_ids = input_ids.contiguous();
  model_inputs.past_key_values = kwargs.past_key_values;
  model_inputs.use_cache = kwargs.use_cache;
  model_inputs.position_ids = position_ids;
  model_inputs.attention_mask = attention_mask;
  model_inputs.token_type_ids = token_type_ids;
  model_inputs.num_logits_to_keep = kwargs.num_logits_to_keep;
  return model_inputs;
}

TFCPP_REGISTER_MODEL("gpt2", "causal-lm", GPT2LMHeadModel, GPT2Config);

// ---- GPT2ForSequenceClassification ----

GPT2ForSequenceClassification::GPT2ForSequenceClassification(std::shared_ptr<GPT2Config> config)
    : GPT2PreTrainedModel(config, "GPT2ForSequenceClassification"), num_labels(config->num_labels()) {
  transformer = register_module("transformer", std::make_shared<GPT2Model>(config));
  score = register_module("score", std::make_shared<nn::Linear>(config->n_embd, num_labels, false));
  post_init();
}

std::shared_ptr<GPT2ForSequenceClassification> GPT2ForSequenceClassification::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<GPT2ForSequenceClassification>(path, "GPT2ForSequenceClassification", options);
}

ModelOutput GPT2ForSequenceClassification::forward(const ModelInputs& in) {
  ModelOutput transformer_outputs = transformer->forward(transformer_inputs(in));
  at::Tensor hidden_states = transformer_outputs.last_hidden_state;
  at::Tensor logits = score->forward(hidden_states);
  int64_t batch_size = in.input_ids.defined() ? in.input_ids.size(0) : in.inputs_embeds.size(0);
  if (!config->pad_token_id && batch_size != 1)
    throw ValueError("Cannot handle batch sizes > 1 if no padding token is defined.");
  at::Tensor sequence_lengths;
  if (config->pad_token_id && in.input_ids.defined()) {
    // the last non-pad token: the first pad's index - 1, modulo the length (no pad -> the last token)
    sequence_lengths = at::eq(in.input_ids, *config->pad_token_id).to(at::kInt).argmax(-1) - 1;
    sequence_lengths = at::remainder(sequence_lengths, in.input_ids.size(-1)).to(at::kLong);
  } else {
    // padding cannot be detected in inputs_embeds: the last token
    sequence_lengths = at::full({batch_size}, logits.size(1) - 1, at::kLong);
  }
  at::Tensor pooled_logits = logits.index({at::arange(batch_size, at::kLong), sequence_lengths});

  ModelOutput out;
  if (in.labels.defined()) {
    at::Tensor labels = in.labels;
    if (!config->problem_type) {
      if (num_labels == 1) config->problem_type = "regression";
      else if (num_labels > 1 && (labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt))
        config->problem_type = "single_label_classification";
      else config->problem_type = "multi_label_classification";
    }
    const std::string& problem_type = *config->problem_type;
    if (problem_type == "regression") {
      labels = labels.to(pooled_logits.scalar_type());
      out.loss = num_labels == 1 ? at::mse_loss(pooled_logits.squeeze(), labels.squeeze())
                                 : at::mse_loss(pooled_logits, labels);
    } else if (problem_type == "single_label_classification") {
      out.loss = at::cross_entropy_loss(pooled_logits.view({-1, num_labels}), labels.reshape({-1}).to(at::kLong), {},
                                        at::Reduction::Mean, -100);
    } else if (problem_type == "multi_label_classification") {
      out.loss = at::binary_cross_entropy_with_logits(pooled_logits, labels.to(pooled_logits.scalar_type()));
    } else {
      throw ConfigError("problem_type '" + problem_type +
                        "' is not one of regression, single_label_classification, multi_label_classification");
    }
  }
  out.logits = pooled_logits;
  out.past_key_values = transformer_outputs.past_key_values;
  out.hidden_states = std::move(transformer_outputs.hidden_states);
  out.attentions = std::move(transformer_outputs.attentions);
  return out;
}

TFCPP_REGISTER_MODEL("gpt2", "sequence-classification", GPT2ForSequenceClassification, GPT2Config);

// ---- GPT2ForTokenClassification ----

namespace {
double token_classifier_dropout(const GPT2Config& config) {
  // hasattr(config, "classifier_dropout") / "hidden_dropout": extra keys of config.json, else 0.1
  for (const char* key : {"classifier_dropout", "hidden_dropout"}) {
    auto it = config.extra.find(key);
    if (it != config.extra.end() && it->is_number()) return it->get<double>();
  }
  return 0.1;
}
}  // namespace

GPT2ForTokenClassification::GPT2ForTokenClassification(std::shared_ptr<GPT2Config> config)
    : GPT2PreTrainedModel(config, "GPT2ForTokenClassification"),
      num_labels(config->num_labels()),
      dropout(token_classifier_dropout(*config)) {
  transformer = register_module("transformer", std::make_shared<GPT2Model>(config));
  classifier = register_module("classifier", std::make_shared<nn::Linear>(config->n_embd, num_labels));
  post_init();
}

std::shared_ptr<GPT2ForTokenClassification> GPT2ForTokenClassification::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return from_pretrained_as<GPT2ForTokenClassification>(path, "GPT2ForTokenClassification", options);
}

ModelOutput GPT2ForTokenClassification::forward(const ModelInputs& in) {
  ModelOutput transformer_outputs = transformer->forward(transformer_inputs(in));
  at::Tensor hidden_states = transformers::dropout(transformer_outputs.last_hidden_state, dropout, is_training());
  ModelOutput out;
  out.logits = classifier->forward(hidden_states);
  if (in.labels.defined())
    out.loss = at::cross_entropy_loss(out.logits.view({-1, num_labels}), in.labels.reshape({-1}).to(at::kLong), {},
                                      at::Reduction::Mean, -100);
  out.hidden_states = std::move(transformer_outputs.hidden_states);
  out.attentions = std::move(transformer_outputs.attentions);
  return out;
}

TFCPP_REGISTER_MODEL("gpt2", "token-classification", GPT2ForTokenClassification, GPT2Config);

}  // namespace transformers
