// RoBERTa, as transformers/models/roberta/{configuration,modeling}_roberta.py (4.40).
#pragma once

#include "transformers/models/bert.h"

namespace transformers {

// Same fields as BertConfig (configuration_roberta.py declares them again), RoBERTa's special tokens.
class RobertaConfig : public BertConfig {
 public:
  RobertaConfig() {
    vocab_size = 50265;
    pad_token_id = 1;
    bos_token_id = 0;
    eos_token_id = TokenIds{2};
  }
  std::string model_type() const override { return "roberta"; }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<RobertaConfig>(); }
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

// modeling_roberta.py's copies of the BERT encoder blocks ("Copied from transformers.models.bert"): one implementation.
using RobertaSelfAttention = BertSelfAttention;
using RobertaSelfOutput = BertSelfOutput;
using RobertaAttention = BertAttention;
using RobertaIntermediate = BertIntermediate;
using RobertaOutput = BertOutput;
using RobertaLayerOutput = BertLayerOutput;
using RobertaLayer = BertLayer;
using RobertaEncoder = BertEncoder;
using RobertaPooler = BertPooler;

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
