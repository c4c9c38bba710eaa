// Port of transformers/models/clvp/modeling_clvp.py (4.40.2).
#include "transformers/models/clvp.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/gradient_checkpointing.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <limits>

namespace transformers {

namespace {

std::string shape_str(at::IntArrayRef sizes) { return c10::str(sizes); }

// Token ids must index an embedding table of `size` rows (an out-of-range id is a caller error, not an abort).
void check_ids(const at::Tensor& ids, int64_t size, const std::string& what) {
  if (ids.numel() == 0) return;
  int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= size)
    throw ValueError(what + " must be in [0, " + std::to_string(size) + "), got values in [" + std::to_string(lo) +
                     ", " + std::to_string(hi) + "]");
}

// modeling_attn_mask_utils.AttentionMaskConverter._expand_mask: [B, S] -> additive [B, 1, tgt_len, S].
at::Tensor expand_mask(const at::Tensor& mask, c10::ScalarType dtype, int64_t tgt_len) {
  int64_t bsz = mask.size(0), src_len = mask.size(1);
  at::Tensor expanded_mask = mask.unsqueeze(1).unsqueeze(1).expand({bsz, 1, tgt_len, src_len}).to(dtype);
  at::Tensor inverted_mask = 1.0 - expanded_mask;
  return inverted_mask.masked_fill(inverted_mask.to(at::kBool), finfo_min(dtype));
}

// AttentionMaskConverter._make_causal_mask: [B, 1, tgt_len, past + tgt_len].
at::Tensor make_causal_mask(int64_t bsz, int64_t tgt_len, const at::TensorOptions& options,
                            int64_t past_key_values_length) {
  at::Tensor mask = at::full({tgt_len, tgt_len}, finfo_min(options.dtype().toScalarType()), options);
  at::Tensor mask_cond = at::arange(mask.size(-1), options.dtype(at::kLong));
  mask.masked_fill_(mask_cond.lt((mask_cond + 1).view({mask.size(-1), 1})), 0);
  if (past_key_values_length > 0)
    mask = at::cat({at::zeros({tgt_len, past_key_values_length}, options), mask}, -1);
  return mask.unsqueeze(0).unsqueeze(0).expand({bsz, 1, tgt_len, tgt_len + past_key_values_length});
}

// _prepare_4d_causal_attention_mask: a 2-D padding mask (or none, or a 4-D 0/1 mask) -> additive causal mask
// [B, 1, T, past + T], or undefined for one query without a mask.
at::Tensor prepare_4d_causal_attention_mask(const at::Tensor& attention_mask, int64_t bsz, int64_t query_length,
                                            const at::Tensor& inputs_embeds, int64_t past_key_values_length) {
  auto options = inputs_embeds.options();
  c10::ScalarType dtype = inputs_embeds.scalar_type();
  int64_t key_value_length = query_length + past_key_values_length;
  if (attention_mask.defined() && attention_mask.dim() == 2) {
    if (attention_mask.size(0) != bsz || attention_mask.size(1) != key_value_length)
      throw ValueError("attention_mask should be [batch, past + seq] = [" + std::to_string(bsz) + ", " +
                       std::to_string(key_value_length) + "], got " + shape_str(attention_mask.sizes()));
    // AttentionMaskConverter.to_4d
    at::Tensor expanded_attn_mask = expand_mask(attention_mask, dtype, query_length);
    if (query_length > 1) {
      at::Tensor causal_4d_mask = make_causal_mask(bsz, query_length, options, key_value_length - query_length);
      expanded_attn_mask = causal_4d_mask.masked_fill(expanded_attn_mask.to(at::kBool), finfo_min(dtype));
    }
    return expanded_attn_mask;
  }
  if (attention_mask.defined() && attention_mask.dim() == 4) {
    std::vector<int64_t> expected{bsz, 1, query_length, key_value_length};
    if (attention_mask.sizes() != at::IntArrayRef(expected))
      throw ValueError("Incorrect 4D attention_mask shape: " + shape_str(attention_mask.sizes()) + "; expected: " +
                       shape_str(expected) + ".");
    // if the 4D mask has correct shape - invert it and fill with negative infinity
    at::Tensor inverted_mask = 1.0 - attention_mask.to(dtype);
    return inverted_mask.masked_fill(inverted_mask.to(at::kBool), finfo_min(dtype));
  }
  if (attention_mask.defined())
    throw ValueError("attention_mask must be 2-D [batch, seq] or 4-D, got " + std::to_string(attention_mask.dim()) + "-D");
  // AttentionMaskConverter.to_causal_4d
  if (query_length > 1) return make_causal_mask(bsz, query_length, options, past_key_values_length);
  return at::Tensor();
}

// Copied from transformers.models.llama.modeling_llama.rotate_half
at::Tensor rotate_half(const at::Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, x.size(-1) - half), x.narrow(-1, 0, half)}, -1);
}

// cos[position_ids].unsqueeze(1) for cos [T, dim] and position_ids [B|1, T] (or [T]).
at::Tensor gather_positions(const at::Tensor& table, const at::Tensor& position_ids) {
  std::vector<int64_t> shape(position_ids.sizes().begin(), position_ids.sizes().end());
  shape.push_back(table.size(-1));
  return table.index_select(0, position_ids.reshape({-1})).view(shape).unsqueeze(1);
}

at::Tensor extra_tensor(const ModelInputs& in, const char* name) {
  auto it = in.extra.find(name);
  return it == in.extra.end() ? at::Tensor() : it->second;
}

// Copied from transformers.models.clip.modeling_clip.contrastive_loss / clip_loss
at::Tensor contrastive_loss(const at::Tensor& logits) {
  return at::cross_entropy_loss(logits, at::arange(logits.size(0), logits.options().dtype(at::kLong)));
}

at::Tensor clvp_loss(const at::Tensor& similarity) {
  at::Tensor caption_loss = contrastive_loss(similarity);
  at::Tensor speech_loss = contrastive_loss(similarity.t());
  return (caption_loss + speech_loss) / 2.0;
}

}  // namespace

// ---- Layers that torch / transformers provide in Python ----


ClvpConv1d::ClvpConv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size) {
  // torch's reset_parameters (kaiming_uniform_ with a = sqrt(5)) draws from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  double bound = 1.0 / std::sqrt(static_cast<double>(in_channels * kernel_size));
  bind_parameter("weight", &weight, at::empty({out_channels, in_channels, kernel_size}).uniform_(-bound, bound));
  bind_parameter("bias", &bias, at::empty({out_channels}).uniform_(-bound, bound));
}

at::Tensor ClvpConv1d::forward(const at::Tensor& x) const { return at::conv1d(x, weight, bias); }

ClvpGroupNorm::ClvpGroupNorm(int64_t groups, int64_t num_channels, double e) : num_groups(groups), eps(e) {
  bind_parameter("weight", &weight, at::ones({num_channels}));
  bind_parameter("bias", &bias, at::zeros({num_channels}));
}

at::Tensor ClvpGroupNorm::forward(const at::Tensor& x) const {
  if (x.dim() < 2 || x.size(1) != weight.size(0))
    throw ValueError("GroupNorm expects [batch, " + std::to_string(weight.size(0)) + ", ...], got " +
                     shape_str(x.sizes()));
  return at::group_norm(x, num_groups, weight, bias, eps);
}

ClvpSequenceSummary::ClvpSequenceSummary(const PretrainedConfig& config, int64_t hidden_size) {
  json type = config.get("summary_type");
  summary_type = type.is_string() ? type.get<std::string>() : "last";
  if (summary_type == "attn")
    throw ValueError("SequenceSummary: summary_type 'attn' is not implemented in transformers either");
  if (summary_type != "last" && summary_type != "first" && summary_type != "mean" && summary_type != "cls_index")
    throw ValueError("SequenceSummary: summary_type must be one of last, first, mean, cls_index, got '" + summary_type +
                     "'");
  json use_proj = config.get("summary_use_proj");
  if (use_proj.is_boolean() && use_proj.get<bool>()) {
    json to_labels = config.get("summary_proj_to_labels");
    int64_t num_classes =
        to_labels.is_boolean() && to_labels.get<bool>() && config.num_labels() > 0 ? config.num_labels() : hidden_size;
    summary = register_module("summary", std::make_shared<nn::Linear>(hidden_size, num_classes));
  }
  json activation_string = config.get("summary_activation");
  if (activation_string.is_string() && !activation_string.get<std::string>().empty())
    activation = nn::get_activation(activation_string.get<std::string>());
  json first = config.get("summary_first_dropout"), last = config.get("summary_last_dropout");
  if (first.is_number()) first_dropout = first.get<double>();
  if (last.is_number()) last_dropout = last.get<double>();
}

