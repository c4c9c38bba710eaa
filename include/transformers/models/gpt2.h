// GPT-2, as transformers/models/gpt2/{configuration,modeling}_gpt2.py (4.40).
#pragma once

#include "transformers/modeling_utils.h"

namespace transformers {

class GPT2Config : public PretrainedConfig {
 public:
  GPT2Config() {
    bos_token_id = 50256;
    eos_token_id = TokenIds{50256};
  }
  std::string model_type() const override { return "gpt2"; }
  std::map<std::string, std::string> attribute_map() const override {
    return {{"hidden_size", "n_embd"},
            {"max_position_embeddings", "n_positions"},
            {"num_attention_heads", "n_head"},
            {"num_hidden_layers", "n_layer"}};
  }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<GPT2Config>(); }
  void visit(ConfigVisitor& v) override;
  void post_read(const std::string& source) override;

  int64_t vocab_size = 50257;
  int64_t n_positions = 1024;
  int64_t n_embd = 768;
  int64_t n_layer = 12;
  int64_t n_head = 12;
  std::optional<int64_t> n_inner;  // null -> 4 * n_embd
  std::string activation_function = "gelu_new";
  double resid_pdrop = 0.1;
  double embd_pdrop = 0.1;
  double attn_pdrop = 0.1;
  double layer_norm_epsilon = 1e-5;
  double initializer_range = 0.02;
  std::string summary_type = "cls_index";
  bool summary_use_proj = true;
  std::optional<std::string> summary_activation;
  bool summary_proj_to_labels = true;
  double summary_first_dropout = 0.1;
  bool scale_attn_weights = true;
  bool use_cache = true;
  bool scale_attn_by_inverse_layer_idx = false;
  bool reorder_and_upcast_attn = false;
};

// pytorch_utils.Conv1D (nn.h): the weight stored transposed, [nx (in), nf (out)], as in the checkpoints.
using nn::Conv1D;

// pytorch_utils.prune_conv1d_layer, in place: keeps entries `index` of the weight along `dim` (1: outputs, 0: inputs).
void prune_conv1d_layer(Conv1D& layer, const at::Tensor& index, int64_t dim = 1);

class GPT2Attention : public nn::Module {
 public:
  GPT2Attention(const GPT2Config& config, bool is_cross_attention = false, int64_t layer_idx = 0);
  void prune_heads(const std::vector<int64_t>& heads);
  // Self-attention appends its keys/values to `layer_past` (when given). Cross-attention (encoder_hidden_states
  // defined) uses encoder_attention_mask and is not cached, as transformers.
  // Returns (attn_output [B, T, E], attn_weights [B, H, T, S] or undefined).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& hidden_states, Cache* layer_past,
                                            const at::Tensor& attention_mask, const at::Tensor& head_mask,
                                            const at::Tensor& encoder_hidden_states,
                                            const at::Tensor& encoder_attention_mask, bool output_attentions) const;
  std::pair<at::Tensor, at::Tensor> _attn(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                          const at::Tensor& attention_mask, const at::Tensor& head_mask) const;
  std::pair<at::Tensor, at::Tensor> _upcast_and_reordered_attn(const at::Tensor& query, const at::Tensor& key,
                                                               const at::Tensor& value,
                                                               const at::Tensor& attention_mask,
                                                               const at::Tensor& head_mask) const;
  at::Tensor _split_heads(const at::Tensor& tensor) const;  // [B, T, H*D] -> [B, H, T, D]
  at::Tensor _merge_heads(const at::Tensor& tensor) const;  // [B, H, T, D] -> [B, T, H*D]

  std::shared_ptr<Conv1D> c_attn, q_attn, c_proj;  // q_attn only for cross-attention
  at::Tensor bias;         // non-persistent causal mask [1, 1, n_positions, n_positions]
  at::Tensor masked_bias;  // non-persistent, unused (as transformers)
  int64_t embed_dim, num_heads, head_dim, split_size, layer_idx;
  bool scale_attn_weights, is_cross_attention, scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn;
  double attn_dropout, resid_dropout;
  std::set<int64_t> pruned_heads;
};

class GPT2MLP : public nn::Module {
 public:
  GPT2MLP(int64_t intermediate_size, const GPT2Config& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  std::shared_ptr<Conv1D> c_fc, c_proj;
  nn::Activation act;
  double dropout;
};

struct GPT2BlockOutput {
  at::Tensor hidden_states, attentions, cross_attentions;  // weights undefined unless output_attentions
};

class GPT2Block : public nn::Module {
 public:
  GPT2Block(const GPT2Config& config, int64_t layer_idx);
  GPT2BlockOutput forward(const at::Tensor& hidden_states, Cache* layer_past, const at::Tensor& attention_mask,
                          const at::Tensor& head_mask, const at::Tensor& encoder_hidden_states,
                          const at::Tensor& encoder_attention_mask, bool output_attentions) const;
  std::shared_ptr<nn::LayerNorm> ln_1, ln_2, ln_cross_attn;  // ln_cross_attn only with add_cross_attention
  std::shared_ptr<GPT2Attention> attn, crossattention;
  std::shared_ptr<GPT2MLP> mlp;
};

class GPT2PreTrainedModel : public PreTrainedModel {
 public:
  GPT2PreTrainedModel(std::shared_ptr<GPT2Config> config, std::string class_name);
  const GPT2Config& cfg() const { return static_cast<const GPT2Config&>(*config); }
  void _init_weights(torch::nn::Module& module) override;
};

class GPT2Model : public GPT2PreTrainedModel {
 public:
  explicit GPT2Model(std::shared_ptr<GPT2Config> config);
  static std::shared_ptr<GPT2Model> from_pretrained(const std::string& path, const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return wte; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;
  void _prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) override;

  std::shared_ptr<nn::Embedding> wte, wpe;
  std::shared_ptr<nn::ModuleList<GPT2Block>> h;
  std::shared_ptr<nn::LayerNorm> ln_f;
  int64_t embed_dim;
  double drop;
};

class GPT2LMHeadModel : public GPT2PreTrainedModel {
 public:
  explicit GPT2LMHeadModel(std::shared_ptr<GPT2Config> config);
  static std::shared_ptr<GPT2LMHeadModel> from_pretrained(const std::string& path,
                                                          const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return lm_head; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  bool can_generate() const override { return true; }
  ModelInputs prepare_inputs_for_generation(const at::Tensor& input_ids, const ModelInputs& kwargs) override;

  std::shared_ptr<GPT2Model> transformer;
  std::shared_ptr<nn::Linear> lm_head;
};

// Scores the last non-padding token of each row (the last token when config.pad_token_id is unset).
class GPT2ForSequenceClassification : public GPT2PreTrainedModel {
 public:
  explicit GPT2ForSequenceClassification(std::shared_ptr<GPT2Config> config);
  static std::shared_ptr<GPT2ForSequenceClassification> from_pretrained(const std::string& path,
                                                                        const FromPretrainedOptions& options = {});
  // labels: regression / single_label_classification / multi_label_classification, by config.problem_type or
  // inferred and recorded as transformers does.
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<GPT2Model> transformer;
  std::shared_ptr<nn::Linear> score;
  int64_t num_labels;
};

class GPT2ForTokenClassification : public GPT2PreTrainedModel {
 public:
  explicit GPT2ForTokenClassification(std::shared_ptr<GPT2Config> config);
  static std::shared_ptr<GPT2ForTokenClassification> from_pretrained(const std::string& path,
                                                                     const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<GPT2Model> transformer;
  std::shared_ptr<nn::Linear> classifier;
  int64_t num_labels;
  double dropout;
};

}  // namespace transformers
