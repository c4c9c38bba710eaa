// BlenderbotSmall, as transformers/models/blenderbot_small/{configuration,modeling}_blenderbot_small.py (4.40).
// A post-LayerNorm encoder-decoder (BART layers) with learned positions, a layernorm_embedding before the first layer,
// embeddings shared by encoder, decoder and (tied) lm_head, and a final_logits_bias buffer.
#pragma once

#include "transformers/modeling_utils.h"

namespace transformers {

class BlenderbotSmallConfig : public PretrainedConfig {
 public:
  BlenderbotSmallConfig() {
    pad_token_id = 0;
    bos_token_id = 1;
    eos_token_id = TokenIds{2};
    is_encoder_decoder = true;
    decoder_start_token_id = 1;
    generation_defaults["forced_eos_token_id"] = 2;
  }
  std::string model_type() const override { return "blenderbot-small"; }
  std::map<std::string, std::string> attribute_map() const override {
    return {{"num_attention_heads", "encoder_attention_heads"}, {"hidden_size", "d_model"}};
  }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<BlenderbotSmallConfig>(); }
  void visit(ConfigVisitor& v) override;
  void post_read(const std::string& source) override;

  int64_t vocab_size = 50265;
  int64_t max_position_embeddings = 512;
  int64_t encoder_layers = 8;
  int64_t encoder_ffn_dim = 2048;
  int64_t encoder_attention_heads = 16;
  int64_t decoder_layers = 8;
  int64_t decoder_ffn_dim = 2048;
  int64_t decoder_attention_heads = 16;
  double encoder_layerdrop = 0.0;
  double decoder_layerdrop = 0.0;
  bool use_cache = true;
  std::string activation_function = "gelu";
  int64_t d_model = 512;
  double dropout = 0.1;
  double attention_dropout = 0.0;
  double activation_dropout = 0.0;
  double init_std = 0.02;
  bool scale_embedding = false;  // inputs_embeds * sqrt(d_model)
  std::optional<int64_t> num_hidden_layers;  // null -> encoder_layers
};

// nn.Embedding over positions past_key_values_length .. past_key_values_length + seq_len.
class BlenderbotSmallLearnedPositionalEmbedding : public nn::Embedding {
 public:
  BlenderbotSmallLearnedPositionalEmbedding(int64_t num_embeddings, int64_t embedding_dim)
      : nn::Embedding(num_embeddings, embedding_dim) {}
  // input_ids_shape [bsz, seq_len] -> [seq_len, embedding_dim]
  at::Tensor forward(at::IntArrayRef input_ids_shape, int64_t past_key_values_length = 0) const;
};

// BartAttention ("eager", the only implementation transformers 4.40 has for this family).
class BlenderbotSmallAttention : public nn::Module {
 public:
  struct Output {
    at::Tensor attn_output;                 // [B, T, E]
    at::Tensor attn_weights;                // [B, H, T, S] when output_attentions
    at::Tensor key_states, value_states;    // [B, H, S, D]: what a decoder caches
  };
  BlenderbotSmallAttention(int64_t embed_dim, int64_t num_heads, double dropout = 0.0, bool is_decoder = false,
                           bool bias = true, bool is_causal = false);
  // Self-attention when key_value_states is undefined. Self-attention of a decoder appends to `cache` (layer
  // `layer_idx`) and attends over everything cached; cross-attention reuses `past_key_value` (key, value) when it
  // covers key_value_states.
  Output forward(const at::Tensor& hidden_states, const at::Tensor& key_value_states,
                 const std::pair<at::Tensor, at::Tensor>& past_key_value, Cache* cache, int64_t layer_idx,
                 const at::Tensor& attention_mask, const at::Tensor& layer_head_mask, bool output_attentions);

  int64_t embed_dim, num_heads, head_dim;
  double dropout, scaling;
  bool is_decoder, is_causal;
  std::shared_ptr<nn::Linear> k_proj, v_proj, q_proj, out_proj;
};

class BlenderbotSmallEncoderLayer : public nn::Module {
 public:
  explicit BlenderbotSmallEncoderLayer(const BlenderbotSmallConfig& config);
  // Returns (hidden_states, attn_weights or undefined).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                                            const at::Tensor& layer_head_mask, bool output_attentions);

  int64_t embed_dim;
  std::shared_ptr<BlenderbotSmallAttention> self_attn;
  std::shared_ptr<nn::LayerNorm> self_attn_layer_norm, final_layer_norm;
  double dropout, activation_dropout;
  nn::Activation activation_fn;
  std::shared_ptr<nn::Linear> fc1, fc2;
};