at::Tensor ClvpSequenceSummary::forward(const at::Tensor& hidden_states, const at::Tensor& cls_index_in) const {
  at::Tensor output;
  if (summary_type == "last") {
    output = hidden_states.select(1, -1);
  } else if (summary_type == "first") {
    output = hidden_states.select(1, 0);
  } else if (summary_type == "mean") {
    output = hidden_states.mean(1);
  } else {  // cls_index
    at::Tensor cls_index;
    if (!cls_index_in.defined()) {
      cls_index = at::full_like(hidden_states.narrow(-2, 0, 1), hidden_states.size(-2) - 1,
                                hidden_states.options().dtype(at::kLong));
    } else {
      cls_index = cls_index_in.unsqueeze(-1).unsqueeze(-1);
      std::vector<int64_t> shape(cls_index.dim() - 1, -1);
      shape.push_back(hidden_states.size(-1));
      cls_index = cls_index.expand(shape);
    }
    output = hidden_states.gather(-2, cls_index).squeeze(-2);
  }
  if (first_dropout > 0) output = at::dropout(output, first_dropout, is_training());
  if (summary) output = summary->forward(output);
  if (activation) output = activation(output);
  if (last_dropout > 0) output = at::dropout(output, last_dropout, is_training());
  return output;
}

// ---- ClvpRMSNorm, rotary embedding, attention ----

ClvpRMSNorm::ClvpRMSNorm(int64_t hidden_size, double eps) : variance_epsilon(eps) {
  bind_parameter("weight", &weight, at::ones({hidden_size}));
}

at::Tensor ClvpRMSNorm::forward(const at::Tensor& hidden_states) const {
  auto input_dtype = hidden_states.scalar_type();
  at::Tensor h = hidden_states.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, true);
  h = h * at::rsqrt(variance + variance_epsilon);
  return weight * h.to(input_dtype);
}

ClvpRotaryPositionalEmbedding::ClvpRotaryPositionalEmbedding(const ClvpEncoderConfig& config) {
  int64_t dim = std::max<int64_t>(config.projection_dim / (config.num_attention_heads * 2), 32);
  int64_t head_dim = config.hidden_size / config.num_attention_heads;
  if (dim > head_dim)
    throw ValueError("ClvpRotaryPositionalEmbedding: the rotary dimension max(projection_dim // (2 * "
                     "num_attention_heads), 32) = " + std::to_string(dim) + " exceeds the head dimension " +
                     std::to_string(head_dim) + " (hidden_size / num_attention_heads)");
  at::Tensor freq = 1.0 / at::pow(10000.0, at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim));
  bind_buffer("inv_freq", &inv_freq, freq);
}

at::Tensor ClvpRotaryPositionalEmbedding::forward(const at::Tensor& hidden_states) const {
  int64_t sequence_length = hidden_states.size(1);
  at::Tensor time_stamps = at::arange(sequence_length, inv_freq.options().dtype(at::kLong)).to(inv_freq.scalar_type());
  at::Tensor freqs = at::einsum("i,j->ij", {time_stamps, inv_freq});
  at::Tensor embeddings = at::cat({freqs, freqs}, -1);
  return embeddings.unsqueeze(0);
}

ClvpSelfAttention::ClvpSelfAttention(int64_t embed_dim_, int64_t num_heads_, double dropout_, bool use_attention_bias)
    : embed_dim(embed_dim_), num_heads(num_heads_), dropout(dropout_) {
  if (num_heads <= 0 || embed_dim % num_heads != 0)
    throw ValueError("embed_dim must be divisible by num_heads (got `embed_dim`: " + std::to_string(embed_dim) +
                     " and `num_heads`: " + std::to_string(num_heads) + ").");
  head_dim = embed_dim / num_heads;
  scale = std::pow(static_cast<double>(head_dim), -0.5);
  k_proj = register_module("k_proj", std::make_shared<nn::Linear>(embed_dim, embed_dim, use_attention_bias));
  v_proj = register_module("v_proj", std::make_shared<nn::Linear>(embed_dim, embed_dim, use_attention_bias));
  q_proj = register_module("q_proj", std::make_shared<nn::Linear>(embed_dim, embed_dim, use_attention_bias));
  out_proj = register_module("out_proj", std::make_shared<nn::Linear>(embed_dim, embed_dim));
}

ClvpSelfAttention::Output ClvpSelfAttention::forward(const at::Tensor& hidden_states, const at::Tensor& rotary_pos_emb,
                                                     const at::Tensor& attention_mask, const at::Tensor& position_ids,
                                                     Cache* past_key_value, int64_t layer_idx,
                                                     const at::Tensor& head_mask, bool output_attentions) const {
  // Raise error when position_ids is None but rotary_pos_emb is provided, because we need that when applying
  // rotary_pos_emb to query and key states.
  if (rotary_pos_emb.defined() && !position_ids.defined())
    throw ValueError("`position_ids` must be provided when `rotary_pos_emb` is not None.");
  if (hidden_states.dim() != 3 || hidden_states.size(2) != embed_dim)
    throw ValueError("ClvpSelfAttention expects hidden_states [batch, seq, " + std::to_string(embed_dim) + "], got " +
                     shape_str(hidden_states.sizes()));
  int64_t bsz = hidden_states.size(0);
  auto shape = [&](const at::Tensor& t) { return t.view({bsz, -1, num_heads, head_dim}).transpose(1, 2).contiguous(); };

  // get query proj
  at::Tensor query_states = shape(q_proj->forward(hidden_states)) * scale;
  at::Tensor key_states = shape(k_proj->forward(hidden_states));
  at::Tensor value_states = shape(v_proj->forward(hidden_states));

  if (past_key_value) std::tie(key_states, value_states) = past_key_value->update(key_states, value_states, layer_idx);

  if (rotary_pos_emb.defined()) {
    int64_t rotary_emb_dim = rotary_pos_emb.size(-1);
    // Partial rotary embedding: [..., :rotary_emb_dim] rotates, the rest passes through.
    auto split = [&](const at::Tensor& t) {
      int64_t rot = std::min(rotary_emb_dim, t.size(-1));
      return std::make_pair(t.narrow(-1, 0, rot), t.narrow(-1, rot, t.size(-1) - rot));
    };
    auto [query_rot, query_pass] = split(query_states);
    auto [key_rot, key_pass] = split(key_states);
    auto [value_rot, value_pass] = split(value_states);
    at::Tensor cos = gather_positions(rotary_pos_emb.cos().squeeze(0), position_ids);
    at::Tensor sin = gather_positions(rotary_pos_emb.sin().squeeze(0), position_ids);
    // apply_rotary_pos_emb (on query, key and value)
    query_rot = (query_rot * cos) + (rotate_half(query_rot) * sin);
    key_rot = (key_rot * cos) + (rotate_half(key_rot) * sin);
    value_rot = (value_rot * cos) + (rotate_half(value_rot) * sin);
    // [batch_size, num_heads, seq_length, head_dim]
    query_states = at::cat({query_rot, query_pass}, -1);
    key_states = at::cat({key_rot, key_pass}, -1);
    value_states = at::cat({value_rot, value_pass}, -1);
  }

  int64_t tgt_len = query_states.size(2), src_len = key_states.size(2);
  at::Tensor attn_weights = at::matmul(query_states, key_states.transpose(2, 3));
  if (attention_mask.defined()) {
    std::vector<int64_t> expected{bsz, 1, tgt_len, src_len};
    if (attention_mask.sizes() != at::IntArrayRef(expected))
      throw ValueError("Attention mask should be of size " + shape_str(expected) + ", but is " +
                       shape_str(attention_mask.sizes()));
    attn_weights = attn_weights + attention_mask;
  }
  attn_weights = at::softmax(attn_weights, -1);
  // Mask heads if we want to
  if (head_mask.defined()) attn_weights = attn_weights * head_mask;
  at::Tensor attn_probs = at::dropout(attn_weights, dropout, is_training());
  at::Tensor attn_output = at::matmul(attn_probs, value_states);
  attn_output = attn_output.transpose(1, 2).contiguous().reshape({bsz, tgt_len, embed_dim});
  attn_output = out_proj->forward(attn_output);
  return {attn_output, output_attentions ? attn_weights : at::Tensor()};
}

// ---- Encoder blocks ----

ClvpGatedLinearUnit::ClvpGatedLinearUnit(const ClvpEncoderConfig& config)
    : activation_fn(nn::get_activation(config.hidden_act)) {
  proj = register_module("proj", std::make_shared<nn::Linear>(config.hidden_size, config.intermediate_size * 2));
}

at::Tensor ClvpGatedLinearUnit::forward(const at::Tensor& hidden_states) const {
  auto chunks = proj->forward(hidden_states).chunk(2, -1);
  return chunks[0] * activation_fn(chunks[1]);
}

ClvpEncoderMLP::ClvpEncoderMLP(const ClvpEncoderConfig& c) : config(c), dropout(c.dropout) {
  fc1 = register_module("fc1", std::make_shared<ClvpGatedLinearUnit>(c));
  fc2 = register_module("fc2", std::make_shared<nn::Linear>(c.intermediate_size, c.hidden_size));
}

at::Tensor ClvpEncoderMLP::forward(const at::Tensor& hidden_states) const {
  at::Tensor h = fc1->forward(hidden_states);
  h = at::dropout(h, dropout, is_training());
  return fc2->forward(h);
}

