// Port of transformers/models/llama/{configuration,modeling}_llama.py (4.40.2).
#include "transformers/models/llama.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/gradient_checkpointing.h"
#include "transformers/kernels.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

namespace transformers {

// ---- LlamaConfig ----

void LlamaConfig::visit(ConfigVisitor& v) {
  v("vocab_size", vocab_size);
  v("hidden_size", hidden_size);
  v("intermediate_size", intermediate_size);
  v("num_hidden_layers", num_hidden_layers);
  v("num_attention_heads", num_attention_heads);
  v("num_key_value_heads", num_key_value_heads);
  v("hidden_act", hidden_act);
  v("max_position_embeddings", max_position_embeddings);
  v("initializer_range", initializer_range);
  v("rms_norm_eps", rms_norm_eps);
  v("use_cache", use_cache);
  v("pretraining_tp", pretraining_tp);
  v("rope_theta", rope_theta);
  v("rope_scaling", rope_scaling);
  v("attention_bias", attention_bias);
  v("attention_dropout", attention_dropout);
}

void LlamaConfig::post_read(const std::string& source) {
  if (!num_key_value_heads) num_key_value_heads = num_attention_heads;
  // _rope_scaling_validation
  if (!rope_scaling.is_null()) {
    if (!rope_scaling.is_object() || rope_scaling.size() != 2 || !rope_scaling.contains("type") ||
        !rope_scaling.contains("factor"))
      throw ConfigError(source + ": `rope_scaling` must be a dictionary with two fields, `type` and `factor`, got " +
                        rope_scaling.dump());
    const json& type = rope_scaling["type"];
    const json& factor = rope_scaling["factor"];
    if (!type.is_string() || (type != "linear" && type != "dynamic"))
      throw ConfigError(source + ": `rope_scaling`'s type field must be one of ['linear', 'dynamic'], got " + type.dump());
    if (!factor.is_number_float() || factor.get<double>() <= 1.0)
      throw ConfigError(source + ": `rope_scaling`'s factor field must be a float > 1, got " + factor.dump());
  }
  if (hidden_size % num_attention_heads != 0)
    throw ConfigError(source + ": hidden_size (" + std::to_string(hidden_size) + ") must be divisible by num_heads (" +
                      std::to_string(num_attention_heads) + ")");
  if (num_attention_heads % kv_heads() != 0)
    throw ConfigError(source + ": num_attention_heads must be a multiple of num_key_value_heads");
}

TFCPP_REGISTER_CONFIG("llama", LlamaConfig);

// ---- Layers ----

LlamaRMSNorm::LlamaRMSNorm(int64_t hidden_size, double eps) : variance_epsilon(eps) {
  bind_parameter("weight", &weight, at::ones({hidden_size}));
}

at::Tensor LlamaRMSNorm::forward(const at::Tensor& hidden_states) const {
  if (tp_forward) return tp_forward(hidden_states);  // a pipeline stage boundary (distributed.h)
  // Fused kernel (same float32 arithmetic, one pass) for float32 inference.
  if (kernels::usable(hidden_states) && hidden_states.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
      hidden_states.is_contiguous())
    return kernels::rms_norm(hidden_states, weight, variance_epsilon);
  auto input_dtype = hidden_states.scalar_type();
  at::Tensor h = hidden_states.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, true);
  h = h * at::rsqrt(variance + variance_epsilon);
  return weight * h.to(input_dtype);
}

namespace {
at::Tensor rope_inv_freq(int64_t dim, double base) {
  return 1.0 / at::pow(base, at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim));
}

at::Tensor rotate_half(const at::Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, x.size(-1) - half), x.narrow(-1, 0, half)}, -1);
}

// q [B, H, T, D] and k with cos/sin [B, T, D]
std::pair<at::Tensor, at::Tensor> apply_rotary_pos_emb(const at::Tensor& q, const at::Tensor& k, const at::Tensor& cos,
                                                       const at::Tensor& sin) {
  at::Tensor c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  return {q * c + rotate_half(q) * s, k * c + rotate_half(k) * s};
}

// [B, kv, T, D] -> [B, kv * n_rep, T, D]
at::Tensor repeat_kv(const at::Tensor& x, int64_t n_rep) {
  if (n_rep == 1) return x;
  int64_t b = x.size(0), kv = x.size(1), t = x.size(2), d = x.size(3);
  return x.unsqueeze(2).expand({b, kv, n_rep, t, d}).reshape({b, kv * n_rep, t, d});
}
}  // namespace

LlamaRotaryEmbedding::LlamaRotaryEmbedding(int64_t d, int64_t max_pos, double b, std::string type, double factor)
    : dim(d), max_position_embeddings(max_pos), base(b), scaling_type(std::move(type)), scaling_factor(factor) {
  inv_freq = rope_inv_freq(dim, base);
}

std::pair<at::Tensor, at::Tensor> LlamaRotaryEmbedding::forward(const at::Tensor& x, const at::Tensor& position_ids) {
  at::Tensor positions = position_ids.to(at::kFloat);
  if (scaling_type == "linear") {
    positions = positions / scaling_factor;
  } else if (scaling_type == "dynamic") {
    int64_t seq_len = position_ids.max().item<int64_t>() + 1;
    if (seq_len > max_position_embeddings) {
      double scaled = base * std::pow(scaling_factor * seq_len / max_position_embeddings - (scaling_factor - 1),
                                      static_cast<double>(dim) / (dim - 2));
      inv_freq = rope_inv_freq(dim, scaled);  // kept, as transformers re-registers the buffer
    }
  }
  at::Tensor inv = inv_freq.unsqueeze(0).unsqueeze(-1).expand({position_ids.size(0), -1, 1});
  at::Tensor freqs = at::matmul(inv, positions.unsqueeze(1)).transpose(1, 2);  // [B, T, dim/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos().to(x.scalar_type()), emb.sin().to(x.scalar_type())};
}

LlamaMLP::LlamaMLP(const LlamaConfig& config)
    : act_fn(nn::get_activation(config.hidden_act)), pretraining_tp(config.pretraining_tp) {
  gate_proj = register_module("gate_proj", std::make_shared<nn::Linear>(config.hidden_size, config.intermediate_size, false));
  up_proj = register_module("up_proj", std::make_shared<nn::Linear>(config.hidden_size, config.intermediate_size, false));
  down_proj = register_module("down_proj", std::make_shared<nn::Linear>(config.intermediate_size, config.hidden_size, false));
}

