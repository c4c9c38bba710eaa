// T5, as transformers/models/t5/{configuration,modeling}_t5.py (4.40).
// A pre-LayerNorm (RMS, no bias) encoder-decoder with bucketed relative position biases computed by the first layer of
// each stack and shared by the others, unscaled attention, embeddings shared by encoder and decoder, and a lm_head
// whose input is rescaled by d_model**-0.5 when it is tied to them.
#pragma once

#include "transformers/modeling_utils.h"

#include <set>

namespace transformers {

class T5Config : public PretrainedConfig {
 public:
  T5Config() {
    pad_token_id = 0;
    eos_token_id = TokenIds{1};
    is_encoder_decoder = true;
  }
  std::string model_type() const override { return "t5"; }
  std::map<std::string, std::string> attribute_map() const override {
    return {{"hidden_size", "d_model"}, {"num_attention_heads", "num_heads"}, {"num_hidden_layers", "num_layers"}};
  }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<T5Config>(); }
  void visit(ConfigVisitor& v) override;
  // Parses feed_forward_proj into dense_act_fn / is_gated_act ("gated-gelu" -> gelu_new), num_decoder_layers default.
  void post_read(const std::string& source) override;

  int64_t vocab_size = 32128;
  int64_t d_model = 512;
  int64_t d_kv = 64;
  int64_t d_ff = 2048;
  int64_t num_layers = 6;
  std::optional<int64_t> num_decoder_layers;  // null -> num_layers (symmetry)
  int64_t num_heads = 8;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  double dropout_rate = 0.1;
  double classifier_dropout = 0.0;
  double layer_norm_epsilon = 1e-6;
  double initializer_factor = 1.0;
  std::string feed_forward_proj = "relu";
  bool use_cache = true;
  // Derived from feed_forward_proj (also written to config.json, as transformers does).
  std::string dense_act_fn = "relu";
  bool is_gated_act = false;

  int64_t decoder_layers() const { return num_decoder_layers.value_or(num_layers); }
};

// Scales only (no mean, no bias); the variance is accumulated in float32.
class T5LayerNorm : public nn::Module {
 public:
  explicit T5LayerNorm(int64_t hidden_size, double eps = 1e-6);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  at::Tensor weight;
  double variance_epsilon;
};

class T5DenseActDense : public nn::Module {
 public:
  explicit T5DenseActDense(const T5Config& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  std::shared_ptr<nn::Linear> wi, wo;
  double dropout;
  nn::Activation act;
};

class T5DenseGatedActDense : public nn::Module {
 public:
  explicit T5DenseGatedActDense(const T5Config& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  std::shared_ptr<nn::Linear> wi_0, wi_1, wo;
  double dropout;
  nn::Activation act;
};

class T5LayerFF : public nn::Module {
 public:
  explicit T5LayerFF(const T5Config& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  // Registered as "DenseReluDense"; exactly one of the two is set (config.is_gated_act).
  std::shared_ptr<T5DenseActDense> dense_act_dense;
  std::shared_ptr<T5DenseGatedActDense> dense_gated_act_dense;
  std::shared_ptr<T5LayerNorm> layer_norm;
  double dropout;
};

class T5Attention : public nn::Module {
 public:
  struct Output {
    at::Tensor attn_output;                // [B, T, d_model]
    at::Tensor key_states, value_states;   // [B, H, S, d_kv]
    at::Tensor position_bias;              // [B or 1, H, T, S], mask included: passed to the next layers
    at::Tensor attn_weights;               // [B, H, T, S] when output_attentions
  };
  T5Attention(const T5Config& config, bool has_relative_attention_bias = false);