ClvpEncoderLayer::ClvpEncoderLayer(const ClvpEncoderConfig& config) {
  self_attn = register_module("self_attn", std::make_shared<ClvpSelfAttention>(
                                               config.hidden_size, config.num_attention_heads,
                                               config.attention_dropout, config.use_attention_bias));
  mlp = register_module("mlp", std::make_shared<ClvpEncoderMLP>(config));
  input_rmsnorm = register_module("input_rmsnorm", std::make_shared<ClvpRMSNorm>(config.hidden_size, config.layer_norm_eps));
  post_attention_rmsnorm =
      register_module("post_attention_rmsnorm", std::make_shared<ClvpRMSNorm>(config.hidden_size, config.layer_norm_eps));
}

ClvpSelfAttention::Output ClvpEncoderLayer::forward(const at::Tensor& hidden_states, const at::Tensor& rotary_pos_emb,
                                                    const at::Tensor& attention_mask, const at::Tensor& position_ids,
                                                    bool output_attentions) const {
  at::Tensor residual = hidden_states;
  at::Tensor h = input_rmsnorm->forward(hidden_states);
  ClvpSelfAttention::Output attention_outputs =
      self_attn->forward(h, rotary_pos_emb, attention_mask, position_ids, nullptr, 0, {}, output_attentions);
  h = residual + attention_outputs.attn_output;
  residual = h;
  h = post_attention_rmsnorm->forward(h);
  h = mlp->forward(h);
  return {residual + h, attention_outputs.attn_weights};
}

// ---- Decoder blocks ----

ClvpDecoderMLP::ClvpDecoderMLP(int64_t intermediate_size, const ClvpDecoderConfig& config)
    : act(nn::get_activation(config.activation_function)), dropout(config.resid_pdrop) {
  c_fc = register_module("c_fc", std::make_shared<nn::Conv1D>(intermediate_size, config.hidden_size));
  c_proj = register_module("c_proj", std::make_shared<nn::Conv1D>(config.hidden_size, intermediate_size));
}

at::Tensor ClvpDecoderMLP::forward(const at::Tensor& hidden_states) const {
  at::Tensor h = c_fc->forward(hidden_states);
  h = act(h);
  h = c_proj->forward(h);
  return at::dropout(h, dropout, is_training());
}

ClvpDecoderLayer::ClvpDecoderLayer(const ClvpDecoderConfig& config) {
  int64_t hidden_size = config.hidden_size;
  int64_t inner_dim = config.n_inner.value_or(4 * hidden_size);
  input_layernorm = register_module("input_layernorm", std::make_shared<nn::LayerNorm>(hidden_size, config.layer_norm_epsilon));
  attn = register_module("attn", std::make_shared<ClvpSelfAttention>(hidden_size, config.num_attention_heads,
                                                                     config.attention_dropout, config.use_attention_bias));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<nn::LayerNorm>(hidden_size, config.layer_norm_epsilon));
  mlp = register_module("mlp", std::make_shared<ClvpDecoderMLP>(inner_dim, config));
}

ClvpSelfAttention::Output ClvpDecoderLayer::forward(const at::Tensor& hidden_states, Cache* past_key_value,
                                                    int64_t layer_idx, const at::Tensor& attention_mask,
                                                    const at::Tensor& position_ids, const at::Tensor& head_mask,
                                                    bool output_attentions) const {
  at::Tensor residual = hidden_states;
  at::Tensor h = input_layernorm->forward(hidden_states);
  ClvpSelfAttention::Output attn_outputs =
      attn->forward(h, {}, attention_mask, position_ids, past_key_value, layer_idx, head_mask, output_attentions);
  // residual connection
  h = attn_outputs.attn_output + residual;
  residual = h;
  h = post_attention_layernorm->forward(h);
  at::Tensor feed_forward_hidden_states = mlp->forward(h);
  // residual connection
  return {residual + feed_forward_hidden_states, attn_outputs.attn_weights};
}

// ---- ClvpConditioningEncoder ----

std::pair<at::Tensor, at::Tensor> _pad_extra_bos_eos_tokens(const at::Tensor& input_ids_in,
                                                            const at::Tensor& attention_mask_in, int64_t pad_token_id,
                                                            int64_t bos_token_id, int64_t eos_token_id,
                                                            bool add_bos_token, bool add_eos_token) {
  at::Tensor input_ids = input_ids_in, attention_mask = attention_mask_in;
  // add the bos token at the beginning
  if (add_bos_token) {
    input_ids = at::constant_pad_nd(input_ids, {1, 0}, bos_token_id);
    if (attention_mask.defined()) attention_mask = at::constant_pad_nd(attention_mask, {1, 0}, 1);
  }
  at::Tensor modified_input_ids = input_ids;
  if (add_eos_token) {
    modified_input_ids = at::zeros({input_ids.size(0), input_ids.size(1) + 1}, input_ids.options());
    at::Tensor eos = at::full({1}, eos_token_id, input_ids.options());
    for (int64_t i = 0; i < input_ids.size(0); ++i) {
      at::Tensor each_input_id = input_ids[i];
      at::Tensor is_pad = each_input_id.eq(pad_token_id);
      if (is_pad.any().item<bool>()) {
        // locate where the valid tokens end and then add the eos token
        int64_t pos = at::nonzero(is_pad).min().item<int64_t>();
        modified_input_ids[i].copy_(at::cat({each_input_id.narrow(0, 0, pos), eos,
                                             each_input_id.narrow(0, pos, each_input_id.size(0) - pos)}));
      } else {
        // if there are no pad tokens present, then add eos to the end
        modified_input_ids[i].copy_(at::constant_pad_nd(each_input_id, {0, 1}, eos_token_id));
      }
    }
    if (attention_mask.defined()) attention_mask = at::constant_pad_nd(attention_mask, {1, 0}, 1);
  }
  return {modified_input_ids, attention_mask};
}

ClvpConditioningEncoder::ClvpConditioningEncoder(const ClvpConfig& config)
    : text_config(config.text_config), decoder_config(config.decoder_config) {
  const ClvpDecoderConfig& d = *decoder_config;
  text_token_embedding = register_module("text_token_embedding", std::make_shared<nn::Embedding>(text_config->vocab_size, d.hidden_size));
  text_position_embedding =
      register_module("text_position_embedding", std::make_shared<nn::Embedding>(d.max_text_tokens, d.hidden_size));
  mel_conv = register_module("mel_conv", std::make_shared<ClvpConv1d>(d.feature_size, d.hidden_size, 1));
  // define group norms to be used before each attention layer
  int64_t num_groups = compute_groupnorm_groups(d.hidden_size);
  group_norms = register_module("group_norms", std::make_shared<nn::ModuleList<ClvpGroupNorm>>());
  for (int64_t i = 0; i < d.num_mel_attn_blocks; ++i)
    group_norms->push_back(std::make_shared<ClvpGroupNorm>(num_groups, d.hidden_size, 1e-5));
  // define the attention layers
  mel_attn_blocks = register_module("mel_attn_blocks", std::make_shared<nn::ModuleList<ClvpSelfAttention>>());
  for (int64_t i = 0; i < d.num_mel_attn_blocks; ++i)
    mel_attn_blocks->push_back(std::make_shared<ClvpSelfAttention>(d.hidden_size, d.num_attention_heads,
                                                                   d.attention_dropout, d.use_attention_bias));
}

int64_t ClvpConditioningEncoder::compute_groupnorm_groups(int64_t channels, int64_t groups) {
  // https://github.com/neonbjb/tortoise-tts/blob/4003544b6ff4b68c09856e04d3eff9da26d023c2/tortoise/models/arch_util.py#L26
  if (channels <= 16) groups = 8;
  else if (channels <= 64) groups = 16;
  while (groups > 0 && channels % groups != 0) groups = groups / 2;
  if (groups <= 2)
    throw ValueError("Number of groups for the GroupNorm must be greater than 2, but it is " + std::to_string(groups) +
                     ". Please consider using a different `hidden_size`");
  return groups;
}