at::Tensor LlamaMLP::forward(const at::Tensor& x) const {
  static const nn::Activation silu = nn::get_activation("silu");
  if (act_fn == silu && kernels::usable(x) && x.scalar_type() == at::kFloat) {
    at::Tensor gate = gate_proj->forward(x), up = up_proj->forward(x);
    if (gate.scalar_type() == at::kFloat && up.scalar_type() == at::kFloat && gate.is_contiguous() && up.is_contiguous())
      return down_proj->forward(kernels::silu_mul(gate, up));
    return down_proj->forward(act_fn(gate) * up);
  }
  // pretraining_tp > 1 splits the same products into slices; the sum is the same, so one matmul is used.
  return down_proj->forward(act_fn(gate_proj->forward(x)) * up_proj->forward(x));
}

LlamaAttention::LlamaAttention(const LlamaConfig& config, int64_t idx)
    : config(&config),
      layer_idx(idx),
      hidden_size(config.hidden_size),
      num_heads(config.num_attention_heads),
      head_dim(config.hidden_size / config.num_attention_heads),
      num_key_value_heads(config.kv_heads()),
      num_key_value_groups(config.num_attention_heads / config.kv_heads()),
      attention_dropout(config.attention_dropout) {
  bool bias = config.attention_bias;
  q_proj = register_module("q_proj", std::make_shared<nn::Linear>(hidden_size, num_heads * head_dim, bias));
  k_proj = register_module("k_proj", std::make_shared<nn::Linear>(hidden_size, num_key_value_heads * head_dim, bias));
  v_proj = register_module("v_proj", std::make_shared<nn::Linear>(hidden_size, num_key_value_heads * head_dim, bias));
  o_proj = register_module("o_proj", std::make_shared<nn::Linear>(hidden_size, hidden_size, bias));
  std::string type;
  double factor = 1.0;
  if (!config.rope_scaling.is_null()) {
    type = config.rope_scaling["type"].get<std::string>();
    factor = config.rope_scaling["factor"].get<double>();
  }
  rotary_emb = register_module("rotary_emb", std::make_shared<LlamaRotaryEmbedding>(
                                                 head_dim, config.max_position_embeddings, config.rope_theta, type, factor));
}

std::pair<at::Tensor, at::Tensor> LlamaAttention::forward(const at::Tensor& hidden_states,
                                                          const at::Tensor& attention_mask,
                                                          const at::Tensor& position_ids, Cache* past_key_value,
                                                          bool output_attentions) {
  int64_t bsz = hidden_states.size(0), q_len = hidden_states.size(1);
  // Float32 inference takes the fused kernels (kernels.h): rotary in place on the projections, and for one query
  // attention straight over the cache (grouped heads read their shared key/value head; no repeat_kv copy).
  const bool fused = kernels::usable(hidden_states) && hidden_states.scalar_type() == at::kFloat && !output_attentions &&
                     !is_training() && rotary_emb->scaling_type != "dynamic" && head_dim % 2 == 0;
  at::Tensor q = q_proj->forward(hidden_states), k = k_proj->forward(hidden_states), v = v_proj->forward(hidden_states);
  at::Tensor query_states = q.view({bsz, q_len, num_heads, head_dim}).transpose(1, 2);
  at::Tensor key_states = k.view({bsz, q_len, num_key_value_heads, head_dim}).transpose(1, 2);
  at::Tensor value_states = v.view({bsz, q_len, num_key_value_heads, head_dim}).transpose(1, 2);

  // In place for one query only: a prompt keeps the plain path's memory layout for the GEMM-based attention (the
  // transposed views of an in-place result would take other matmul paths, changing the rounding).
  if (fused && q_len == 1 && q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && q.is_contiguous() &&
      k.is_contiguous() && position_ids.scalar_type() == at::kLong && position_ids.dim() == 2) {
    kernels::rotary_(q, k, position_ids, rotary_emb->inv_freq, head_dim,
                     rotary_emb->scaling_type == "linear" ? rotary_emb->scaling_factor : 1.0);
  } else {
    auto [cos, sin] = rotary_emb->forward(value_states, position_ids);
    std::tie(query_states, key_states) = apply_rotary_pos_emb(query_states, key_states, cos, sin);
  }

  if (past_key_value) std::tie(key_states, value_states) = past_key_value->update(key_states, value_states, layer_idx);

  at::Tensor mask;
  if (attention_mask.defined()) mask = attention_mask.narrow(-1, 0, key_states.size(-2));
  const double scaling = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const std::string& impl = config->_attn_implementation();
  // One query: attention straight over the cache. Several (a prompt) with the causal mask: the blocked kernel
  // (kernels::attention: online softmax, masked key blocks skipped, no [Tq, Tk] scores, no repeat_kv copy).
  const bool kernel_attention = fused && (impl == "eager" || impl == "sdpa") &&
                                value_states.scalar_type() == at::kFloat && key_states.scalar_type() == at::kFloat &&
                                query_states.stride(3) == 1 && key_states.stride(3) == 1 && value_states.stride(3) == 1;
  if (kernel_attention && q_len == 1 &&
      (!mask.defined() || (mask.dim() == 4 && mask.size(1) == 1 && mask.size(2) == 1)))
    return {o_proj->forward(kernels::decode_attention(query_states, key_states, value_states, mask, scaling)),
            at::Tensor()};
  if (kernel_attention && q_len > 1 && kernels::prompt_attention_enabled() && mask.defined() && mask.dim() == 4 &&
      mask.size(1) == 1 && mask.size(2) == q_len && mask.scalar_type() == at::kFloat)
    return {o_proj->forward(kernels::attention(query_states, key_states, value_states, mask, scaling)), at::Tensor()};

  key_states = repeat_kv(key_states, num_key_value_groups);
  value_states = repeat_kv(value_states, num_key_value_groups);

  AttentionArgs args;
  args.scaling = scaling;
  args.scale_divisor = std::sqrt(static_cast<double>(head_dim));  // transformers: / math.sqrt(self.head_dim)
  args.dropout = attention_dropout;
  args.training = is_training();
  args.output_attentions = output_attentions;
  args.is_causal = true;
  const AttentionFunction& attention = attention_function(impl);
  auto [attn_output, attn_weights] = attention(query_states, key_states, value_states, mask, args);

  attn_output = attn_output.transpose(1, 2).contiguous().reshape({bsz, q_len, hidden_size});
  return {o_proj->forward(attn_output), attn_weights};
}

