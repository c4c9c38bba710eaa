// BERT, as transformers/models/bert/{configuration,modeling}_bert.py (4.40). The encoder blocks here (BertSelfAttention
// ... BertPooler) are the ones transformers' RoBERTa family copies ("Copied from transformers.models.bert"): RoBERTa and
// Camembert use these classes through aliases.
#pragma once

#include "transformers/modeling_utils.h"

#include <functional>

namespace transformers {

class BertConfig : public PretrainedConfig {
 public:
  BertConfig() { pad_token_id = 0; }
  std::string model_type() const override { return "bert"; }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<BertConfig>(); }
  void visit(ConfigVisitor& v) override;
  void post_read(const std::string& source) override;

  int64_t vocab_size = 30522;
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

class BertEmbeddings : public nn::Module {
 public:
  explicit BertEmbeddings(const BertConfig& config);
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids, const at::Tensor& position_ids,
                     const at::Tensor& inputs_embeds, int64_t past_key_values_length) const;

  std::shared_ptr<nn::Embedding> word_embeddings, position_embeddings, token_type_embeddings;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  at::Tensor position_ids, token_type_ids;  // non-persistent buffers [1, max_position_embeddings]
  std::string position_embedding_type;
  double dropout;
};

class BertSelfAttention : public nn::Module {
 public:
  BertSelfAttention(const BertConfig& config, const std::string& position_embedding_type = "");
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

class BertSelfOutput : public nn::Module {
 public:
  explicit BertSelfOutput(const BertConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor) const;
  std::shared_ptr<nn::Linear> dense;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  double dropout;
};

class BertAttention : public nn::Module {
 public:
  BertAttention(const BertConfig& config, const std::string& position_embedding_type = "");
  void prune_heads(const std::vector<int64_t>& heads);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                                            const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                                            const at::Tensor& encoder_attention_mask, Cache* past_key_value,
                                            int64_t layer_idx, bool output_attentions) const;
  std::shared_ptr<BertSelfAttention> self;
  std::shared_ptr<BertSelfOutput> output;
  std::set<int64_t> pruned_heads;
};

// The tensor-parallel plan of a BERT-style encoder under `encoder` (distributed.h): attention heads and the
// feed-forward split, outputs summed before each residual LayerNorm. RoBERTa/Camembert declare the same.
void declare_bert_encoder_tp_plan(PreTrainedModel& model);

class BertIntermediate : public nn::Module {
 public:
  explicit BertIntermediate(const BertConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  std::shared_ptr<nn::Linear> dense;
  nn::Activation intermediate_act_fn;
};

class BertOutput : public nn::Module {
 public:
  explicit BertOutput(const BertConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor) const;
  std::shared_ptr<nn::Linear> dense;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
  double dropout;
};

struct BertLayerOutput {
  at::Tensor hidden_states, self_attention, cross_attention;  // weights undefined unless output_attentions
};

class BertLayer : public nn::Module {
 public:
  BertLayer(const BertConfig& config, int64_t layer_idx);
  BertLayerOutput forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                          const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                          const at::Tensor& encoder_attention_mask, Cache* past_key_value,
                          bool output_attentions) const;
  std::shared_ptr<BertAttention> attention, crossattention;  // crossattention only with add_cross_attention
  std::shared_ptr<BertIntermediate> intermediate;
  std::shared_ptr<BertOutput> output;
  int64_t layer_idx;
  bool is_decoder, add_cross_attention;
};

class BertEncoder : public nn::Module {
 public:
  explicit BertEncoder(const BertConfig& config);
  // Fills last_hidden_state, hidden_states, attentions, cross_attentions of `out`. With gradient_checkpointing (and
  // no output_attentions) each layer's activations are recomputed in backward.
  void forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
               const std::vector<at::Tensor>& head_mask, const at::Tensor& encoder_hidden_states,
               const at::Tensor& encoder_attention_mask, Cache* past_key_values, bool output_attentions,
               bool output_hidden_states, bool gradient_checkpointing, ModelOutput& out) const;
  // BertModel._prune_heads: {layer: heads}, ValueError for a layer that does not exist.
  void prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune);
  std::shared_ptr<nn::ModuleList<BertLayer>> layer;
  bool add_cross_attention;
};