at::Tensor ClvpConditioningEncoder::forward(const at::Tensor& input_features, const at::Tensor& input_ids_in,
                                            const at::Tensor& inputs_embeds, const at::Tensor& attention_mask_in) const {
  // process text
  if (input_ids_in.defined() && inputs_embeds.defined())
    throw ValueError("You cannot specify both input_ids and inputs_embeds at the same time");
  if (!input_ids_in.defined() && inputs_embeds.defined())
    // transformers 4.40 builds the mask and the bos/eos padding from input_ids; its inputs_embeds path fails.
    throw ValueError("ClvpConditioningEncoder needs input_ids: conditioning embeddings cannot be built from "
                     "inputs_embeds (transformers 4.40 fails the same way)");
  if (!input_ids_in.defined()) throw ValueError("You have to specify either input_ids or inputs_embeds");
  if (input_ids_in.dim() != 2) throw ValueError("input_ids must be 2-D [batch, seq], got " + shape_str(input_ids_in.sizes()));
  int64_t batch_size = input_ids_in.size(0), seq_length = input_ids_in.size(1);
  if (!input_features.defined())
    throw ValueError("ClvpConditioningEncoder needs input_features (log-mel spectrograms [batch, feature_size, frames])");
  if (input_features.dim() != 3 || input_features.size(1) != decoder_config->feature_size)
    throw ValueError("input_features must be [batch, " + std::to_string(decoder_config->feature_size) +
                     " (decoder_config.feature_size), frames], got " + shape_str(input_features.sizes()));

  // construct attention mask if not given
  at::Tensor attention_mask = attention_mask_in.defined()
                                  ? attention_mask_in
                                  : at::ones({batch_size, seq_length}, input_ids_in.options().dtype(at::kLong));
  if (attention_mask.sizes() != input_ids_in.sizes())
    throw ValueError("attention_mask " + shape_str(attention_mask.sizes()) + " does not match input_ids " +
                     shape_str(input_ids_in.sizes()));

  // We add bos and eos input_ids in the modeling file instead of the tokenizer file to keep the logic simple
  // This logic is specific to ClvpConditioningEncoder and not used by other modules.
  if (!text_config->bos_token_id || !text_config->eos_token_id || text_config->eos_token_id->size() != 1)
    throw ValueError("ClvpConditioningEncoder: text_config needs one bos_token_id and one eos_token_id");
  auto [input_ids, mask] = _pad_extra_bos_eos_tokens(input_ids_in, attention_mask, 0, *text_config->bos_token_id,
                                                     text_config->eos_token_id->front());

  check_ids(input_ids, text_token_embedding->num_embeddings, "ClvpConditioningEncoder input_ids (with bos/eos)");
  at::Tensor text_inputs_embeds = text_token_embedding->forward(input_ids);
  at::Tensor position_ids = mask.cumsum(-1) - 1;
  check_ids(position_ids, text_position_embedding->num_embeddings,
            "text positions (attention_mask.cumsum(-1) - 1, after adding bos/eos; max_text_tokens bounds them)");
  at::Tensor position_embeds = text_position_embedding->forward(position_ids);
  at::Tensor text_embeds = text_inputs_embeds + position_embeds;

  // process each log-mel spectrogram into a single vector
  at::Tensor features = input_features.to(mel_conv->weight.scalar_type());
  const bool checkpointing = gradient_checkpointing && is_training();
  auto conv = mel_conv;
  at::Tensor mel_spec = checkpointing ? checkpoint([conv](const at::Tensor& x) { return conv->forward(x); }, features)
                                      : mel_conv->forward(features);
  for (size_t i = 0; i < mel_attn_blocks->size(); ++i) {
    at::Tensor residual_mel_spec = mel_spec.transpose(1, 2);
    if (checkpointing) {
      auto norm = (*group_norms)[i];
      auto block = (*mel_attn_blocks)[i];
      mel_spec = checkpoint([norm](const at::Tensor& x) { return norm->forward(x); }, mel_spec).transpose(1, 2);
      mel_spec = checkpoint([block](const at::Tensor& x) { return block->forward(x).attn_output; }, mel_spec) +
                 residual_mel_spec;
    } else {
      mel_spec = (*group_norms)[i]->forward(mel_spec).transpose(1, 2);
      mel_spec = (*mel_attn_blocks)[i]->forward(mel_spec).attn_output + residual_mel_spec;
    }
    mel_spec = mel_spec.transpose(1, 2);
  }
  mel_spec = mel_spec.select(2, 0).unsqueeze(1);

  // repeat if there is either (1 text vs N audios) or (N texts vs 1 audio)
  if (text_embeds.size(0) == 1 && mel_spec.size(0) != 1) {
    text_embeds = text_embeds.repeat({mel_spec.size(0), 1, 1});
  } else if (text_embeds.size(0) != 1 && mel_spec.size(0) == 1) {
    mel_spec = mel_spec.repeat({text_embeds.size(0), 1, 1});
  } else if (text_embeds.size(0) != mel_spec.size(0)) {
    // If there is N texts and M audios we will raise error since the number of text and audio must be same.
    throw ValueError("The number of texts and number of audios must be same. Found " +
                     std::to_string(text_embeds.size(0)) + " texts vs " + std::to_string(mel_spec.size(0)) + " audios");
  }
  return at::cat({mel_spec, text_embeds}, 1);
}

// ---- ClvpPreTrainedModel ----

ClvpPreTrainedModel::ClvpPreTrainedModel(std::shared_ptr<PretrainedConfig> config, std::string name)
    : PreTrainedModel(std::move(config), std::move(name)) {
  base_model_prefix = "clvp";
  supports_gradient_checkpointing = true;
}

namespace {

double initializer_factor_of(const PretrainedConfig& config) {
  if (auto* c = dynamic_cast<const ClvpConfig*>(&config)) return c->initializer_factor;
  if (auto* c = dynamic_cast<const ClvpEncoderConfig*>(&config)) return c->initializer_factor;
  if (auto* c = dynamic_cast<const ClvpDecoderConfig*>(&config)) return c->initializer_factor;
  return 1.0;
}

// Linears that a parent's branch of _init_weights re-initialises after them: module.apply in transformers is
// post-order (children first), so the parent's value is the one that stays.
bool reinitialised_by_parent(const torch::nn::Module& root, const nn::Linear* linear) {
  auto owns = [linear](const torch::nn::Module* module) {
    if (auto* mlp = dynamic_cast<const ClvpEncoderMLP*>(module))
      return mlp->fc1->proj.get() == linear || mlp->fc2.get() == linear;
    if (auto* encoder = dynamic_cast<const ClvpEncoder*>(module)) return encoder->projection.get() == linear;
    return false;
  };
  // (the root is not held by a shared_ptr yet while its constructor runs post_init: no include_self)
  if (owns(&root)) return true;
  for (const auto& item : root.named_modules("", /*include_self=*/false))
    if (owns(item.value().get())) return true;
  return false;
}

}  // namespace

void ClvpPreTrainedModel::_init_weights(torch::nn::Module& module) {
  double factor = initializer_factor_of(*config);
  if (auto* embedding = dynamic_cast<nn::Embedding*>(&module)) {
    embedding->weight.normal_(0.0, factor * 0.02);
  } else if (auto* linear = dynamic_cast<nn::Linear*>(&module)) {
    if (!reinitialised_by_parent(*this, linear)) {
      linear->weight.normal_(0.0, factor * 0.02);
      if (linear->bias.defined()) linear->bias.zero_();
    }
  } else if (auto* conv = dynamic_cast<nn::Conv1D*>(&module)) {
    conv->weight.normal_(0.0, factor * 0.02);
    conv->bias.zero_();
  } else if (auto* conv = dynamic_cast<ClvpConv1d*>(&module)) {
    conv->weight.normal_(0.0, factor * 0.02);
    conv->bias.zero_();
  } else if (auto* mlp = dynamic_cast<ClvpEncoderMLP*>(&module)) {
    const ClvpEncoderConfig& c = mlp->config;
    double in_proj_std = std::pow(c.hidden_size, -0.5) * std::pow(2.0 * c.num_hidden_layers, -0.5) * factor;
    double fc_std = std::pow(2.0 * c.hidden_size, -0.5) * factor;
    mlp->fc1->proj->weight.normal_(0.0, fc_std);
    mlp->fc2->weight.normal_(0.0, in_proj_std);
  } else if (auto* encoder = dynamic_cast<ClvpEncoder*>(&module)) {
    const PretrainedConfig* c = config.get();
    if (auto* composite = dynamic_cast<const ClvpConfig*>(c)) c = composite->text_config.get();
    double hidden_size = static_cast<double>(encoder->cfg().hidden_size);
    if (auto* encoder_config = dynamic_cast<const ClvpEncoderConfig*>(c)) hidden_size = encoder_config->hidden_size;
    encoder->projection->weight.normal_(0.0, initializer_factor_of(*c) * std::pow(hidden_size, -0.5));
  } else if (auto* conditioning = dynamic_cast<ClvpConditioningEncoder*>(&module)) {
    conditioning->mel_conv->weight.normal_(0.0, factor);
    conditioning->mel_conv->bias.zero_();
  }
  // (transformers' ClvpForCausalLM branch matches no parameter name, so it does nothing.)
  if (auto* norm = dynamic_cast<nn::LayerNorm*>(&module)) {
    if (norm->bias.defined()) norm->bias.zero_();
    norm->weight.fill_(1.0);
  }
}

// ---- ClvpEncoder ----

ClvpEncoder::ClvpEncoder(std::shared_ptr<ClvpEncoderConfig> config) : ClvpPreTrainedModel(config, "ClvpEncoder") {
  const ClvpEncoderConfig& c = *config;
  token_embedding = register_module("token_embedding", std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size));
  if (c.use_rotary_embedding)
    rotary_pos_emb = register_module("rotary_pos_emb", std::make_shared<ClvpRotaryPositionalEmbedding>(c));
  layers = register_module("layers", std::make_shared<nn::ModuleList<ClvpEncoderLayer>>());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(std::make_shared<ClvpEncoderLayer>(c));
  sequence_summary = register_module("sequence_summary", std::make_shared<ClvpSequenceSummary>(c, c.hidden_size));
  final_layer_norm = register_module("final_layer_norm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_eps));
  projection = register_module("projection", std::make_shared<nn::Linear>(c.hidden_size, c.projection_dim, false));
  post_init();
}