LlamaDecoderLayer::LlamaDecoderLayer(const LlamaConfig& config, int64_t layer_idx) {
  self_attn = register_module("self_attn", std::make_shared<LlamaAttention>(config, layer_idx));
  mlp = register_module("mlp", std::make_shared<LlamaMLP>(config));
  input_layernorm = register_module("input_layernorm", std::make_shared<LlamaRMSNorm>(config.hidden_size, config.rms_norm_eps));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<LlamaRMSNorm>(config.hidden_size, config.rms_norm_eps));
}

std::pair<at::Tensor, at::Tensor> LlamaDecoderLayer::forward(const at::Tensor& hidden_states,
                                                             const at::Tensor& attention_mask,
                                                             const at::Tensor& position_ids, Cache* past_key_value,
                                                             bool output_attentions) {
  at::Tensor residual = hidden_states;
  at::Tensor h = input_layernorm->forward(hidden_states);
  auto [attn_out, attn_weights] = self_attn->forward(h, attention_mask, position_ids, past_key_value, output_attentions);
  h = residual + attn_out;
  residual = h;
  h = post_attention_layernorm->forward(h);
  h = mlp->forward(h);
  return {residual + h, attn_weights};
}

// ---- LlamaPreTrainedModel ----

LlamaPreTrainedModel::LlamaPreTrainedModel(std::shared_ptr<LlamaConfig> config, std::string name)
    : PreTrainedModel(std::move(config), std::move(name)) {
  base_model_prefix = "model";
  supports_gradient_checkpointing = true;
  _no_split_modules = {"LlamaDecoderLayer"};
  _supports_flash_attn_2 = true;
  _supports_sdpa = true;
}

void LlamaPreTrainedModel::_init_weights(torch::nn::Module& module) {
  double std = cfg().initializer_range;
  if (auto* linear = dynamic_cast<nn::Linear*>(&module)) {
    linear->weight.normal_(0.0, std);
    if (linear->bias.defined()) linear->bias.zero_();
  } else if (auto* embedding = dynamic_cast<nn::Embedding*>(&module)) {
    embedding->weight.normal_(0.0, std);
    if (embedding->padding_idx) embedding->weight[*embedding->padding_idx].zero_();
  }
}

// ---- LlamaModel ----

LlamaModel::LlamaModel(std::shared_ptr<LlamaConfig> config) : LlamaPreTrainedModel(config, "LlamaModel") {
  const LlamaConfig& c = *config;
  embed_tokens = register_module("embed_tokens", std::make_shared<nn::Embedding>(c.vocab_size, c.hidden_size, c.pad_token_id));
  layers = register_module("layers", std::make_shared<nn::ModuleList<LlamaDecoderLayer>>());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(std::make_shared<LlamaDecoderLayer>(c, i));
  norm = register_module("norm", std::make_shared<LlamaRMSNorm>(c.hidden_size, c.rms_norm_eps));
  // Tensor parallelism (distributed.h), as later transformers' LlamaConfig.base_model_tp_plan.
  base_model_tp_plan = {{"embed_tokens", "vocab"},
                        {"layers.*.self_attn.q_proj", "colwise"},
                        {"layers.*.self_attn.k_proj", "colwise"},
                        {"layers.*.self_attn.v_proj", "colwise"},
                        {"layers.*.self_attn.o_proj", "rowwise"},
                        {"layers.*.mlp.gate_proj", "colwise"},
                        {"layers.*.mlp.up_proj", "colwise"},
                        {"layers.*.mlp.down_proj", "rowwise"}};
  _tp_attention = {{"layers.*.self_attn", {"k_proj", "v_proj"}, {}, {},
                    [](torch::nn::Module& m) {
                      auto& a = dynamic_cast<LlamaAttention&>(m);
                      return distributed::TPHeads{a.num_heads, a.num_key_value_heads, a.head_dim};
                    },
                    [](torch::nn::Module& m, const distributed::TPHeads& h) {
                      auto& a = dynamic_cast<LlamaAttention&>(m);
                      a.num_heads = h.num_heads;
                      a.num_key_value_heads = h.num_kv_heads;
                      a.num_key_value_groups = h.num_heads / h.num_kv_heads;
                      a.hidden_size = h.num_heads * h.head_dim;
                    }}};
  base_model_pp_plan = {"layers", "embed_tokens", "norm", "",
                        [](torch::nn::Module& m, bool kept, int64_t cache_index) {
                          auto& layer = dynamic_cast<LlamaDecoderLayer&>(m);
                          layer.pipeline_skip = !kept;
                          if (kept) layer.self_attn->layer_idx = cache_index;
                        }};
  post_init();
}

void LlamaModel::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  embed_tokens = replace_module("embed_tokens", value);
}

