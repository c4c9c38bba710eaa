// RoBERTa, as transformers/models/roberta/{configuration,modeling}_roberta.py (4.40).
#pragma once

#include "transformers/modeling_utils.h"

namespace transformers {

class RobertaConfig : public PretrainedConfig {
 public:
  RobertaConfig() {
    pad_token_id = 1;
    bos_token_id = 0;
    eos_token_id = TokenIds{2};
  }
  std::string model_type() const override { return "roberta"; }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<RobertaConfig>(); }
  void visit(ConfigVisitor& v) override;
  void post_read(const std::string& source) override;

  int64_t vocab_size = 50265;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-12;
  std::string position_embedding_type = "absolute";  // "absolute", "relative_key", "relative_key_query"
  bool use_cache = true;
  std::optional<double> classifier_dropout;
};

// Replaces non-padding symbols with their position numbers, starting at padding_idx + 1 (fairseq's make_positions).
at::Tensor create_position_ids_from_input_ids(const at::Tensor& input_ids, int64_t padding_idx,
                                              int64_t past_key_values_length = 0);

class RobertaEmbeddings : public nn::Module {
 public:
  explicit RobertaEmbeddings(const RobertaConfig& config);
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids, const at::Tensor& position_ids,
                     const at::Tensor& inputs_embeds, int64_t past_key_values_length) const;
  // Sequential position ids: with embeddings, padding cannot be inferred.
  at::Tensor create_position_ids_from_inputs_embeds(const at::Tensor& inputs_embeds) const;

  std::shared_ptr<nn::Embedding> word_embeddings, position_embeddings, token_type_embeddings;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  at::Tensor position_ids, token_type_ids;  // non-persistent buffers [1, max_position_embeddings]
  std::string position_embedding_type;
  int64_t padding_idx;
  double dropout;
};

class RobertaSelfAttention : public nn::Module {
 public:
  RobertaSelfAttention(const RobertaConfig& config, const std::string& position_embedding_type = "");
  // Self-attention caches its keys/values in `past_key_value` (appending); cross-attention (encoder_hidden_states
  // defined) stores them once in the cross part of an EncoderDecoderCache and reuses them afterwards.
  // Returns (context [B, T, all_head_size], attention_probs [B, H, T, S] or undefined).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                                            const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                                            const at::Tensor& encoder_attention_mask, Cache* past_key_value,
                                            int64_t layer_idx, bool output_attentions) const;
  at::Tensor transpose_for_scores(const at::Tensor& x) const;  // [B, T, H*D] -> [B, H, T, D]

  std::shared_ptr<nn::Linear> query, key, value;
  std::shared_ptr<nn::Embedding> distance_embedding;  // relative_key(_query) only
  int64_t num_attention_heads, attention_head_size, all_head_size, max_position_embeddings;
  std::string position_embedding_type;
  bool is_decoder;
  double dropout;
};

class RobertaSelfOutput : public nn::Module {
 public:
  explicit RobertaSelfOutput(const RobertaConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor) const;
  std::shared_ptr<nn::Linear> dense;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  double dropout;
};

class RobertaAttention : public nn::Module {
 public:
  RobertaAttention(const RobertaConfig& config, const std::string& position_embedding_type = "");
  void prune_heads(const std::vector<int64_t>& heads);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                                            const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                                            const at::Tensor& encoder_attention_mask, Cache* past_key_value,
                                            int64_t layer_idx, bool output_attentions) const;
  std::shared_ptr<RobertaSelfAttention> self;
  std::shared_ptr<RobertaSelfOutput> output;
  std::set<int64_t> pruned_heads;
};