std::shared_ptr<ClvpEncoder> ClvpEncoder::from_pretrained(const std::string& path, const FromPretrainedOptions& options) {
  return std::dynamic_pointer_cast<ClvpEncoder>(model_from_pretrained(path, "ClvpEncoder", options));
}

void ClvpEncoder::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  token_embedding = replace_module("token_embedding", value);
}

ModelOutput ClvpEncoder::forward(const ModelInputs& in) {
  const ClvpEncoderConfig& c = cfg();
  bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);

  at::Tensor inputs_embeds;
  int64_t seq_length;
  if (in.input_ids.defined() && in.inputs_embeds.defined()) {
    throw ValueError("You cannot specify both input_ids and inputs_embeds at the same time");
  } else if (in.input_ids.defined()) {
    if (in.input_ids.dim() != 2) throw ValueError("input_ids must be 2-D [batch, seq], got " + shape_str(in.input_ids.sizes()));
    check_ids(in.input_ids, c.vocab_size, "ClvpEncoder input_ids");
    warn_if_padding_and_no_attention_mask(in.input_ids, in.attention_mask);
    seq_length = in.input_ids.size(1);
    inputs_embeds = token_embedding->forward(in.input_ids);
  } else if (in.inputs_embeds.defined()) {
    if (in.inputs_embeds.dim() != 3 || in.inputs_embeds.size(2) != c.hidden_size)
      throw ValueError("inputs_embeds must be [batch, seq, " + std::to_string(c.hidden_size) + "], got " +
                       shape_str(in.inputs_embeds.sizes()));
    seq_length = in.inputs_embeds.size(1);
    inputs_embeds = in.inputs_embeds;
  } else {
    throw ValueError("You have to specify either input_ids or inputs_embeds");
  }

  // expand attention_mask and create position_ids if needed
  at::Tensor attention_mask;
  if (in.attention_mask.defined()) {
    if (in.attention_mask.dim() != 2 || in.attention_mask.size(0) != inputs_embeds.size(0) ||
        in.attention_mask.size(1) != seq_length)
      throw ValueError("attention_mask must be [batch, seq] = [" + std::to_string(inputs_embeds.size(0)) + ", " +
                       std::to_string(seq_length) + "], got " + shape_str(in.attention_mask.sizes()));
    // [bsz, seq_len] -> [bsz, 1, tgt_seq_len, src_seq_len]
    attention_mask = expand_mask(in.attention_mask, inputs_embeds.scalar_type(), seq_length);
  }
  at::Tensor position_ids = in.position_ids;
  if (!position_ids.defined()) position_ids = at::arange(seq_length, inputs_embeds.options().dtype(at::kLong)).unsqueeze(0);
  at::Tensor rotary_emb;
  if (rotary_pos_emb) {
    rotary_emb = rotary_pos_emb->forward(inputs_embeds);
    check_ids(position_ids, seq_length, "ClvpEncoder position_ids (they index the rotary table of the sequence)");
  }

  ModelOutput out;
  at::Tensor hidden_states = inputs_embeds;
  const bool checkpointing = gradient_checkpointing && is_training() && !output_attentions;
  for (const auto& encoder_layer : *layers) {
    if (output_hidden_states) out.hidden_states.push_back(hidden_states);
    if (checkpointing) {
      // By value: the recomputation runs in backward, after this frame is gone.
      hidden_states = checkpoint(
          [encoder_layer, rotary_emb, attention_mask, position_ids](const at::Tensor& h) {
            return encoder_layer->forward(h, rotary_emb, attention_mask, position_ids, false).attn_output;
          },
          hidden_states);
      continue;
    }
    ClvpSelfAttention::Output layer_outputs =
        encoder_layer->forward(hidden_states, rotary_emb, attention_mask, position_ids, output_attentions);
    hidden_states = layer_outputs.attn_output;
    if (output_attentions) out.attentions.push_back(layer_outputs.attn_weights);
  }
  if (output_hidden_states) out.hidden_states.push_back(hidden_states);

  at::Tensor last_hidden_state = final_layer_norm->forward(hidden_states);
  // take the mean over axis 1 and get pooled output
  at::Tensor pooled_output = sequence_summary->forward(last_hidden_state);
  // apply the projection layer
  out.extra["embeds"] = projection->forward(pooled_output);
  out.last_hidden_state = last_hidden_state;
  out.pooler_output = pooled_output;
  return out;
}

TFCPP_REGISTER_MODEL("clvp_encoder", "clvp-encoder", ClvpEncoder, ClvpEncoderConfig);

// ---- ClvpDecoder, ClvpModel ----

ClvpDecoder::ClvpDecoder(std::shared_ptr<ClvpDecoderConfig> config) : ClvpPreTrainedModel(config, "ClvpDecoder") {
  const ClvpDecoderConfig& c = *config;
  input_embeds_layer = register_module("input_embeds_layer", std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size));
  position_embeds_layer =
      register_module("position_embeds_layer", std::make_shared<nn::Embedding>(c.max_position_embeddings, c.hidden_size));
  layers = register_module("layers", std::make_shared<nn::ModuleList<ClvpDecoderLayer>>());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(std::make_shared<ClvpDecoderLayer>(c));
  layer_norm = register_module("layer_norm", std::make_shared<nn::LayerNorm>(c.hidden_size, c.layer_norm_epsilon));
  post_init();
}

void ClvpDecoder::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  input_embeds_layer = replace_module("input_embeds_layer", value);
}

ModelOutput ClvpDecoder::forward(const ModelInputs& in) {
  const ClvpDecoderConfig& c = cfg();
  bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);
  bool use_cache = in.use_cache.value_or(c.use_cache);
  const bool checkpointing = gradient_checkpointing && is_training();
  if (checkpointing) use_cache = false;  // transformers: "`use_cache=True` is incompatible with gradient checkpointing"

  std::vector<int64_t> input_shape;
  if (in.input_ids.defined() && in.inputs_embeds.defined()) {
    throw ValueError("You cannot specify both input_ids and inputs_embeds at the same time");
  } else if (in.input_ids.defined()) {
    if (in.input_ids.dim() != 2) throw ValueError("input_ids must be 2-D [batch, seq], got " + shape_str(in.input_ids.sizes()));
    check_ids(in.input_ids, c.vocab_size, "ClvpDecoder input_ids");
    warn_if_padding_and_no_attention_mask(in.input_ids, in.attention_mask);
    input_shape = in.input_ids.sizes().vec();
  } else if (in.inputs_embeds.defined()) {
    if (in.inputs_embeds.dim() != 3 || in.inputs_embeds.size(2) != c.hidden_size)
      throw ValueError("inputs_embeds must be [batch, seq, " + std::to_string(c.hidden_size) + "], got " +
                       shape_str(in.inputs_embeds.sizes()));
    input_shape = {in.inputs_embeds.size(0), in.inputs_embeds.size(1)};
  } else {
    throw ValueError("You have to specify either input_ids or inputs_embeds");
  }
  int64_t batch_size = input_shape[0], seq_length = input_shape[1];
  auto long_options = (in.input_ids.defined() ? in.input_ids : in.inputs_embeds).options().dtype(at::kLong);

  at::Tensor token_type_ids = in.token_type_ids;
  if (token_type_ids.defined()) token_type_ids = token_type_ids.view({-1, seq_length});

  std::shared_ptr<Cache> cache = in.past_key_values;
  int64_t past_key_values_length = cache ? cache->get_seq_length() : 0;
  if (!cache && use_cache) cache = std::make_shared<DynamicCache>();

  at::Tensor position_ids = in.position_ids;
  if (!position_ids.defined())
    position_ids = at::arange(past_key_values_length, seq_length + past_key_values_length, long_options)
                       .unsqueeze(0)
                       .view({-1, seq_length});
  check_ids(position_ids, c.max_position_embeddings, "ClvpDecoder position_ids (max_position_embeddings bounds them)");

  at::Tensor inputs_embeds = in.inputs_embeds.defined() ? in.inputs_embeds : input_embeds_layer->forward(in.input_ids);
  at::Tensor position_embeds = position_embeds_layer->forward(position_ids);
  inputs_embeds = inputs_embeds + position_embeds;

  at::Tensor attention_mask =
      prepare_4d_causal_attention_mask(in.attention_mask, batch_size, seq_length, inputs_embeds, past_key_values_length);

  // Prepare head mask if needed: 1.0 in head_mask indicate we keep the head; per layer [1, heads, 1, 1].
  std::vector<at::Tensor> head_mask(layers->size());
  if (in.head_mask.defined()) {
    at::Tensor mask = in.head_mask.to(inputs_embeds.scalar_type());
    if (mask.dim() == 1) mask = mask.unsqueeze(0).unsqueeze(0).unsqueeze(-1).unsqueeze(-1).expand(
                             {static_cast<int64_t>(layers->size()), -1, -1, -1, -1});
    else if (mask.dim() == 2) mask = mask.unsqueeze(1).unsqueeze(-1).unsqueeze(-1);
    if (mask.dim() != 5 || mask.size(0) != static_cast<int64_t>(layers->size()) || mask.size(2) != c.num_attention_heads)
      throw ValueError("head_mask must be [num_heads] or [num_layers, num_heads] = [" + std::to_string(layers->size()) +
                       ", " + std::to_string(c.num_attention_heads) + "], got " + shape_str(in.head_mask.sizes()));
    for (size_t i = 0; i < layers->size(); ++i) head_mask[i] = mask[i];
  }

  at::Tensor hidden_states = inputs_embeds;
  if (token_type_ids.defined()) {
    check_ids(token_type_ids, c.vocab_size, "ClvpDecoder token_type_ids");
    hidden_states = hidden_states + input_embeds_layer->forward(token_type_ids);
  }
  hidden_states = at::dropout(hidden_states, c.embd_pdrop, is_training());

  ModelOutput out;
  for (size_t i = 0; i < layers->size(); ++i) {
    if (output_hidden_states) out.hidden_states.push_back(hidden_states);
    if (checkpointing && !output_attentions && !in.past_key_values) {
      auto block = (*layers)[i];
      at::Tensor layer_head_mask = head_mask[i];
      hidden_states = checkpoint(
          [block, attention_mask, position_ids, layer_head_mask](const at::Tensor& h) {
            return block->forward(h, nullptr, 0, attention_mask, position_ids, layer_head_mask, false).attn_output;
          },
          hidden_states);
      continue;
    }
    ClvpSelfAttention::Output outputs = (*layers)[i]->forward(hidden_states, cache.get(), static_cast<int64_t>(i),
                                                              attention_mask, position_ids, head_mask[i],
                                                              output_attentions);
    hidden_states = outputs.attn_output;
    if (output_attentions) out.attentions.push_back(outputs.attn_weights);
  }
  hidden_states = layer_norm->forward(hidden_states);
  hidden_states = hidden_states.view({-1, seq_length, hidden_states.size(-1)});
  // Add last hidden state
  if (output_hidden_states) out.hidden_states.push_back(hidden_states);
  out.last_hidden_state = hidden_states;
  if (use_cache) out.past_key_values = cache;
  return out;
}