at::Tensor LlamaModel::update_causal_mask(const at::Tensor& attention_mask, const at::Tensor& input_tensor,
                                          const at::Tensor& cache_position, int64_t past_seen_tokens) const {
  if (cfg()._attn_implementation() == "flash_attention_2")
    return attention_mask.defined() && attention_mask.eq(0).any().item<bool>() ? attention_mask : at::Tensor();
  auto dtype = input_tensor.scalar_type();
  double min_dtype = dtype == at::kBFloat16 ? -3.3895313892515355e+38
                     : dtype == at::kDouble ? std::numeric_limits<double>::lowest()
                                            : std::numeric_limits<float>::lowest();
  int64_t sequence_length = input_tensor.size(1);
  int64_t target_length = attention_mask.defined() ? attention_mask.size(-1) : past_seen_tokens + sequence_length + 1;
  auto options = input_tensor.options();
  at::Tensor causal_mask = at::full({sequence_length, target_length}, min_dtype, options);
  if (sequence_length != 1) causal_mask = at::triu(causal_mask, 1);
  causal_mask *= at::arange(target_length, options.dtype(at::kLong)).gt(cache_position.reshape({-1, 1}));
  causal_mask = causal_mask.unsqueeze(0).unsqueeze(0).expand({input_tensor.size(0), 1, -1, -1});
  if (attention_mask.defined()) {
    causal_mask = causal_mask.clone();
    if (attention_mask.dim() == 2) {
      int64_t mask_length = attention_mask.size(-1);
      at::Tensor head = causal_mask.narrow(-1, 0, mask_length);
      at::Tensor padding_mask = (head + attention_mask.unsqueeze(1).unsqueeze(1).to(dtype)).eq(0);
      head.masked_fill_(padding_mask, min_dtype);
    } else if (attention_mask.dim() == 4) {
      int64_t offset = attention_mask.size(-2) < cache_position[0].item<int64_t>() + sequence_length
                           ? cache_position[0].item<int64_t>()
                           : 0;
      at::Tensor slice = attention_mask.eq(0.0).to(dtype) * min_dtype;
      causal_mask.narrow(0, 0, slice.size(0)).narrow(1, 0, slice.size(1)).narrow(2, offset, slice.size(2))
          .narrow(3, 0, slice.size(3)).copy_(slice);
    } else {
      throw ValueError("attention_mask must be 2-D [batch, seq] or 4-D, got " + std::to_string(attention_mask.dim()) + "-D");
    }
  }
  return causal_mask;
}