class BertPooler : public nn::Module {
 public:
  explicit BertPooler(const BertConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;  // tanh(dense(first token))
  std::shared_ptr<nn::Linear> dense;
};

// ---- Shared by the BERT-architecture families (BertModel.forward and its heads; RoBERTa copies them) ----
namespace bert {

// [heads] or [layers, heads] -> one [1, H, 1, 1]-broadcastable mask per layer (undefined when no head_mask).

// BertModel.forward once the embeddings are chosen: `embed(past_key_values_length)` runs the family's embeddings.
ModelOutput model_forward(const BertConfig& config, const ModelInputs& inputs, c10::ScalarType dtype,
                          bool gradient_checkpointing, const std::function<at::Tensor(int64_t)>& embed,
                          const BertEncoder& encoder, const BertPooler* pooler);

// Inputs of the base model for a head without cache or cross-attention.
ModelInputs encoder_inputs(const ModelInputs& in);
at::Tensor tensor_argument(const ModelInputs& in, const char* name);  // in.extra[name] or undefined
double classifier_dropout_of(const BertConfig& config);
using nn::dropout;
// ValueError unless every id lies in [0, size) (`limit` names the config field).
void check_ids_in_range(const at::Tensor& ids, int64_t size, const char* what, const char* limit);

// ForSequenceClassification: regression (MSE), single-label (cross-entropy) or multi-label (BCE with logits), by
// config.problem_type or, when unset, inferred and recorded as transformers does.
at::Tensor sequence_classification_loss(PretrainedConfig& config, const at::Tensor& logits, const at::Tensor& labels,
                                         int64_t num_labels);
// ForQuestionAnswering: mean of start/end cross-entropies, positions clamped to the sequence (ignored past it).
at::Tensor question_answering_loss(const at::Tensor& start_logits, const at::Tensor& end_logits,
                                   at::Tensor start_positions, at::Tensor end_positions);
// Flattens [B, C, ...] choices for ForMultipleChoice; returns num_choices.
int64_t flatten_multiple_choice(const ModelInputs& in, const std::string& class_name, ModelInputs& flat);

}  // namespace bert

class BertPreTrainedModel : public PreTrainedModel {
 public:
  BertPreTrainedModel(std::shared_ptr<BertConfig> config, std::string class_name);
  const BertConfig& cfg() const { return static_cast<const BertConfig&>(*config); }
  void _init_weights(torch::nn::Module& module) override;
};

class BertModel : public BertPreTrainedModel {
 public:
  explicit BertModel(std::shared_ptr<BertConfig> config, bool add_pooling_layer = true);
  static std::shared_ptr<BertModel> from_pretrained(const std::string& path, const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return embeddings->word_embeddings; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;
  void _prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) override;