TFCPP_REGISTER_MODEL("clvp_decoder", "clvp-decoder", ClvpDecoder, ClvpDecoderConfig);

ClvpModel::ClvpModel(std::shared_ptr<ClvpDecoderConfig> config) : ClvpPreTrainedModel(config, "ClvpModel") {
  decoder = register_module("decoder", std::make_shared<ClvpDecoder>(config));
  post_init();
}

ModelOutput ClvpModel::forward(const ModelInputs& inputs) { return decoder->forward(inputs); }

TFCPP_REGISTER_MODEL("clvp_decoder", "base", ClvpModel, ClvpDecoderConfig);

// ---- ClvpForCausalLM ----

ClvpForCausalLM::ClvpForCausalLM(std::shared_ptr<ClvpDecoderConfig> config) : ClvpPreTrainedModel(config, "ClvpForCausalLM") {
  model = register_module("model", std::make_shared<ClvpModel>(config));
  final_norm = register_module("final_norm", std::make_shared<nn::LayerNorm>(config->hidden_size));
  lm_head = register_module("lm_head", std::make_shared<nn::Linear>(config->hidden_size, config->vocab_size, true));
  post_init();
}

std::shared_ptr<ClvpForCausalLM> ClvpForCausalLM::from_pretrained(const std::string& path,
                                                                  const FromPretrainedOptions& options) {
  return std::dynamic_pointer_cast<ClvpForCausalLM>(model_from_pretrained(path, "ClvpForCausalLM", options));
}

ModelOutput ClvpForCausalLM::forward(const ModelInputs& in) {
  ModelOutput out = model->forward(in);
  at::Tensor hidden_states = out.last_hidden_state;
  // generate() reads only the last position: final_norm and lm_head act per position, so the rest can be skipped.
  if (in.num_logits_to_keep > 0 && in.num_logits_to_keep < hidden_states.size(1) && !in.labels.defined())
    hidden_states = hidden_states.narrow(1, hidden_states.size(1) - in.num_logits_to_keep, in.num_logits_to_keep);
  at::Tensor lm_logits = final_norm->forward(hidden_states);
  lm_logits = lm_head->forward(lm_logits);
  if (in.labels.defined()) {
    // Shift so that tokens < n predict n
    int64_t vocab = lm_logits.size(-1);
    at::Tensor shift_logits = lm_logits.narrow(-2, 0, lm_logits.size(-2) - 1).contiguous();
    at::Tensor shift_labels = in.labels.narrow(-1, 1, in.labels.size(-1) - 1).contiguous();
    out.loss = at::cross_entropy_loss(shift_logits.view({-1, vocab}), shift_labels.view({-1}), {},
                                      at::Reduction::Mean, -100);
  }
  out.logits = lm_logits;
  out.last_hidden_state = at::Tensor();
  return out;
}

ModelInputs ClvpForCausalLM::prepare_inputs_for_generation(const at::Tensor& input_ids_full, const ModelInputs& kwargs) {
  int64_t input_ids_length = input_ids_full.size(-1);
  at::Tensor input_ids = input_ids_full;
  at::Tensor token_type_ids = kwargs.token_type_ids;
  // only last token for inputs_ids if past is defined in kwargs
  const bool has_past = kwargs.past_key_values && kwargs.past_key_values->num_layers() > 0;
  if (has_past) {
    int64_t past_length = kwargs.past_key_values->get_seq_length();
    // Some generation methods already pass only the last input ID
    int64_t remove_prefix_length = input_ids.size(1) > past_length ? past_length : input_ids.size(1) - 1;
    input_ids = input_ids.narrow(1, remove_prefix_length, input_ids.size(1) - remove_prefix_length);
    if (token_type_ids.defined())
      token_type_ids = token_type_ids.narrow(1, token_type_ids.size(1) - input_ids.size(1), input_ids.size(1));
  }

  const at::Tensor& attention_mask = kwargs.attention_mask;
  at::Tensor position_ids;
  if (attention_mask.defined() && !kwargs.position_ids.defined()) {
    // create position_ids on the fly for batch generation
    position_ids = attention_mask.to(at::kLong).cumsum(-1) - 1;
    position_ids.masked_fill_(attention_mask.eq(0), 1);
    if (has_past) position_ids = position_ids.select(1, -1).unsqueeze(-1);
  }
  if (kwargs.extra.count("conditioning_embeds") && has_past)
    position_ids = at::full({1}, input_ids_length, input_ids.options().dtype(at::kLong));

  ModelInputs model_inputs;
  // if `inputs_embeds` are passed, we only want to use them in the 1st generation step
  if (kwargs.inputs_embeds.defined() && !has_past) model_inputs.inputs_embeds = kwargs.inputs_embeds;
  else model_inputs.input_ids = input_ids.contiguous();
  model_inputs.past_key_values = kwargs.past_key_values;
  model_inputs.use_cache = kwargs.use_cache;
  model_inputs.position_ids = position_ids;
  model_inputs.token_type_ids = token_type_ids;
  model_inputs.num_logits_to_keep = kwargs.num_logits_to_keep;
  return model_inputs;
}

std::pair<at::Tensor, at::Tensor> ClvpForCausalLM::prepare_conditioning_inputs(const at::Tensor& conditioning_embeds) const {
  const ClvpDecoderConfig& c = cfg();
  if (!c.bos_token_id) throw GenerationError("ClvpForCausalLM: decoder config bos_token_id (the mel start token) is not set");
  if (conditioning_embeds.dim() != 3 || conditioning_embeds.size(2) != c.hidden_size)
    throw ValueError("conditioning_embeds must be [batch, seq, " + std::to_string(c.hidden_size) + "], got " +
                     shape_str(conditioning_embeds.sizes()));
  int64_t batch_size = conditioning_embeds.size(0);
  int64_t length = conditioning_embeds.size(1) + 1;
  if (length > c.max_position_embeddings)
    throw ValueError("conditioning_embeds plus the mel start token (" + std::to_string(length) +
                     " positions) exceed max_position_embeddings (" + std::to_string(c.max_position_embeddings) + ")");
  const ClvpDecoder& decoder = *model->decoder;
  auto long_options = conditioning_embeds.options().dtype(at::kLong);
  at::Tensor mel_start_token_embedding = decoder.input_embeds_layer->forward(at::full({batch_size, 1}, *c.bos_token_id, long_options));
  mel_start_token_embedding =
      mel_start_token_embedding + decoder.position_embeds_layer->forward(at::full({batch_size, 1}, 0, long_options));
  at::Tensor embeds = at::cat({conditioning_embeds, mel_start_token_embedding}, 1);
  // subtract the positional_ids here
  at::Tensor position_ids = at::arange(length, long_options).unsqueeze(0).repeat({batch_size, 1});
  at::Tensor inputs_embeds = embeds - decoder.position_embeds_layer->forward(position_ids);
  at::Tensor input_ids = at::ones({batch_size, 1}, long_options) * *c.bos_token_id;
  return {inputs_embeds, input_ids};
}