  // Self-attention when key_value_states is undefined: a decoder's `cache` (layer `layer_idx`) appends the new keys and
  // values. Cross-attention reuses `past_key_value` (key, value) when it covers key_value_states. `position_bias`
  // undefined: computed here (relative bias in the first layer, zeros otherwise) and `mask` added to it.
  Output forward(const at::Tensor& hidden_states, const at::Tensor& mask, const at::Tensor& key_value_states,
                 const at::Tensor& position_bias, const std::pair<at::Tensor, at::Tensor>& past_key_value,
                 Cache* cache, int64_t layer_idx, const at::Tensor& layer_head_mask, bool output_attentions);

  // Bucket (in [0, num_buckets)) of each relative position (memory_position - query_position): half the buckets for
  // exact small distances, the rest logarithmic up to max_distance; bidirectional splits the range by sign.
  static at::Tensor _relative_position_bucket(const at::Tensor& relative_position, bool bidirectional = true,
                                              int64_t num_buckets = 32, int64_t max_distance = 128);
  // [1, H, query_length, key_length]; query positions start at `query_offset` (the cached length: transformers
  // computes every row and keeps the last query_length).
  at::Tensor compute_bias(int64_t query_length, int64_t key_length, int64_t query_offset = 0) const;
  void prune_heads(const std::vector<int64_t>& heads);

  bool is_decoder, has_relative_attention_bias;
  int64_t relative_attention_num_buckets, relative_attention_max_distance, d_model, key_value_proj_dim, n_heads;
  double dropout;
  int64_t inner_dim;
  std::shared_ptr<nn::Linear> q, k, v, o;
  std::shared_ptr<nn::Embedding> relative_attention_bias;  // only when has_relative_attention_bias
  std::set<int64_t> pruned_heads;
};

class T5LayerSelfAttention : public nn::Module {
 public:
  T5LayerSelfAttention(const T5Config& config, bool has_relative_attention_bias);
  std::shared_ptr<T5Attention> SelfAttention;
  std::shared_ptr<T5LayerNorm> layer_norm;
  double dropout;
};

class T5LayerCrossAttention : public nn::Module {
 public:
  explicit T5LayerCrossAttention(const T5Config& config);
  std::shared_ptr<T5Attention> EncDecAttention;
  std::shared_ptr<T5LayerNorm> layer_norm;
  double dropout;
};

class T5Block : public nn::Module {
 public:
  struct Output {
    at::Tensor hidden_states;
    at::Tensor self_key_states, self_value_states, cross_key_states, cross_value_states;
    at::Tensor position_bias, encoder_decoder_position_bias;
    at::Tensor self_attn_weights, cross_attn_weights;
  };
  T5Block(const T5Config& config, bool has_relative_attention_bias);
  Output forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask, const at::Tensor& position_bias,
                 const at::Tensor& encoder_hidden_states, const at::Tensor& encoder_attention_mask,
                 const at::Tensor& encoder_decoder_position_bias, const at::Tensor& layer_head_mask,
                 const at::Tensor& cross_attn_layer_head_mask, Cache* self_cache,
                 const std::pair<at::Tensor, at::Tensor>& cross_past_key_value, int64_t layer_idx,
                 bool output_attentions);

  bool is_decoder;
  // Children "0" (T5LayerSelfAttention), "1" (T5LayerCrossAttention, decoder only), last (T5LayerFF).
  std::shared_ptr<nn::ModuleList<nn::Module>> layer;
  std::shared_ptr<T5LayerSelfAttention> self_attention;
  std::shared_ptr<T5LayerCrossAttention> cross_attention;
  std::shared_ptr<T5LayerFF> ff;
};

class T5PreTrainedModel : public PreTrainedModel {
 public:
  T5PreTrainedModel(std::shared_ptr<T5Config> config, std::string class_name);
  const T5Config& cfg() const { return static_cast<const T5Config&>(*config); }
  void _init_weights(torch::nn::Module& module) override;
  // input_ids and decoder_input_ids DUMMY_INPUTS, decoder_attention_mask DUMMY_MASK.
  ModelInputs dummy_inputs() const override;
  // New rows of a resized embedding / untied head keep torch's default init (T5's _init_weights has no branch for a
  // bare nn.Embedding or nn.Linear).
  std::shared_ptr<nn::Embedding> resize_token_embeddings(
      std::optional<int64_t> new_num_tokens, std::optional<int64_t> pad_to_multiple_of = std::nullopt) override;
  // decoder_start_token_id, then input_ids[..., :-1]; -100 -> pad_token_id.
  at::Tensor _shift_right(const at::Tensor& input_ids) const;