  std::shared_ptr<BertEmbeddings> embeddings;
  std::shared_ptr<BertEncoder> encoder;
  std::shared_ptr<BertPooler> pooler;  // null without add_pooling_layer
};

class BertPredictionHeadTransform : public nn::Module {
 public:
  explicit BertPredictionHeadTransform(const BertConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  std::shared_ptr<nn::Linear> dense;
  nn::Activation transform_act_fn;
  std::shared_ptr<nn::LayerNorm> LayerNorm;
};

// The decoder's bias is the head's `bias` parameter (one tensor, two names).
class BertLMPredictionHead : public nn::Module {
 public:
  explicit BertLMPredictionHead(const BertConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  void _tie_weights();  // the bias follows the decoder's (after tying or resizing replaced it)
  std::shared_ptr<BertPredictionHeadTransform> transform;
  std::shared_ptr<nn::Linear> decoder;
  at::Tensor bias;
};

class BertOnlyMLMHead : public nn::Module {
 public:
  explicit BertOnlyMLMHead(const BertConfig& config);
  at::Tensor forward(const at::Tensor& sequence_output) const { return predictions->forward(sequence_output); }
  std::shared_ptr<BertLMPredictionHead> predictions;
};

class BertOnlyNSPHead : public nn::Module {
 public:
  explicit BertOnlyNSPHead(const BertConfig& config);
  at::Tensor forward(const at::Tensor& pooled_output) const { return seq_relationship->forward(pooled_output); }
  std::shared_ptr<nn::Linear> seq_relationship;
};

class BertPreTrainingHeads : public nn::Module {
 public:
  explicit BertPreTrainingHeads(const BertConfig& config);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& sequence_output, const at::Tensor& pooled_output) const;
  std::shared_ptr<BertLMPredictionHead> predictions;
  std::shared_ptr<nn::Linear> seq_relationship;
};

// Outputs extra["prediction_logits"] [B, T, V] and extra["seq_relationship_logits"] [B, 2]; loss from labels and
// extra["next_sentence_label"].
class BertForPreTraining : public BertPreTrainedModel {
 public:
  explicit BertForPreTraining(std::shared_ptr<BertConfig> config);
  static std::shared_ptr<BertForPreTraining> from_pretrained(const std::string& path,
                                                             const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return cls->predictions->decoder; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  void tie_weights() override;
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<BertPreTrainingHeads> cls;
};

class BertLMHeadModel : public BertPreTrainedModel {
 public:
  explicit BertLMHeadModel(std::shared_ptr<BertConfig> config);
  static std::shared_ptr<BertLMHeadModel> from_pretrained(const std::string& path,
                                                          const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return cls->predictions->decoder; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  void tie_weights() override;
  bool can_generate() const override { return true; }
  ModelInputs prepare_inputs_for_generation(const at::Tensor& input_ids, const ModelInputs& kwargs) override;
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<BertOnlyMLMHead> cls;
};

class BertForMaskedLM : public BertPreTrainedModel {
 public:
  explicit BertForMaskedLM(std::shared_ptr<BertConfig> config);
  static std::shared_ptr<BertForMaskedLM> from_pretrained(const std::string& path,
                                                          const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return cls->predictions->decoder; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  void tie_weights() override;
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<BertOnlyMLMHead> cls;
};

// logits [B, 2]; loss from labels (or the deprecated extra["next_sentence_label"]).
class BertForNextSentencePrediction : public BertPreTrainedModel {
 public:
  explicit BertForNextSentencePrediction(std::shared_ptr<BertConfig> config);
  static std::shared_ptr<BertForNextSentencePrediction> from_pretrained(const std::string& path,
                                                                        const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<BertOnlyNSPHead> cls;
};

class BertForSequenceClassification : public BertPreTrainedModel {
 public:
  explicit BertForSequenceClassification(std::shared_ptr<BertConfig> config);
  static std::shared_ptr<BertForSequenceClassification> from_pretrained(const std::string& path,
                                                                        const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<nn::Linear> classifier;
  int64_t num_labels;
  double dropout;
};

// Inputs are [B, num_choices, T]; logits [B, num_choices].
class BertForMultipleChoice : public BertPreTrainedModel {
 public:
  explicit BertForMultipleChoice(std::shared_ptr<BertConfig> config);
  static std::shared_ptr<BertForMultipleChoice> from_pretrained(const std::string& path,
                                                                const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<nn::Linear> classifier;
  double dropout;
};

class BertForTokenClassification : public BertPreTrainedModel {
 public:
  explicit BertForTokenClassification(std::shared_ptr<BertConfig> config);
  static std::shared_ptr<BertForTokenClassification> from_pretrained(const std::string& path,
                                                                     const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<nn::Linear> classifier;
  int64_t num_labels;
  double dropout;
};

// Outputs extra["start_logits"], extra["end_logits"] [B, T]; loss from extra["start_positions"/"end_positions"].
class BertForQuestionAnswering : public BertPreTrainedModel {
 public:
  explicit BertForQuestionAnswering(std::shared_ptr<BertConfig> config);
  static std::shared_ptr<BertForQuestionAnswering> from_pretrained(const std::string& path,
                                                                   const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<BertModel> bert;
  std::shared_ptr<nn::Linear> qa_outputs;
  int64_t num_labels;
};

}  // namespace transformers