class RobertaIntermediate : public nn::Module {
 public:
  explicit RobertaIntermediate(const RobertaConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  std::shared_ptr<nn::Linear> dense;
  nn::Activation intermediate_act_fn;
};

class RobertaOutput : public nn::Module {
 public:
  explicit RobertaOutput(const RobertaConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor) const;
  std::shared_ptr<nn::Linear> dense;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  double dropout;
};

struct RobertaLayerOutput {
  at::Tensor hidden_states, self_attention, cross_attention;  // weights undefined unless output_attentions
};

class RobertaLayer : public nn::Module {
 public:
  RobertaLayer(const RobertaConfig& config, int64_t layer_idx);
  RobertaLayerOutput forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                             const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                             const at::Tensor& encoder_attention_mask, Cache* past_key_value,
                             bool output_attentions) const;
  std::shared_ptr<RobertaAttention> attention, crossattention;  // crossattention only with add_cross_attention
  std::shared_ptr<RobertaIntermediate> intermediate;
  std::shared_ptr<RobertaOutput> output;
  int64_t layer_idx;
  bool is_decoder, add_cross_attention;
};

class RobertaEncoder : public nn::Module {
 public:
  explicit RobertaEncoder(const RobertaConfig& config);
  // Fills last_hidden_state, hidden_states, attentions, cross_attentions of `out`. With gradient_checkpointing (and
  // no output_attentions) each layer's activations are recomputed in backward.
  void forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
               const std::vector<at::Tensor>& head_mask, const at::Tensor& encoder_hidden_states,
               const at::Tensor& encoder_attention_mask, Cache* past_key_values, bool output_attentions,
               bool output_hidden_states, bool gradient_checkpointing, ModelOutput& out) const;
  std::shared_ptr<nn::ModuleList<RobertaLayer>> layer;
  bool add_cross_attention;
};

class RobertaPooler : public nn::Module {
 public:
  explicit RobertaPooler(const RobertaConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;  // tanh(dense(first token))
  std::shared_ptr<nn::Linear> dense;
};

// Base of every RoBERTa-architecture class. The concrete classes take a `prefix` naming the family ("Roberta",
// "Camembert"): their class names are prefix + "Model", prefix + "ForMaskedLM", ...
class RobertaPreTrainedModel : public PreTrainedModel {
 public:
  RobertaPreTrainedModel(std::shared_ptr<RobertaConfig> config, std::string class_name);
  const RobertaConfig& cfg() const { return static_cast<const RobertaConfig&>(*config); }
  void _init_weights(torch::nn::Module& module) override;
};

class RobertaModel : public RobertaPreTrainedModel {
 public:
  explicit RobertaModel(std::shared_ptr<RobertaConfig> config, bool add_pooling_layer = true,
                        const std::string& prefix = "Roberta");
  static std::shared_ptr<RobertaModel> from_pretrained(const std::string& path,
                                                       const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return embeddings->word_embeddings; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;
  void _prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) override;

  // ModuleUtilsMixin: additive masks in the model dtype, 0 to attend and finfo.min not to.
  at::Tensor get_extended_attention_mask(const at::Tensor& attention_mask, at::IntArrayRef input_shape) const;
  at::Tensor invert_attention_mask(const at::Tensor& encoder_attention_mask) const;
  // [heads] or [layers, heads] -> one [1, H, 1, 1]-broadcastable mask per layer (undefined when no head_mask).
  std::vector<at::Tensor> get_head_mask(const at::Tensor& head_mask, int64_t num_hidden_layers) const;