namespace {

// The compute dtype of a fused decode step: float32, or bfloat16 (activations rounded to bf16 wherever the module path
// holds a bf16 tensor, float32 where transformers upcasts).
enum class DecodeDtype { kUnsupported, kFloat32, kBFloat16 };

DecodeDtype decode_dtype(at::ScalarType t) {
  if (t == at::kFloat) return DecodeDtype::kFloat32;
  return t == at::kBFloat16 ? DecodeDtype::kBFloat16 : DecodeDtype::kUnsupported;
}

// The GEMV a Linear takes in the fused step (decode_linear dispatches on it): plain float32 / bfloat16 weights with a
// bias of the same dtype, or weight-only int8 / int4 codes (quantization.h) on float32 activations with a float32
// bias (kernels::raw::gemv_q8 / gemv_q4, what quantized_linear_forward runs for one row).
enum class DecodeGemv { kUnsupported, kFloat32, kBFloat16, kInt8, kInt4 };

DecodeGemv decode_gemv(const nn::Linear& l) {
  if (l.tp_forward || !l.weight.is_contiguous()) return DecodeGemv::kUnsupported;
  if (l.quant_bits) {
    if (l.bias.defined() && (l.bias.scalar_type() != at::kFloat || !l.bias.is_contiguous()))
      return DecodeGemv::kUnsupported;
    if (!l.weight_scale.is_contiguous() || l.weight_scale.scalar_type() != at::kFloat) return DecodeGemv::kUnsupported;
    if (l.quant_bits == 8 && l.weight.scalar_type() == at::kChar) return DecodeGemv::kInt8;
    if (l.quant_bits == 4 && kernels::q4_group_supported(l.quant_group_size) && l.weight_zero.is_contiguous())
      return DecodeGemv::kInt4;
    return DecodeGemv::kUnsupported;
  }
  const at::ScalarType t = l.weight.scalar_type();
  if (l.bias.defined() && (l.bias.scalar_type() != t || !l.bias.is_contiguous())) return DecodeGemv::kUnsupported;
  if (t == at::kFloat) return DecodeGemv::kFloat32;
  return t == at::kBFloat16 ? DecodeGemv::kBFloat16 : DecodeGemv::kUnsupported;
}

// The activation dtype of the step a GEMV kind runs in.
DecodeDtype activation_dtype(DecodeGemv g) {
  switch (g) {
    case DecodeGemv::kFloat32:
    case DecodeGemv::kInt8:
    case DecodeGemv::kInt4: return DecodeDtype::kFloat32;
    case DecodeGemv::kBFloat16: return DecodeDtype::kBFloat16;
    case DecodeGemv::kUnsupported: break;
  }
  return DecodeDtype::kUnsupported;
}

DecodeDtype norm_decode_dtype(const LlamaRMSNorm& n) {
  if (n.tp_forward || !n.weight.is_contiguous()) return DecodeDtype::kUnsupported;
  return decode_dtype(n.weight.scalar_type());
}

// The seven Linears of a decoder layer, in the order a decode step runs them.
std::array<const nn::Linear*, 7> layer_linears(const LlamaDecoderLayer& layer) {
  const LlamaAttention& a = *layer.self_attn;
  const LlamaMLP& mlp = *layer.mlp;
  return {a.q_proj.get(), a.k_proj.get(), a.v_proj.get(), a.o_proj.get(), mlp.gate_proj.get(), mlp.up_proj.get(),
          mlp.down_proj.get()};
}

// Whether every layer is a plain Llama layer of one dtype (float32, int8 / int4 weight-only Linears included, or
// bfloat16, that of the input embeddings; no tensor- or pipeline-parallel / offloaded weights, SiLU MLP, no dynamic
// rope), so a decode step can run
// as one pass over raw buffers. Returns that dtype, or kUnsupported.
DecodeDtype fused_decode_supported(const LlamaModel& m, at::ScalarType input_dtype) {
  static const nn::Activation silu = nn::get_activation("silu");
  const DecodeDtype dt = decode_dtype(input_dtype);
  if (dt == DecodeDtype::kUnsupported || nn::offload::active_models.load(std::memory_order_relaxed) ||
      norm_decode_dtype(*m.norm) != dt)
    return DecodeDtype::kUnsupported;
  for (const auto& layer : *m.layers) {
    if (layer->pipeline_skip || layer->tp_forward) return DecodeDtype::kUnsupported;  // distributed.h
    const LlamaAttention& a = *layer->self_attn;
    const LlamaMLP& mlp = *layer->mlp;
    for (const nn::Linear* l : layer_linears(*layer))
      if (activation_dtype(decode_gemv(*l)) != dt) return DecodeDtype::kUnsupported;
    if (mlp.act_fn != silu || norm_decode_dtype(*layer->input_layernorm) != dt ||
        norm_decode_dtype(*layer->post_attention_layernorm) != dt || a.rotary_emb->scaling_type == "dynamic" ||
        a.head_dim % 2 != 0 || a.rotary_emb->inv_freq.scalar_type() != at::kFloat || a.is_training())
      return DecodeDtype::kUnsupported;
  }
  return dt;
}

const uint16_t* bf16_data(const at::Tensor& t) { return reinterpret_cast<const uint16_t*>(t.data_ptr<at::BFloat16>()); }

// Buffers of one decode step, reused across steps (no per-token allocation but the two cache rows per layer when the
// cache keeps what it is given).
struct DecodeScratch {
  std::vector<float> f;
  std::vector<uint16_t> b;
  at::Tensor k, v;  // the step's new key / value rows [1, H_kv, 1, D], reused while their shape and dtype hold
};

// scratch.k / scratch.v for this layer: reused from the previous layer or token when the cache copies what update()
// is given (DynamicCache and StaticCache write the rows into their own buffers), fresh tensors otherwise (a Cache
// that kept a reference would see them overwritten).
void decode_kv_rows(DecodeScratch& scratch, Cache& cache, int64_t kv_heads, int64_t head_dim, at::ScalarType dtype) {
  const bool copies = dynamic_cast<DynamicCache*>(&cache) != nullptr;
  auto fits = [&](const at::Tensor& t) {
    return copies && t.defined() && t.scalar_type() == dtype && t.size(1) == kv_heads && t.size(3) == head_dim;
  };
  if (!fits(scratch.k)) scratch.k = at::empty({1, kv_heads, 1, head_dim}, at::TensorOptions(dtype));
  if (!fits(scratch.v)) scratch.v = at::empty({1, kv_heads, 1, head_dim}, at::TensorOptions(dtype));
}

// One Linear on one row, the fused step's single GEMV dispatch point (by the Linear's weight dtype), for the output
// rows `rows` (this thread's share): y = x Wᵀ (+ b), or y += x Wᵀ (+ b) with `accumulate` (the residual sum).
// float32: kernels::raw::gemv_f32 as the module path. bfloat16: x converted to bf16, vdpbf16ps GEMV with float32
// accumulation, the result rounded to bf16 as the bf16 Linear's output, then added onto y and rounded again (the bf16
// residual sum). `tmp` holds out_features floats (rows of `rows` written), `bias_f` out_features floats and `xb`
// in_features bf16 values (both this thread's own).
void decode_linear(const nn::Linear& l, const float* x, float* y, bool accumulate, float* tmp, uint16_t* xb,
                   float* bias_f, kernels::Part rows) {
  const int64_t out = l.out_features, in = l.in_features;
  switch (decode_gemv(l)) {
    case DecodeGemv::kFloat32:
      kernels::raw::gemv_f32(l.weight.data_ptr<float>(), x, y, l.bias.defined() ? l.bias.data_ptr<float>() : nullptr,
                             out, in, accumulate, rows);
      return;
    case DecodeGemv::kBFloat16: {
      const float* bias = nullptr;
      if (l.bias.defined()) {
        const uint16_t* bb = bf16_data(l.bias);
        for (int64_t o = rows.begin; o < rows.end; ++o) {
          const uint32_t u = static_cast<uint32_t>(bb[o]) << 16;
          std::memcpy(bias_f + o, &u, sizeof u);
        }
        bias = bias_f;
      }
      kernels::raw::to_bf16(x, xb, in);
      float* dst = accumulate ? tmp : y;
      kernels::raw::gemv_bf16(bf16_data(l.weight), xb, dst, bias, out, in, rows);
      kernels::raw::round_bf16(dst + rows.begin, rows.size());
      if (accumulate) kernels::raw::add_bf16(y + rows.begin, tmp + rows.begin, rows.size());
      return;
    }
    case DecodeGemv::kInt8:
      kernels::raw::gemv_q8(l.weight.data_ptr<int8_t>(), l.weight_scale.data_ptr<float>(), x, y,
                            l.bias.defined() ? l.bias.data_ptr<float>() : nullptr, out, in, accumulate, rows);
      return;
    case DecodeGemv::kInt4:
      kernels::raw::gemv_q4(l.weight.data_ptr<uint8_t>(), l.weight_scale.data_ptr<float>(),
                            l.weight_zero.data_ptr<uint8_t>(), l.quant_group_size, x, y,
                            l.bias.defined() ? l.bias.data_ptr<float>() : nullptr, out, in, accumulate, rows);
      return;
    case DecodeGemv::kUnsupported:
      break;
  }
  TORCH_CHECK(false, "fused decode: a Linear the step does not cover (checked by fused_decode_supported)");
}

void decode_rms_norm(const LlamaRMSNorm& n, const float* x, float* out, int64_t d) {
  const float eps = static_cast<float>(n.variance_epsilon);
  if (n.weight.scalar_type() == at::kBFloat16) kernels::raw::rms_norm_bf16(x, bf16_data(n.weight), out, d, eps);
  else kernels::raw::rms_norm_f32(x, n.weight.data_ptr<float>(), out, d, eps);
}

// The threads a decode step runs on: ATen's intra-op count once a layer's largest weight reaches
// kernels::min_parallel_bytes() (below it a thread hand-off costs more than the rows it would take), else one.
// Every Linear's weight is also moved onto huge pages here, once (kernels::prefer_huge_pages: a one-row GEMV streams
// ~2x faster from DRAM on them), so the team's threads never take that lock.
int decode_threads(const LlamaModel& m) {
  int64_t widest = 0;
  for (const auto& layer : *m.layers) {
    for (const nn::Linear* l : layer_linears(*layer)) {
      kernels::prefer_huge_pages(l->weight);
      widest = std::max<int64_t>(widest, static_cast<int64_t>(l->weight.nbytes()));
    }
  }
  const int threads = at::get_num_threads();
  return threads > 1 && widest >= kernels::min_parallel_bytes() ? threads : 1;
}

// One decode step (batch 1, one token) of LlamaDecoderLayer after LlamaDecoderLayer, on raw buffers: the same
// arithmetic and order of operations as the module path (RMSNorm, q/k/v GEMV, rotary, cache write, attention over the
// cache, o_proj GEMV added onto the residual, RMSNorm, gate/up GEMV, SiLU·up, down_proj GEMV added onto the residual),
// without a tensor per intermediate. float32 runs the module path's kernels; bfloat16 computes in float32 buffers and
// rounds to bf16 at each point where transformers holds a bf16 tensor. Returns the final norm's output [1, 1, H] in
// the model's dtype.
//
// The whole step is one parallel region (kernels::run_team), as llama.cpp's graph: each thread takes its share of
// every GEMV's rows and of the attention heads, and six barriers per layer order the phases (q/k/v | rotary + cache
// write | attention | o_proj | RMSNorm + gate/up + SiLU·up | down_proj). The per-kernel parallel_for it replaces forked
// and joined eight times per layer with the single-threaded parts in between, which left the second thread of a
// 2-core machine idle a third of an int4 step. Every row and head is computed as before, so the result is the same
// bit for bit at any thread count. The RMSNorm is computed by every thread into its own buffer (768 floats: cheaper
// than a barrier); the cache write, a libtorch call, runs on the calling thread (tid 0).
at::Tensor fused_decode_step(LlamaModel& m, DecodeDtype dt, const at::Tensor& inputs_embeds, int64_t position,
                             Cache& cache, const at::Tensor& mask) {
  const bool bf16 = dt == DecodeDtype::kBFloat16;
  const at::ScalarType dtype = bf16 ? at::kBFloat16 : at::kFloat;
  const int64_t hidden = inputs_embeds.size(-1);
  at::Tensor residual = inputs_embeds.to(at::kFloat).contiguous().clone();
  float* h = residual.data_ptr<float>();
  // The calling thread's buffers (the team's threads use them through this reference, not their own thread_local).
  thread_local DecodeScratch tls_scratch;
  DecodeScratch& scratch = tls_scratch;
  const float* mask_row = mask.defined() ? mask.data_ptr<float>() : nullptr;
  const int64_t mask_stride = mask.defined() ? mask.stride(-1) : 0;
  const int team = decode_threads(m);
  // Shared buffers, sized for the widest layer, then per thread an RMSNorm output row, a bias row and a bf16 input row.
  int64_t shared = 0, widest = hidden;
  for (const auto& layer : *m.layers) {
    const LlamaAttention& a = *layer->self_attn;
    const int64_t hq = a.num_heads, hk = a.num_key_value_heads, d = a.head_dim;
    const int64_t inter = layer->mlp->gate_proj->out_features;
    const int64_t wide = std::max({hidden, hq * d, inter});
    widest = std::max(widest, wide);
    shared = std::max(shared, 2 * hq * d + d + 2 * inter + 2 * hk * d + wide);
  }
  const size_t need = static_cast<size_t>(shared + team * (hidden + widest));
  if (scratch.f.size() < need) scratch.f.resize(need);
  if (scratch.b.size() < static_cast<size_t>(team * widest)) scratch.b.resize(static_cast<size_t>(team * widest));
  float* const base = scratch.f.data();
  // The cache's keys / values of the current layer, set by tid 0 between two barriers.
  const float* keys_f = nullptr;
  const float* values_f = nullptr;
  const uint16_t* keys_b = nullptr;
  const uint16_t* values_b = nullptr;
  int64_t k_head_stride = 0, k_stride = 0, v_head_stride = 0, v_stride = 0, t = 0;
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  // A phase that throws leaves the rest of the step undone on every thread; all threads still meet every barrier.
  auto guard = [&](auto&& phase) {
    if (failed.load(std::memory_order_acquire)) return;
    try {
      phase();
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed.store(true, std::memory_order_release);
    }
  };
  kernels::run_team(team, [&](int tid, int threads) {
    // This thread's RMSNorm output, bf16 input row and bias row (q/k/v share a phase but not their row splits).
    float* x = base + shared + tid * (hidden + widest);
    float* bias_f = x + hidden;
    uint16_t* xb = scratch.b.data() + tid * widest;
    for (const auto& layer : *m.layers) {
      LlamaAttention& a = *layer->self_attn;
      LlamaMLP& mlp = *layer->mlp;
      const int64_t hq = a.num_heads, hk = a.num_key_value_heads, d = a.head_dim;
      const int64_t inter = mlp.gate_proj->out_features;
      float* q = base;
      float* attn = q + hq * d;
      float* cos_sin = attn + hq * d;
      float* gate = cos_sin + d;
      float* up = gate + inter;
      float* kf = up + inter;  // k and v before they go to the cache's tensors
      float* vf = kf + hk * d;
      float* tmp = vf + hk * d;
      auto linear = [&](const nn::Linear& l, const float* in, float* out, bool accumulate) {
        decode_linear(l, in, out, accumulate, tmp, xb, bias_f, kernels::part_of(l.out_features, tid, threads));
      };
      const kernels::Part heads = kernels::part_of(hq, tid, threads, 1);
      guard([&] {
        decode_rms_norm(*layer->input_layernorm, h, x, hidden);
        if (tid == 0) {
          float pos = static_cast<float>(position);
          if (a.rotary_emb->scaling_type == "linear") pos = pos / static_cast<float>(a.rotary_emb->scaling_factor);
          kernels::raw::rope_angles(pos, a.rotary_emb->inv_freq.data_ptr<float>(), d / 2, cos_sin);
          if (bf16) kernels::raw::round_bf16(cos_sin, d);  // cos / sin .to(bf16)
        }
        linear(*a.q_proj, x, q, false);
        linear(*a.k_proj, x, kf, false);
        linear(*a.v_proj, x, vf, false);
      });
      kernels::team_barrier();
      guard([&] {
        float* qh = q + heads.begin * d;
        if (bf16) kernels::raw::rotate_heads_bf16(qh, heads.size(), d, cos_sin);
        else kernels::raw::rotate_heads(qh, heads.size(), d, cos_sin);
        if (tid != 0) return;
        decode_kv_rows(scratch, cache, hk, d, dtype);
        const at::Tensor& k = scratch.k;
        const at::Tensor& v = scratch.v;
        if (bf16) {
          kernels::raw::rotate_heads_bf16(kf, hk, d, cos_sin);
          kernels::raw::to_bf16(kf, reinterpret_cast<uint16_t*>(k.data_ptr<at::BFloat16>()), hk * d);
          kernels::raw::to_bf16(vf, reinterpret_cast<uint16_t*>(v.data_ptr<at::BFloat16>()), hk * d);
        } else {
          kernels::raw::rotate_heads(kf, hk, d, cos_sin);
          std::memcpy(k.data_ptr<float>(), kf, sizeof(float) * hk * d);
          std::memcpy(v.data_ptr<float>(), vf, sizeof(float) * hk * d);
        }
        auto [keys, values] = cache.update(k, v, a.layer_idx);
        t = keys.size(2);
        k_head_stride = keys.stride(1), k_stride = keys.stride(2);
        v_head_stride = values.stride(1), v_stride = values.stride(2);
        if (bf16) keys_b = bf16_data(keys), values_b = bf16_data(values);
        else keys_f = keys.data_ptr<float>(), values_f = values.data_ptr<float>();
      });
      kernels::team_barrier();
      guard([&] {
        if (bf16) {
          // Eager divides the bf16 scores by math.sqrt(head_dim); a Python float on a bf16 tensor is rounded to bf16.
          float divisor_bf16 = static_cast<float>(std::sqrt(static_cast<double>(d)));
          kernels::raw::round_bf16(&divisor_bf16, 1);
          kernels::raw::decode_attention_bf16(q, hq, hk, d, keys_b, k_head_stride, k_stride, values_b, v_head_stride,
                                              v_stride, t, mask_row, mask_stride, divisor_bf16, attn, heads);
        } else {
          const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
          kernels::raw::decode_attention_f32(q, hq, hk, d, keys_f, k_head_stride, k_stride, values_f, v_head_stride,
                                             v_stride, t, mask_row, mask_stride, scale, attn, heads);
        }
      });
      kernels::team_barrier();
      guard([&] { linear(*a.o_proj, attn, h, true); });
      kernels::team_barrier();
      guard([&] {
        decode_rms_norm(*layer->post_attention_layernorm, h, x, hidden);
        linear(*mlp.gate_proj, x, gate, false);
        linear(*mlp.up_proj, x, up, false);
        const kernels::Part rows = kernels::part_of(inter, tid, threads);  // gate/up's rows of this thread
        if (bf16) kernels::raw::silu_mul_bf16(gate + rows.begin, up + rows.begin, gate + rows.begin, rows.size());
        else kernels::raw::silu_mul_f32(gate + rows.begin, up + rows.begin, gate + rows.begin, rows.size());
      });
      kernels::team_barrier();
      guard([&] { linear(*mlp.down_proj, gate, h, true); });
      kernels::team_barrier();
    }
  });
  if (error) std::rethrow_exception(error);
  at::Tensor out = at::empty_like(residual);
  decode_rms_norm(*m.norm, h, out.data_ptr<float>(), hidden);
  if (!bf16) return out;
  at::Tensor out_bf16 = at::empty_like(residual, at::TensorOptions(at::kBFloat16));
  kernels::raw::to_bf16(out.data_ptr<float>(), reinterpret_cast<uint16_t*>(out_bf16.data_ptr<at::BFloat16>()), hidden);
  return out_bf16;
}

}  // namespace