class BlenderbotSmallDecoderLayer : public nn::Module {
 public:
  struct Output {
    at::Tensor hidden_states, self_attn_weights, cross_attn_weights;
    at::Tensor cross_key_states, cross_value_states;  // computed this call (to be cached), else undefined
  };
  explicit BlenderbotSmallDecoderLayer(const BlenderbotSmallConfig& config);
  // `self_cache`: the self-attention cache (layer `layer_idx`), or null; `cross_past_key_value`: cached cross
  // (key, value) of this layer, or undefined tensors.
  Output forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                 const at::Tensor& encoder_hidden_states, const at::Tensor& encoder_attention_mask,
                 const at::Tensor& layer_head_mask, const at::Tensor& cross_attn_layer_head_mask, Cache* self_cache,
                 const std::pair<at::Tensor, at::Tensor>& cross_past_key_value, int64_t layer_idx,
                 bool output_attentions);

  int64_t embed_dim;
  std::shared_ptr<BlenderbotSmallAttention> self_attn, encoder_attn;
  double dropout, activation_dropout;
  nn::Activation activation_fn;
  std::shared_ptr<nn::LayerNorm> self_attn_layer_norm, encoder_attn_layer_norm, final_layer_norm;
  std::shared_ptr<nn::Linear> fc1, fc2;
};

class BlenderbotSmallPreTrainedModel : public PreTrainedModel {
 public:
  BlenderbotSmallPreTrainedModel(std::shared_ptr<BlenderbotSmallConfig> config, std::string class_name);
  const BlenderbotSmallConfig& cfg() const { return static_cast<const BlenderbotSmallConfig&>(*config); }
  void _init_weights(torch::nn::Module& module) override;
  // [[0, 6, 10, 4, 2], [0, 8, 12, 2, pad]] as input_ids and decoder_input_ids, attention_mask = ids != pad.
  ModelInputs dummy_inputs() const override;
};

// Reads input_ids or inputs_embeds, attention_mask, head_mask, output_attentions, output_hidden_states.
// Returns last_hidden_state, hidden_states, attentions (BaseModelOutput).
class BlenderbotSmallEncoder : public BlenderbotSmallPreTrainedModel {
 public:
  BlenderbotSmallEncoder(std::shared_ptr<BlenderbotSmallConfig> config,
                         std::shared_ptr<nn::Embedding> embed_tokens = nullptr);
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return embed_tokens; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;

  double dropout, layerdrop, embed_scale;
  std::optional<int64_t> padding_idx;
  int64_t max_source_positions;
  std::shared_ptr<nn::Embedding> embed_tokens;
  std::shared_ptr<BlenderbotSmallLearnedPositionalEmbedding> embed_positions;
  std::shared_ptr<nn::ModuleList<BlenderbotSmallEncoderLayer>> layers;
  std::shared_ptr<nn::LayerNorm> layernorm_embedding;
};

// Reads input_ids or inputs_embeds, attention_mask, encoder_hidden_states, encoder_attention_mask, head_mask,
// cross_attn_head_mask, past_key_values (an EncoderDecoderCache holds the cross-attention states too), use_cache,
// output_*. Returns last_hidden_state, past_key_values, hidden_states, attentions, cross_attentions.
class BlenderbotSmallDecoder : public BlenderbotSmallPreTrainedModel {
 public:
  BlenderbotSmallDecoder(std::shared_ptr<BlenderbotSmallConfig> config,
                         std::shared_ptr<nn::Embedding> embed_tokens = nullptr);
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return embed_tokens; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;

  double dropout, layerdrop, embed_scale;
  std::optional<int64_t> padding_idx;
  int64_t max_target_positions;
  std::shared_ptr<nn::Embedding> embed_tokens;
  std::shared_ptr<BlenderbotSmallLearnedPositionalEmbedding> embed_positions;
  std::shared_ptr<nn::ModuleList<BlenderbotSmallDecoderLayer>> layers;
  std::shared_ptr<nn::LayerNorm> layernorm_embedding;
};