TFCPP_REGISTER_MODEL("clvp_decoder", "causal-lm", ClvpForCausalLM, ClvpDecoderConfig);

// ---- ClvpModelForConditionalGeneration ----

ClvpModelForConditionalGeneration::ClvpModelForConditionalGeneration(std::shared_ptr<ClvpConfig> config)
    : ClvpPreTrainedModel(config, "ClvpModelForConditionalGeneration") {
  if (!config->text_config || !config->speech_config || !config->decoder_config)
    throw ValueError("ClvpConfig needs text_config, speech_config (ClvpEncoderConfig) and decoder_config "
                     "(ClvpDecoderConfig)");
  conditioning_encoder = register_module("conditioning_encoder", std::make_shared<ClvpConditioningEncoder>(*config));
  speech_decoder_model = register_module("speech_decoder_model", std::make_shared<ClvpForCausalLM>(config->decoder_config));
  text_encoder_model = register_module("text_encoder_model", std::make_shared<ClvpEncoder>(config->text_config));
  speech_encoder_model = register_module("speech_encoder_model", std::make_shared<ClvpEncoder>(config->speech_config));
  bind_parameter("logit_scale", &logit_scale, at::scalar_tensor(config->logit_scale_init_value, at::TensorOptions()));
  post_init();
  // GenerationConfig.from_model_config: attributes still at their defaults take text_config's values.
  GenerationConfig defaults;
  json current = generation_config.to_dict(), default_dict = defaults.to_dict();
  json text = config->text_config->to_dict();
  json patch = json::object();
  for (auto& [key, value] : current.items())
    if (key != "transformers_version" && text.contains(key) && value == default_dict[key]) patch[key] = text[key];
  if (!patch.empty()) generation_config.from_dict(patch, "config.json text_config", false);
}

std::shared_ptr<ClvpModelForConditionalGeneration> ClvpModelForConditionalGeneration::from_pretrained(
    const std::string& path, const FromPretrainedOptions& options) {
  return std::dynamic_pointer_cast<ClvpModelForConditionalGeneration>(
      model_from_pretrained(path, "ClvpModelForConditionalGeneration", options));
}

at::Tensor ClvpModelForConditionalGeneration::fix_speech_decoder_output(const at::Tensor& speech_ids_in) const {
  const std::vector<int64_t>& decoder_fixing_codes = cfg().decoder_config->decoder_fixing_codes;
  if (decoder_fixing_codes.size() != 4)
    throw ValueError("decoder_config.decoder_fixing_codes must hold 4 codes, got " +
                     std::to_string(decoder_fixing_codes.size()));
  if (speech_ids_in.dim() != 2) throw ValueError("speech_ids must be 2-D [batch, seq], got " + shape_str(speech_ids_in.sizes()));
  int64_t eos_token_id = speech_decoder_model->cfg().decoder_eos_token_id();
  at::Tensor speech_ids = speech_ids_in.narrow(1, 1, speech_ids_in.size(1) - 1);
  at::Tensor stop_token_indices = speech_ids.eq(eos_token_id);
  speech_ids = speech_ids.masked_fill(stop_token_indices, decoder_fixing_codes[0]);
  int64_t length = speech_ids.size(1);
  at::Tensor stops = stop_token_indices.to(at::kCPU).contiguous();
  at::Tensor tail = at::tensor(std::vector<int64_t>(decoder_fixing_codes.begin() + 1, decoder_fixing_codes.end()),
                               speech_ids.options());
  for (int64_t i = 0; i < speech_ids.size(0); ++i) {
    // This means that no stop tokens were found so the sentence was still being generated, in that case we don't
    // need to apply any padding so just skip to the next sequence of tokens.
    const bool* row = stops[i].data_ptr<bool>();
    int64_t stm = 0;
    while (stm < length && !row[stm]) ++stm;
    if (stm == length) continue;
    speech_ids[i].narrow(0, stm, length - stm).fill_(decoder_fixing_codes[0]);
    if (stm - 3 < length) {
      if (length < 3)
        throw ValueError("fix_speech_decoder_output: the speech ids (" + std::to_string(length) +
                         " after the bos) are too short for the 3 closing decoder_fixing_codes");
      speech_ids[i].narrow(0, length - 3, 3).copy_(tail);
    }
  }
  return speech_ids;
}

at::Tensor ClvpModelForConditionalGeneration::get_text_features(const at::Tensor& input_ids,
                                                                const at::Tensor& text_encoder_inputs_embeds,
                                                                const at::Tensor& attention_mask) {
  ModelInputs in;
  in.input_ids = input_ids;
  in.inputs_embeds = text_encoder_inputs_embeds;
  in.attention_mask = attention_mask;
  return text_encoder_model->forward(in).extra.at("embeds");
}

at::Tensor ClvpModelForConditionalGeneration::get_speech_features(const at::Tensor& speech_ids_in,
                                                                  const at::Tensor& input_ids,
                                                                  const at::Tensor& input_features,
                                                                  const at::Tensor& attention_mask,
                                                                  const GenerationConfig* generation_config) {
  at::Tensor speech_ids = speech_ids_in;
  if (!speech_ids.defined()) {
    if (!input_ids.defined() || !input_features.defined())
      throw ValueError("Either speech_ids or input_ids/conditioning_encoder_inputs_embeds and input_features must be "
                       "provided.");
    at::Tensor conditioning_embeds = conditioning_encoder->forward(input_features, input_ids, {}, attention_mask);
    auto [inputs_embeds, bos_ids] = speech_decoder_model->prepare_conditioning_inputs(conditioning_embeds);
    ModelInputs kwargs;
    kwargs.inputs_embeds = inputs_embeds;
    kwargs.extra["conditioning_embeds"] = conditioning_embeds;
    // (transformers indexes the decoder's output with [0]: its `sequences` when return_dict_in_generate is set)
    GenerateOutput generated = transformers::generate(
        *speech_decoder_model, bos_ids, generation_config ? *generation_config : this->generation_config, kwargs);
    speech_ids = fix_speech_decoder_output(generated.sequences);
  }
  ModelInputs in;
  in.input_ids = speech_ids;
  in.attention_mask = attention_mask;
  return speech_encoder_model->forward(in).extra.at("embeds");
}

ModelOutput ClvpModelForConditionalGeneration::call_method(const std::string& method, const ModelInputs& in) {
  if (method == "forward") return forward(in);
  ModelOutput out;
  if (method == "get_text_features") {
    out.extra["text_embeds"] = get_text_features(in.input_ids, extra_tensor(in, "text_encoder_inputs_embeds"), in.attention_mask);
    return out;
  }
  if (method == "get_speech_features") {
    if (extra_tensor(in, "conditioning_encoder_inputs_embeds").defined())
      throw ValueError("get_speech_features: conditioning_encoder_inputs_embeds cannot replace input_ids "
                       "(transformers 4.40 fails the same way)");
    out.extra["speech_embeds"] = get_speech_features(extra_tensor(in, "speech_ids"), in.input_ids,
                                                     extra_tensor(in, "input_features"), in.attention_mask);
    return out;
  }
  throw ValueError("method '" + method + "' is not supported by " + class_name +
                   " (supported: forward, get_text_features, get_speech_features)");
}