ModelOutput LlamaModel::forward(const ModelInputs& in) {
  const LlamaConfig& c = cfg();
  bool output_attentions = in.output_attentions.value_or(c.output_attentions);
  bool output_hidden_states = in.output_hidden_states.value_or(c.output_hidden_states);
  bool use_cache = in.use_cache.value_or(c.use_cache);
  const bool checkpointing = gradient_checkpointing && is_training();
  if (checkpointing) use_cache = false;  // transformers: "`use_cache=True` is incompatible with gradient checkpointing"
  if (in.input_ids.defined() == in.inputs_embeds.defined())
    throw ValueError("You cannot specify both input_ids and inputs_embeds at the same time, and must specify either one");
  if (in.input_ids.defined() && in.input_ids.dim() != 2)
    throw ValueError("input_ids must be 2-D [batch, seq], got " + std::to_string(in.input_ids.dim()) + "-D");
  if (in.attention_mask.defined() && in.attention_mask.dim() == 2 && in.input_ids.defined() &&
      in.attention_mask.size(0) != in.input_ids.size(0))
    throw ValueError("attention_mask batch size does not match input_ids");

  at::Tensor inputs_embeds = in.inputs_embeds.defined() ? in.inputs_embeds : embed_tokens->forward(in.input_ids);
  std::shared_ptr<Cache> cache = in.past_key_values;
  int64_t past_seen_tokens = 0;
  if (use_cache) {
    if (!cache) cache = std::make_shared<DynamicCache>();
    past_seen_tokens = cache->get_seq_length();
  }
  at::Tensor cache_position = in.cache_position.defined()
      ? in.cache_position
      : at::arange(past_seen_tokens, past_seen_tokens + inputs_embeds.size(1), at::TensorOptions(at::kLong));
  at::Tensor position_ids = in.position_ids.defined() ? in.position_ids : cache_position.unsqueeze(0);
  // One float32 query at the end of the keys (a decode step): the fused attention needs only the padding part of the
  // causal mask, [B, 1, 1, Tk] with 0 / lowest (undefined without a mask), built directly instead of the generic way.
  const std::string& impl = c._attn_implementation();
  const at::Tensor& mask2d = in.attention_mask;
  const bool one_query = kernels::usable(inputs_embeds) && inputs_embeds.size(1) == 1 && !output_attentions &&
                         (impl == "eager" || impl == "sdpa") && cache_position.numel() == 1 &&
                         cache_position.scalar_type() == at::kLong && (!mask2d.defined() || mask2d.dim() == 2);
  const bool query_at_end =
      one_query && cache_position.data_ptr<int64_t>()[0] == (mask2d.defined() ? mask2d.size(-1) - 1 : past_seen_tokens);
  // A decode step of batch 1 through plain float32 or bfloat16 layers: one fused pass (no per-op tensors).
  DecodeDtype fused = DecodeDtype::kUnsupported;
  if (query_at_end && use_cache && !output_hidden_states && !checkpointing && inputs_embeds.size(0) == 1 &&
      position_ids.numel() == 1 && position_ids.scalar_type() == at::kLong)
    fused = fused_decode_supported(*this, inputs_embeds.scalar_type());
  // bfloat16 takes the decode mask only with the fused step (the module path adds the bf16 causal mask).
  const bool decode_step =
      query_at_end && (inputs_embeds.scalar_type() == at::kFloat || fused != DecodeDtype::kUnsupported);
  at::Tensor causal_mask;
  if (decode_step) {
    if (mask2d.defined()) causal_mask = kernels::decode_mask(mask2d);
  } else {
    causal_mask = update_causal_mask(in.attention_mask, inputs_embeds, cache_position, past_seen_tokens);
  }

  ModelOutput out;
  if (fused != DecodeDtype::kUnsupported) {
    out.last_hidden_state = fused_decode_step(*this, fused, inputs_embeds,
                                              position_ids.reshape({1}).data_ptr<int64_t>()[0], *cache, causal_mask);
    out.past_key_values = cache;
    return out;
  }
  at::Tensor hidden_states = inputs_embeds;
  for (const auto& layer : *layers) {
    if (layer->pipeline_skip) continue;  // another rank's pipeline stage
    if (output_hidden_states) out.hidden_states.push_back(hidden_states);
    if (checkpointing && !output_attentions) {
      // By value: the recomputation runs in backward, after this frame is gone.
      hidden_states = checkpoint(
          [layer, causal_mask, position_ids](const at::Tensor& h) {
            return layer->forward(h, causal_mask, position_ids, nullptr, false).first;
          },
          hidden_states);
      continue;
    }
    auto [h, weights] = layer->forward(hidden_states, causal_mask, position_ids, use_cache ? cache.get() : nullptr,
                                       output_attentions);
    hidden_states = h;
    if (output_attentions) out.attentions.push_back(weights);
  }
  hidden_states = norm->forward(hidden_states);
  if (output_hidden_states) out.hidden_states.push_back(hidden_states);
  out.last_hidden_state = hidden_states;
  if (use_cache) out.past_key_values = cache;
  return out;
}

