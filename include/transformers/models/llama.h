// Llama, as transformers/models/llama/{configuration,modeling}_llama.py (4.40).
#pragma once

#include "transformers/attention.h"
#include "transformers/modeling_utils.h"

namespace transformers {

class LlamaConfig : public PretrainedConfig {
 public:
  LlamaConfig() {
    bos_token_id = 1;
    eos_token_id = TokenIds{2};
    tie_word_embeddings = false;
  }
  std::string model_type() const override { return "llama"; }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<LlamaConfig>(); }
  void visit(ConfigVisitor& v) override;
  void post_read(const std::string& source) override;

  int64_t vocab_size = 32000;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  std::optional<int64_t> num_key_value_heads;  // null -> num_attention_heads
  std::string hidden_act = "silu";
  int64_t max_position_embeddings = 2048;
  double initializer_range = 0.02;
  double rms_norm_eps = 1e-6;
  bool use_cache = true;
  int64_t pretraining_tp = 1;
  double rope_theta = 10000.0;
  json rope_scaling = nullptr;  // {"type": "linear"|"dynamic", "factor": > 1}
  bool attention_bias = false;
  double attention_dropout = 0.0;

  int64_t kv_heads() const { return num_key_value_heads.value_or(num_attention_heads); }
};

class LlamaRMSNorm : public nn::Module {
 public:
  LlamaRMSNorm(int64_t hidden_size, double eps);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  at::Tensor weight;
  double variance_epsilon;
};

// Rotary embedding: default, "linear" (positions / factor) and "dynamic" (NTK base rescaled past max positions).
class LlamaRotaryEmbedding : public nn::Module {
 public:
  LlamaRotaryEmbedding(int64_t dim, int64_t max_position_embeddings, double base, std::string scaling_type,
                       double scaling_factor);
  // position_ids [B, T] -> (cos, sin) [B, T, dim] in x's dtype.
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& position_ids);

  int64_t dim, max_position_embeddings;
  double base;
  std::string scaling_type;  // "", "linear", "dynamic"
  double scaling_factor;
  at::Tensor inv_freq;  // float32, non-persistent
};

class LlamaMLP : public nn::Module {
 public:
  explicit LlamaMLP(const LlamaConfig& config);
  at::Tensor forward(const at::Tensor& x) const;
  std::shared_ptr<nn::Linear> gate_proj, up_proj, down_proj;
  nn::Activation act_fn;
  int64_t pretraining_tp;
};

class LlamaAttention : public nn::Module {
 public:
  LlamaAttention(const LlamaConfig& config, int64_t layer_idx);
  // Returns (attn_output, attn_weights or undefined).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                                            const at::Tensor& position_ids, Cache* past_key_value,
                                            bool output_attentions);
  std::shared_ptr<nn::Linear> q_proj, k_proj, v_proj, o_proj;
  std::shared_ptr<LlamaRotaryEmbedding> rotary_emb;
  const LlamaConfig* config;  // owned by the model; _attn_implementation is read per call (it can be switched)
  int64_t layer_idx, hidden_size, num_heads, head_dim, num_key_value_heads, num_key_value_groups;
  double attention_dropout;
};

class LlamaDecoderLayer : public nn::Module {
 public:
  LlamaDecoderLayer(const LlamaConfig& config, int64_t layer_idx);
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& hidden_states, const at::Tensor& attention_mask,
                                            const at::Tensor& position_ids, Cache* past_key_value,
                                            bool output_attentions);
  std::shared_ptr<LlamaAttention> self_attn;
  std::shared_ptr<LlamaMLP> mlp;
  std::shared_ptr<LlamaRMSNorm> input_layernorm, post_attention_layernorm;
  bool pipeline_skip = false;  // another rank's pipeline stage (distributed.h)
};

class LlamaPreTrainedModel : public PreTrainedModel {
 public:
  LlamaPreTrainedModel(std::shared_ptr<LlamaConfig> config, std::string class_name);
  const LlamaConfig& cfg() const { return static_cast<const LlamaConfig&>(*config); }
  void _init_weights(torch::nn::Module& module) override;
};

class LlamaModel : public LlamaPreTrainedModel {
 public:
  explicit LlamaModel(std::shared_ptr<LlamaConfig> config);
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return embed_tokens; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;
  // _update_causal_mask: additive float mask [B, 1, T, target_length], or undefined.
  at::Tensor update_causal_mask(const at::Tensor& attention_mask, const at::Tensor& input_tensor,
                                const at::Tensor& cache_position, int64_t past_seen_tokens) const;

  std::shared_ptr<nn::Embedding> embed_tokens;
  std::shared_ptr<nn::ModuleList<LlamaDecoderLayer>> layers;
  std::shared_ptr<LlamaRMSNorm> norm;
};

class LlamaForCausalLM : public LlamaPreTrainedModel {
 public:
  explicit LlamaForCausalLM(std::shared_ptr<LlamaConfig> config);
  static std::shared_ptr<LlamaForCausalLM> from_pretrained(const std::string& path,
                                                           const FromPretrainedOptions& options = {});
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return model->embed_tokens; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override { model->set_input_embeddings(value); }
  std::shared_ptr<nn::Linear> get_output_embeddings() override { return lm_head; }
  void set_output_embeddings(std::shared_ptr<nn::Linear> value) override;
  bool can_generate() const override { return true; }
  ModelInputs prepare_inputs_for_generation(const at::Tensor& input_ids, const ModelInputs& kwargs) override;

  std::shared_ptr<LlamaModel> model;
  std::shared_ptr<nn::Linear> lm_head;
};

}  // namespace transformers