ModelOutput ClvpModelForConditionalGeneration::forward(const ModelInputs& in) {
  const ClvpConfig& c = cfg();
  // Use CLVP model's config for some fields (if specified) instead of those of speech & text components.
  bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);

  conditioning_encoder->gradient_checkpointing = gradient_checkpointing;  // (_set_gradient_checkpointing)
  at::Tensor conditioning_embeds =
      conditioning_encoder->forward(extra_tensor(in, "input_features"), in.input_ids,
                                    extra_tensor(in, "conditioning_encoder_inputs_embeds"), in.attention_mask);

  ModelInputs decoder_inputs;
  decoder_inputs.inputs_embeds = conditioning_embeds;
  decoder_inputs.output_hidden_states = output_hidden_states;
  ModelOutput decoder_outputs = speech_decoder_model->forward(decoder_inputs);

  // since we will get the embeds of shape `(batch_size, seq_len, embedding_dim)` during the forward pass
  // we must convert it to tokens, to make it compaitable with speech_transformer
  at::Tensor speech_ids = decoder_outputs.logits;
  if (speech_ids.dim() == 3) speech_ids = speech_ids.argmax(2);
  speech_ids = fix_speech_decoder_output(speech_ids);

  ModelInputs speech_inputs;
  speech_inputs.input_ids = speech_ids;
  speech_inputs.output_hidden_states = output_hidden_states;
  ModelOutput speech_outputs = speech_encoder_model->forward(speech_inputs);

  ModelInputs text_inputs;
  text_inputs.input_ids = in.input_ids;
  text_inputs.inputs_embeds = extra_tensor(in, "text_encoder_inputs_embeds");
  text_inputs.attention_mask = in.attention_mask;
  text_inputs.output_hidden_states = output_hidden_states;
  ModelOutput text_outputs = text_encoder_model->forward(text_inputs);

  at::Tensor speech_embeds = speech_outputs.extra.at("embeds");
  at::Tensor text_embeds = text_outputs.extra.at("embeds");
  // normalized features
  speech_embeds = speech_embeds / speech_embeds.norm(2, {-1}, true);
  text_embeds = text_embeds / text_embeds.norm(2, {-1}, true);
  // cosine similarity as logits
  at::Tensor logit_scale_exp = logit_scale.exp();
  at::Tensor logits_per_text = at::matmul(text_embeds, speech_embeds.t()) * logit_scale_exp;
  at::Tensor logits_per_speech = logits_per_text.t();

  ModelOutput out;
  at::Tensor return_loss = extra_tensor(in, "return_loss");
  if (return_loss.defined() && return_loss.item<bool>()) out.loss = clvp_loss(logits_per_text);
  out.extra["logits_per_speech"] = logits_per_speech;
  out.extra["logits_per_text"] = logits_per_text;
  out.extra["text_embeds"] = text_embeds;
  out.extra["speech_embeds"] = speech_embeds;
  out.extra["text_model_output"] = text_outputs.pooler_output;
  out.extra["speech_model_output"] = speech_outputs.pooler_output;
  if (output_hidden_states) {
    out.decoder_hidden_states = decoder_outputs.hidden_states;
    for (size_t i = 0; i < text_outputs.hidden_states.size(); ++i)
      out.extra["text_encoder_hidden_states." + std::to_string(i)] = text_outputs.hidden_states[i];
    for (size_t i = 0; i < speech_outputs.hidden_states.size(); ++i)
      out.extra["speech_encoder_hidden_states." + std::to_string(i)] = speech_outputs.hidden_states[i];
  }
  return out;
}

GenerateOutput ClvpModelForConditionalGeneration::generate(const at::Tensor& inputs, const GenerationConfig& config,
                                                           const ModelInputs& model_kwargs,
                                                           const TokenCallback& streamer) {
  at::Tensor input_ids = inputs.defined() ? inputs : model_kwargs.input_ids;
  std::optional<int64_t> pad_to_max_mel_tokens;
  at::Tensor pad = extra_tensor(model_kwargs, "pad_to_max_mel_tokens");
  if (pad.defined()) {
    if (pad.numel() != 1 || at::isFloatingType(pad.scalar_type()))
      throw ValueError("pad_to_max_mel_tokens must be one integer, got a tensor of shape " + shape_str(pad.sizes()));
    pad_to_max_mel_tokens = pad.item<int64_t>();
  }
  return generate(input_ids, extra_tensor(model_kwargs, "input_features"), model_kwargs.attention_mask, config,
                  pad_to_max_mel_tokens, model_kwargs.output_hidden_states, streamer);
}

GenerateOutput ClvpModelForConditionalGeneration::generate(const at::Tensor& input_ids_in,
                                                           const at::Tensor& input_features,
                                                           const at::Tensor& attention_mask_in,
                                                           const GenerationConfig& generation_config_in,
                                                           std::optional<int64_t> pad_to_max_mel_tokens,
                                                           std::optional<bool> output_hidden_states,
                                                           const TokenCallback& streamer) {
  c10::InferenceMode inference_mode;
  const ClvpConfig& c = cfg();
  if (!input_ids_in.defined() || input_ids_in.dim() != 2)
    throw ValueError("ClvpModelForConditionalGeneration.generate needs input_ids [batch, seq]");
  if (!input_features.defined())
    throw ValueError("ClvpModelForConditionalGeneration.generate needs input_features (log-mel spectrograms [batch, " +
                     std::to_string(c.decoder_config->feature_size) + ", frames]; see ClvpFeatureExtractor)");
  // If the input sequences are larger than (max_text_tokens - 3) then raise error, because we need to add 3 tokens
  // (1 bos tokens and 2 eos tokens) to the input_ids in ClvpConditioningEncoder to properly sample
  int64_t sequence_length = input_ids_in.size(-1);
  if (sequence_length > c.decoder_config->max_text_tokens - 3)
    throw ValueError("Maximum sequence length reached! Found input_ids of length " + std::to_string(sequence_length) +
                     ". Please make sure that the maximum length of input_ids is " +
                     std::to_string(c.decoder_config->max_text_tokens - 3));

  GenerationConfig generation_config = generation_config_in;
  generation_config.validate();

  // pad input_ids as specified in the original repo
  // https://github.com/neonbjb/tortoise-tts/blob/80f89987a5abda5e2b082618cd74f9c7411141dc/tortoise/api.py#L380
  if (!c.text_config->bos_token_id || !c.text_config->eos_token_id || c.text_config->eos_token_id->size() != 1)
    throw ValueError("ClvpModelForConditionalGeneration.generate: text_config needs one bos_token_id and one eos_token_id");
  auto [input_ids, attention_mask] =
      _pad_extra_bos_eos_tokens(input_ids_in, attention_mask_in, 0, *c.text_config->bos_token_id,
                                c.text_config->eos_token_id->front(), /*add_bos_token=*/false);

  at::Tensor conditioning_embeds = conditioning_encoder->forward(input_features, input_ids, {}, attention_mask);

  // speech_decoder_model.generate(conditioning_embeds=..., generation_config=..., output_hidden_states=...)
  GenerationConfig decoder_generation_config = generation_config;
  decoder_generation_config.output_hidden_states = output_hidden_states.value_or(false);
  auto [decoder_inputs_embeds, bos_ids] = speech_decoder_model->prepare_conditioning_inputs(conditioning_embeds);
  ModelInputs decoder_kwargs;
  decoder_kwargs.inputs_embeds = decoder_inputs_embeds;
  decoder_kwargs.extra["conditioning_embeds"] = conditioning_embeds;
  GenerateOutput decoder_outputs =
      transformers::generate(*speech_decoder_model, bos_ids, decoder_generation_config, decoder_kwargs, streamer);
  at::Tensor speech_ids = decoder_outputs.sequences;

  // pad to pad_to_max_mel_tokens if given, to replicate the original repo logic
  // https://github.com/neonbjb/tortoise-tts/blob/80f89987a5abda5e2b082618cd74f9c7411141dc/tortoise/api.py#L430
  if (pad_to_max_mel_tokens) {
    std::vector<int64_t> eos = this->generation_config.eos_ids();
    if (eos.size() != 1) throw ValueError("pad_to_max_mel_tokens pads with generation_config.eos_token_id, which must be one id");
    int64_t padding_needed = *pad_to_max_mel_tokens - speech_ids.size(-1);
    speech_ids = at::constant_pad_nd(speech_ids, {0, padding_needed}, eos[0]);
  }
  speech_ids = fix_speech_decoder_output(speech_ids);

  ModelInputs speech_inputs;
  speech_inputs.input_ids = speech_ids;
  speech_inputs.output_hidden_states = output_hidden_states;
  ModelOutput speech_outputs = speech_encoder_model->forward(speech_inputs);
  ModelInputs text_inputs;
  text_inputs.input_ids = input_ids;
  text_inputs.attention_mask = attention_mask;
  text_inputs.output_hidden_states = output_hidden_states;
  ModelOutput text_outputs = text_encoder_model->forward(text_inputs);

  at::Tensor speech_embeds = speech_outputs.extra.at("embeds");
  at::Tensor text_embeds = text_outputs.extra.at("embeds");
  // normalized features
  speech_embeds = speech_embeds / speech_embeds.norm(2, {-1}, true);
  text_embeds = text_embeds / text_embeds.norm(2, {-1}, true);
  // cosine similarity as logits
  at::Tensor logits_per_text = at::matmul(text_embeds, speech_embeds.t()) * logit_scale.exp();
  at::Tensor logits_per_speech = logits_per_text.t();

  GenerateOutput result;
  result.sequences = decoder_outputs.sequences;
  result.extra["speech_ids"] = speech_ids;
  result.extra["logits_per_speech"] = logits_per_speech;
  result.extra["logits_per_text"] = logits_per_text;
  result.extra["text_embeds"] = text_embeds;
  result.extra["speech_embeds"] = speech_embeds;
  result.extra["text_model_output"] = text_outputs.pooler_output;
  result.extra["speech_model_output"] = speech_outputs.pooler_output;
  if (output_hidden_states.value_or(false)) {
    result.decoder_hidden_states = decoder_outputs.hidden_states;
    for (size_t i = 0; i < text_outputs.hidden_states.size(); ++i)
      result.extra["text_encoder_hidden_states." + std::to_string(i)] = text_outputs.hidden_states[i];
    for (size_t i = 0; i < speech_outputs.hidden_states.size(); ++i)
      result.extra["speech_encoder_hidden_states." + std::to_string(i)] = speech_outputs.hidden_states[i];
  }
  return result;
}

TFCPP_REGISTER_MODEL("clvp", "base", ClvpModelForConditionalGeneration, ClvpConfig);

}  // namespace transformers