TFCPP_REGISTER_MODEL("llama", "base", LlamaModel, LlamaConfig);

// ---- LlamaForCausalLM ----

LlamaForCausalLM::LlamaForCausalLM(std::shared_ptr<LlamaConfig> config) : LlamaPreTrainedModel(config, "LlamaForCausalLM") {
  _tied_weights_keys = {"lm_head.weight"};
  model = register_module("model", std::make_shared<LlamaModel>(config));
  lm_head = register_module("lm_head", std::make_shared<nn::Linear>(config->hidden_size, config->vocab_size, false));
  _tp_plan = {{"lm_head", "colwise_rep"}};
  _pp_plan.head = "lm_head";
  post_init();
}

std::shared_ptr<LlamaForCausalLM> LlamaForCausalLM::from_pretrained(const std::string& path,
                                                                    const FromPretrainedOptions& options) {
  return std::dynamic_pointer_cast<LlamaForCausalLM>(model_from_pretrained(path, "LlamaForCausalLM", options));
}

void LlamaForCausalLM::set_output_embeddings(std::shared_ptr<nn::Linear> value) {
  lm_head = replace_module("lm_head", value);
}

ModelOutput LlamaForCausalLM::forward(const ModelInputs& in) {
  ModelOutput out = model->forward(in);
  at::Tensor hidden_states = out.last_hidden_state;
  if (in.num_logits_to_keep > 0 && in.num_logits_to_keep < hidden_states.size(1))
    hidden_states = hidden_states.narrow(1, hidden_states.size(1) - in.num_logits_to_keep, in.num_logits_to_keep);
  out.logits = lm_head->forward(hidden_states).to(at::kFloat);
  if (in.labels.defined()) {
    int64_t vocab = out.logits.size(-1);
    at::Tensor shift_logits = out.logits.narrow(1, 0, out.logits.size(1) - 1).contiguous().view({-1, vocab});
    at::Tensor shift_labels = in.labels.narrow(1, 1, in.labels.size(1) - 1).contiguous().view({-1});
    out.loss = at::cross_entropy_loss(shift_logits, shift_labels, {}, at::Reduction::Mean, -100);
  }
  out.last_hidden_state = at::Tensor();
  return out;
}