class BlenderbotSmallModel : public BlenderbotSmallPreTrainedModel {
 public:
  explicit BlenderbotSmallModel(std::shared_ptr<BlenderbotSmallConfig> config);
  static std::shared_ptr<BlenderbotSmallModel> from_pretrained(const std::string& path,
                                                               const FromPretrainedOptions& options = {});
  // Seq2SeqModelOutput: last_hidden_state, past_key_values, decoder_*, cross_attentions, encoder_*.
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return shared; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;
  std::shared_ptr<PreTrainedModel> get_encoder() override { return encoder; }
  std::shared_ptr<BlenderbotSmallDecoder> get_decoder() { return decoder; }

  std::shared_ptr<nn::Embedding> shared;
  std::shared_ptr<BlenderbotSmallEncoder> encoder;
  std::shared_ptr<BlenderbotSmallDecoder> decoder;
};

class BlenderbotSmallForConditionalGeneration : public BlenderbotSmallPreTrainedModel {
 public:
  explicit BlenderbotSmallForConditionalGeneration(std::shared_ptr<BlenderbotSmallConfig> config);
  static std::shared_ptr<BlenderbotSmallForConditionalGeneration> from_pretrained(
      const std::string& path, const FromPretrainedOptions& options = {});
  // Seq2SeqLMOutput. With labels: decoder_input_ids default to shift_tokens_right(labels), use_cache is off, and
  // loss is the mean cross entropy over labels != -100.
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return model->shared; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override { model->set_input_embeddings(value); }
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return lm_head; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  std::shared_ptr<PreTrainedModel> get_encoder() override { return model->encoder; }
  std::shared_ptr<BlenderbotSmallDecoder> get_decoder() { return model->decoder; }
  // Also resizes final_logits_bias (new entries zero).
  std::shared_ptr<nn::Embedding> resize_token_embeddings(
      std::optional<int64_t> new_num_tokens, std::optional<int64_t> pad_to_multiple_of = std::nullopt) override;
  void _resize_final_logits_bias(int64_t new_num_tokens);
  bool can_generate() const override { return true; }
  ModelInputs prepare_inputs_for_generation(const at::Tensor& decoder_input_ids, const ModelInputs& kwargs) override;
  // Cached cross-attention states are the same for every beam: only the self-attention cache is reordered.
  void _reorder_cache(Cache& past_key_values, const at::Tensor& beam_idx) override;

  std::shared_ptr<BlenderbotSmallModel> model;
  at::Tensor final_logits_bias;  // [1, vocab_size] buffer
  std::shared_ptr<nn::Linear> lm_head;
};

// Holds the decoder so that BlenderbotSmallForCausalLM's keys read model.decoder.* (BartDecoderWrapper).
class BlenderbotSmallDecoderWrapper : public BlenderbotSmallPreTrainedModel {
 public:
  explicit BlenderbotSmallDecoderWrapper(std::shared_ptr<BlenderbotSmallConfig> config);
  ModelOutput forward(const ModelInputs& inputs) override { return decoder->forward(inputs); }
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return decoder->embed_tokens; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override { decoder->set_input_embeddings(value); }

  std::shared_ptr<BlenderbotSmallDecoder> decoder;
};

// The decoder alone with an LM head (config copied with is_decoder = true, is_encoder_decoder = false). Cross-attends
// when encoder_hidden_states are given. Loss, as in transformers 4.40, compares logits and labels position by position
// (no shift).
class BlenderbotSmallForCausalLM : public BlenderbotSmallPreTrainedModel {
 public:
  explicit BlenderbotSmallForCausalLM(std::shared_ptr<BlenderbotSmallConfig> config);
  static std::shared_ptr<BlenderbotSmallForCausalLM> from_pretrained(const std::string& path,
                                                                     const FromPretrainedOptions& options = {});
  // CausalLMOutputWithCrossAttentions: logits, loss, past_key_values, hidden_states, attentions, cross_attentions.
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return model->decoder->embed_tokens; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override { model->set_input_embeddings(value); }
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return lm_head; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  std::shared_ptr<BlenderbotSmallDecoder> get_decoder() { return model->decoder; }
  bool can_generate() const override { return true; }
  ModelInputs prepare_inputs_for_generation(const at::Tensor& input_ids, const ModelInputs& kwargs) override;

  std::shared_ptr<BlenderbotSmallDecoderWrapper> model;
  std::shared_ptr<nn::Linear> lm_head;
};

// shift_tokens_right: decoder inputs from labels ([B, T]); -100 becomes pad_token_id. ValueError without a pad id.
at::Tensor shift_tokens_right(const at::Tensor& input_ids, std::optional<int64_t> pad_token_id,
                              int64_t decoder_start_token_id);

}  // namespace transformers