 protected:
  bool resizing_ = false;
};

// The encoder or the decoder (config.is_decoder). Reads input_ids or inputs_embeds, attention_mask,
// encoder_hidden_states, encoder_attention_mask, head_mask, cross_attn_head_mask, past_key_values (an
// EncoderDecoderCache), use_cache, output_*. Returns last_hidden_state, past_key_values, hidden_states, attentions,
// cross_attentions.
class T5Stack : public T5PreTrainedModel {
 public:
  T5Stack(std::shared_ptr<T5Config> config, std::shared_ptr<nn::Embedding> embed_tokens = nullptr);
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return embed_tokens; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;

  bool is_decoder;
  std::shared_ptr<nn::Embedding> embed_tokens;
  std::shared_ptr<nn::ModuleList<T5Block>> block;
  std::shared_ptr<T5LayerNorm> final_layer_norm;
  double dropout;
};

class T5Model : public T5PreTrainedModel {
 public:
  explicit T5Model(std::shared_ptr<T5Config> config);
  static std::shared_ptr<T5Model> from_pretrained(const std::string& path, const FromPretrainedOptions& options = {});
  // Seq2SeqModelOutput. head_mask doubles as decoder_head_mask when the latter is unset and both stacks have as many
  // layers.
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return shared; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;
  std::shared_ptr<PreTrainedModel> get_encoder() override { return encoder; }
  std::shared_ptr<T5Stack> get_decoder() { return decoder; }
  // The encoder's self-attention heads (transformers 4.40's T5Model._prune_heads names a missing attribute).
  void _prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) override;

  std::shared_ptr<nn::Embedding> shared;
  std::shared_ptr<T5Stack> encoder, decoder;
};

class T5ForConditionalGeneration : public T5PreTrainedModel {
 public:
  explicit T5ForConditionalGeneration(std::shared_ptr<T5Config> config);
  static std::shared_ptr<T5ForConditionalGeneration> from_pretrained(const std::string& path,
                                                                     const FromPretrainedOptions& options = {});
  // Seq2SeqLMOutput. With labels: decoder_input_ids default to _shift_right(labels); loss is the mean cross entropy
  // over labels != -100.
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return shared; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return lm_head; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  std::shared_ptr<PreTrainedModel> get_encoder() override { return encoder; }
  std::shared_ptr<T5Stack> get_decoder() { return decoder; }
  void _prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) override;
  bool can_generate() const override { return true; }
  ModelInputs prepare_inputs_for_generation(const at::Tensor& decoder_input_ids, const ModelInputs& kwargs) override;
  // T5 reorders every cached tensor (self and cross) of the surviving beams.
  void _reorder_cache(Cache& past_key_values, const at::Tensor& beam_idx) override;

  int64_t model_dim;
  std::shared_ptr<nn::Embedding> shared;
  std::shared_ptr<T5Stack> encoder, decoder;
  std::shared_ptr<nn::Linear> lm_head;
};

// The encoder alone (BaseModelOutput); a full T5 checkpoint loads into it (decoder.* ignored).
class T5EncoderModel : public T5PreTrainedModel {
 public:
  explicit T5EncoderModel(std::shared_ptr<T5Config> config);
  static std::shared_ptr<T5EncoderModel> from_pretrained(const std::string& path,
                                                         const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return shared; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;
  std::shared_ptr<PreTrainedModel> get_encoder() override { return encoder; }
  void _prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) override;

  std::shared_ptr<nn::Embedding> shared;
  std::shared_ptr<T5Stack> encoder;
};

}  // namespace transformers