ModelInputs LlamaForCausalLM::prepare_inputs_for_generation(const at::Tensor& input_ids_full, const ModelInputs& kwargs) {
  at::Tensor input_ids = input_ids_full;
  const at::Tensor& attention_mask = kwargs.attention_mask;
  int64_t past_length = 0;
  if (kwargs.past_key_values) {
    past_length = kwargs.cache_position.defined() ? kwargs.cache_position[0].item<int64_t>()
                                                  : kwargs.past_key_values->get_seq_length();
    if (attention_mask.defined() && attention_mask.size(1) > input_ids.size(1))
      input_ids = input_ids.narrow(1, input_ids.size(1) - (attention_mask.size(1) - past_length),
                                   attention_mask.size(1) - past_length);
    else if (past_length < input_ids.size(1))
      input_ids = input_ids.narrow(1, past_length, input_ids.size(1) - past_length);
  }
  ModelInputs model_inputs;
  at::Tensor position_ids = kwargs.position_ids;
  if (attention_mask.defined() && !position_ids.defined()) {
    position_ids = attention_mask.to(at::kLong).cumsum(-1) - 1;
    position_ids.masked_fill_(attention_mask.eq(0), 1);
    if (kwargs.past_key_values && past_length > 0)
      position_ids = position_ids.narrow(1, position_ids.size(1) - input_ids.size(1), input_ids.size(1));
  }
  if (kwargs.inputs_embeds.defined() && !kwargs.past_key_values) model_inputs.inputs_embeds = kwargs.inputs_embeds;
  else model_inputs.input_ids = input_ids.contiguous();
  int64_t input_length = position_ids.defined() ? position_ids.size(-1) : input_ids.size(-1);
  model_inputs.cache_position =
      kwargs.cache_position.defined()
          ? kwargs.cache_position.narrow(0, kwargs.cache_position.size(0) - input_length, input_length)
          : at::arange(past_length, past_length + input_length, at::TensorOptions(at::kLong));
  model_inputs.position_ids = position_ids;
  model_inputs.past_key_values = kwargs.past_key_values;
  model_inputs.use_cache = kwargs.use_cache;
  model_inputs.attention_mask = attention_mask;
  model_inputs.num_logits_to_keep = kwargs.num_logits_to_keep;
  return model_inputs;
}

TFCPP_REGISTER_MODEL("llama", "causal-lm", LlamaForCausalLM, LlamaConfig);

}  // namespace transformers