  std::shared_ptr<RobertaEmbeddings> embeddings;
  std::shared_ptr<RobertaEncoder> encoder;
  std::shared_ptr<RobertaPooler> pooler;  // null without add_pooling_layer
};

// Masked-LM head; its decoder bias is the head's `bias` parameter (one tensor, two names).
class RobertaLMHead : public nn::Module {
 public:
  explicit RobertaLMHead(const RobertaConfig& config);
  at::Tensor forward(const at::Tensor& features) const;
  // The bias follows the decoder's (after tying or resizing replaced it).
  void _tie_weights();
  std::shared_ptr<nn::Linear> dense, decoder;
  std::shared_ptr<nn::LayerNorm> layer_norm;
  at::Tensor bias;
};

class RobertaForCausalLM : public RobertaPreTrainedModel {
 public:
  explicit RobertaForCausalLM(std::shared_ptr<RobertaConfig> config, const std::string& prefix = "Roberta");
  static std::shared_ptr<RobertaForCausalLM> from_pretrained(const std::string& path,
                                                             const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return lm_head->decoder; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  void tie_weights() override;
  bool can_generate() const override { return true; }
  ModelInputs prepare_inputs_for_generation(const at::Tensor& input_ids, const ModelInputs& kwargs) override;

  std::shared_ptr<RobertaModel> roberta;
  std::shared_ptr<RobertaLMHead> lm_head;
};

class RobertaForMaskedLM : public RobertaPreTrainedModel {
 public:
  explicit RobertaForMaskedLM(std::shared_ptr<RobertaConfig> config, const std::string& prefix = "Roberta");
  static std::shared_ptr<RobertaForMaskedLM> from_pretrained(const std::string& path,
                                                             const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return lm_head->decoder; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  void tie_weights() override;

  std::shared_ptr<RobertaModel> roberta;
  std::shared_ptr<RobertaLMHead> lm_head;
};

class RobertaClassificationHead : public nn::Module {
 public:
  explicit RobertaClassificationHead(const RobertaConfig& config);
  at::Tensor forward(const at::Tensor& features) const;  // <s> token -> dense -> tanh -> out_proj
  std::shared_ptr<nn::Linear> dense, out_proj;
  double dropout;
};

class RobertaForSequenceClassification : public RobertaPreTrainedModel {
 public:
  explicit RobertaForSequenceClassification(std::shared_ptr<RobertaConfig> config,
                                            const std::string& prefix = "Roberta");
  static std::shared_ptr<RobertaForSequenceClassification> from_pretrained(const std::string& path,
                                                                           const FromPretrainedOptions& options = {});
  // labels: regression (num_labels == 1, MSE), single-label (integer labels, cross-entropy) or multi-label (float
  // labels, BCE with logits), chosen by config.problem_type or, when unset, as transformers infers and records it.
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<RobertaModel> roberta;
  std::shared_ptr<RobertaClassificationHead> classifier;
  int64_t num_labels;
};

// Inputs are [B, num_choices, T]; logits [B, num_choices].
class RobertaForMultipleChoice : public RobertaPreTrainedModel {
 public:
  explicit RobertaForMultipleChoice(std::shared_ptr<RobertaConfig> config, const std::string& prefix = "Roberta");
  static std::shared_ptr<RobertaForMultipleChoice> from_pretrained(const std::string& path,
                                                                   const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<RobertaModel> roberta;
  std::shared_ptr<nn::Linear> classifier;
  double dropout;
};

class RobertaForTokenClassification : public RobertaPreTrainedModel {
 public:
  explicit RobertaForTokenClassification(std::shared_ptr<RobertaConfig> config, const std::string& prefix = "Roberta");
  static std::shared_ptr<RobertaForTokenClassification> from_pretrained(const std::string& path,
                                                                        const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<RobertaModel> roberta;
  std::shared_ptr<nn::Linear> classifier;
  int64_t num_labels;
  double dropout;
};

// Outputs extra["start_logits"], extra["end_logits"] [B, T]; loss from extra["start_positions"/"end_positions"].
class RobertaForQuestionAnswering : public RobertaPreTrainedModel {
 public:
  explicit RobertaForQuestionAnswering(std::shared_ptr<RobertaConfig> config, const std::string& prefix = "Roberta");
  static std::shared_ptr<RobertaForQuestionAnswering> from_pretrained(const std::string& path,
                                                                      const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<RobertaModel> roberta;
  std::shared_ptr<nn::Linear> qa_outputs;
  int64_t num_labels;
};

}  // namespace transformers
