// PreTrainedModel, as transformers/modeling_utils.py (4.40): loading, saving, tying, init of missing weights.
// Families declare their traits in the constructor; this base class enforces them.
#pragma once

#include "transformers/cache_utils.h"
#include "transformers/checkpoint_files.h"
#include "transformers/config.h"
#include "transformers/distributed.h"
#include "transformers/generation_config.h"
#include "transformers/hub.h"
#include "transformers/nn.h"

#include <functional>
#include <optional>
#include <regex>

namespace transformers {

struct ModelOutput;
class HfQuantizer;

// The keyword arguments of a forward call. Families read the fields they support.
struct ModelInputs {
  at::Tensor input_ids, attention_mask, position_ids, inputs_embeds, token_type_ids, head_mask, labels;
  at::Tensor cache_position;
  std::shared_ptr<Cache> past_key_values;
  std::optional<bool> use_cache, output_attentions, output_hidden_states;
  // Compute logits only for the last N positions (0 = all), as later transformers' num_logits_to_keep.
  int64_t num_logits_to_keep = 0;
  // Encoder-decoder models and decoders with cross-attention.
  at::Tensor decoder_input_ids, decoder_attention_mask, decoder_inputs_embeds, decoder_head_mask, cross_attn_head_mask;
  at::Tensor encoder_hidden_states, encoder_attention_mask;
  std::shared_ptr<ModelOutput> encoder_outputs;  // precomputed (generate runs the encoder once)
  std::map<std::string, at::Tensor> extra;  // family-specific tensors, by their transformers argument name
};

// The union of transformers' ModelOutput dataclasses. Unset fields are undefined tensors / empty vectors.
struct ModelOutput {
  at::Tensor loss, logits, last_hidden_state, pooler_output;
  std::shared_ptr<Cache> past_key_values;
  std::vector<at::Tensor> hidden_states, attentions;
  // Encoder-decoder outputs (Seq2SeqLMOutput / Seq2SeqModelOutput) and cross-attention weights.
  at::Tensor encoder_last_hidden_state;
  std::vector<at::Tensor> encoder_hidden_states, encoder_attentions, decoder_hidden_states, decoder_attentions,
      cross_attentions;
  std::map<std::string, at::Tensor> extra;  // any other named output (start_logits, waveform, text_embeds, ...)
  // Every tensor under the fixture names: "logits", "hidden_states.0", "past_key_values.0.1", ...
  std::vector<std::pair<std::string, at::Tensor>> named_tensors() const;
};

struct LoadingInfo {
  std::vector<std::string> missing_keys, unexpected_keys;
  std::vector<std::string> mismatched_keys;  // "key: checkpoint [a, b] vs model [c, d]"
  std::vector<std::string> error_msgs;
};

struct FromPretrainedOptions {
  // "" (float32, as transformers without torch_dtype), "auto" (config.torch_dtype, else the checkpoint's),
  // "float32", "bfloat16", "float16" (computed in float32 on CPU: libtorch 1.13 lacks half kernels), "float64".
  std::string dtype;
  std::string variant;              // model.<variant>.safetensors
  std::string attn_implementation;  // "eager", "sdpa", ...; default: the config's, else eager
  bool ignore_mismatched_sizes = false;
  // Extra config.json overrides (kwargs of from_pretrained that are config attributes).
  json config_overrides = json::object();
  // A hub id instead of a folder: revision, cache_dir, token, local_files_only, force_download (hub.h).
  hub::HubOptions hub;
  // Quantize while loading (quantization.h): {"quant_method": "tfcpp_int8" | "tfcpp_int4", "group_size": 128,
  // "modules_to_not_convert": [...]}; a config.json `quantization_config` (a quantized checkpoint) is used otherwise.
  json quantization_config = nullptr;
  // device_map.h: "auto", "balanced", "balanced_low_0", "sequential", or {"module.prefix": "cpu" | "disk" | "meta"}.
  json device_map = nullptr;
  std::map<std::string, std::string> max_memory;  // device -> "200MB" / bytes; default: available RAM for "cpu"
  std::string offload_folder;                     // where "disk" weights not already in a safetensors file go
  // distributed.h: "auto" shards the model over the ranks of the process group by the family's declared plan; each
  // rank reads only its slice of each weight. "" loads the whole model.
  std::string tp_plan;
  // distributed.h: "auto" splits the decoder layers over the ranks into pipeline stages (the family's
  // base_model_pp_plan); each rank reads only its stage's weights.
  std::string pp_plan;
};

struct SavePretrainedOptions {
  std::string max_shard_size = "5GB";  // bytes as a number string, or "200MB", "5GB", "1GiB", ...
  std::string variant;
  bool save_config = true;
  std::string dtype;  // "" keeps the parameters' dtype
  // save_pretrained(dir, push_to_hub=True): then uploads the folder to repo_id (default: the folder's name).
  bool push_to_hub = false;
  std::string repo_id;
  hub::PushToHubOptions hub;
};

class PreTrainedModel : public nn::Module {
 public:
  explicit PreTrainedModel(std::shared_ptr<PretrainedConfig> config, std::string class_name);
  ~PreTrainedModel() override;

  std::shared_ptr<PretrainedConfig> config;
  GenerationConfig generation_config;
  std::string name_or_path;
  std::string class_name;  // "LlamaForCausalLM"

  // ---- Declared capabilities (class attributes in transformers) ----
  std::string base_model_prefix;
  std::string main_input_name = "input_ids";
  // Modules device maps never split. Unset (transformers' None): this class does not support device_map="auto";
  // an empty list supports it with no constraint (Camembert, the HiFi-GAN vocoder).
  std::optional<std::vector<std::string>> _no_split_modules;
  // Modules kept in float32 when the model is loaded or saved in float16 (T5's "wo"): a parameter is kept when one
  // of its dotted name's components is listed.
  std::vector<std::string> _keep_in_fp32_modules;
  std::vector<std::string> _keys_to_ignore_on_load_missing;     // regexes
  std::vector<std::string> _keys_to_ignore_on_load_unexpected;  // regexes
  std::vector<std::string> _tied_weights_keys;
  bool supports_gradient_checkpointing = false;
  bool _supports_sdpa = false;
  bool _supports_flash_attn_2 = false;
  // Legacy checkpoint names -> current names, applied to checkpoint keys on load (substring replace, in order).
  std::vector<std::pair<std::string, std::string>> checkpoint_key_renames{{"gamma", "weight"}, {"beta", "bias"}};
  // Tensor-parallel plan (distributed.h), as transformers' base_model_tp_plan / _tp_plan: module pattern
  // ("layers.*.mlp.up_proj", relative to the base model / to this model) -> "colwise", "rowwise", "colwise_rep"
  // (column-parallel, outputs gathered: the LM head) or "vocab" (embedding rows split by token id); attention modules
  // whose heads are split. _tp_state holds the applied plan.
  std::vector<std::pair<std::string, std::string>> base_model_tp_plan, _tp_plan;
  std::vector<distributed::TPAttentionPlan> _tp_attention;
  // Pipeline-parallel plan (distributed.h): base_model_pp_plan on the base model, _pp_plan (its head) on the head model.
  distributed::PPPlan base_model_pp_plan, _pp_plan;
  std::shared_ptr<void> _tp_state;

  // Warnings this instance already gave, by key (transformers' self.warnings_issued: warn once per model).
  std::map<std::string, bool> warnings_issued;

  // ---- Forward ----
  virtual ModelOutput forward(const ModelInputs& inputs) = 0;
  // Runs a named method of the fixture contract: "forward", or e.g. "get_text_features", "hifi_gan.forward".
  // Families with more entry points override this; ValueError names the supported methods otherwise.
  virtual ModelOutput call_method(const std::string& method, const ModelInputs& inputs);

  // ---- Embeddings and tying ----
  virtual std::shared_ptr<nn::Embedding> get_input_embeddings();
  virtual void set_input_embeddings(std::shared_ptr<nn::Embedding> value);
  virtual std::shared_ptr<nn::Linear> get_output_embeddings() { return nullptr; }
  virtual void set_output_embeddings(std::shared_ptr<nn::Linear> value);
  // Ties output to input embeddings when config.tie_word_embeddings (plus family-specific ties).
  virtual void tie_weights();
  // The model the prefix names (self.model for LlamaForCausalLM), or this for a base model.
  PreTrainedModel* base_model();

  // ---- Vocabulary ----
  // Resizes the input embeddings (and an untied output head) to `new_num_tokens` rows, rounded up to a multiple of
  // `pad_to_multiple_of`; old rows are copied, new rows initialised by _init_weights; config vocab_size updated and
  // weights re-tied. Both unset: returns the embeddings unchanged.
  virtual std::shared_ptr<nn::Embedding> resize_token_embeddings(
      std::optional<int64_t> new_num_tokens, std::optional<int64_t> pad_to_multiple_of = std::nullopt);

  // ---- Heads ----
  // Prunes {layer: [heads]} of the base model; the union is recorded in config.pruned_heads, and post_init re-applies
  // config.pruned_heads, so a saved pruned model loads with its pruned shapes.
  void prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune);
  // Family hook (transformers' _prune_heads on the base model): remove these heads from each layer's attention.
  virtual void _prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune);

  // ---- Attention and training ----
  // _autoset_attn_implementation: an explicit request wins (ValueError if this family does not support it);
  // otherwise sdpa where the family supports it and libtorch has a fused kernel (2.x), else eager.
  void set_attn_implementation(const std::string& requested);
  // Recompute each layer's activations in backward (ValueError if !supports_gradient_checkpointing).
  // use_cache is forced off while training with it.
  void gradient_checkpointing_enable();
  void gradient_checkpointing_disable();
  bool is_gradient_checkpointing() const { return gradient_checkpointing; }
  // Makes the input embeddings' output require grad, so checkpointed layers get gradients with frozen embeddings.
  void enable_input_require_grads();
  void disable_input_require_grads();
  bool gradient_checkpointing = false;

  // ---- Init ----
  // Weight init of one module (transformers' _init_weights), chosen by the family.
  virtual void _init_weights(torch::nn::Module& module) {}
  void init_weights();  // every module, then tie_weights
  void post_init();     // end of each family constructor: re-apply pruned heads, init weights, tie

  // ---- Model card ----
  // add_model_tags: kept (no duplicates) and written as a model card README.md by save_pretrained.
  void add_model_tags(const std::vector<std::string>& tags);
  std::vector<std::string> model_tags;

  // ---- Inputs (ModuleUtilsMixin) ----
  // Dummy inputs to do a forward pass (DUMMY_INPUTS [[7, 6, 0, 0, 1], [1, 2, 3, 0, 0], [0, 0, 0, 4, 5]]; families
  // with other entry points override it).
  virtual ModelInputs dummy_inputs() const;
  // [B, T] (or [B, T, S]) 1/0 mask -> additive [B, 1, T|1, S] mask in this model's dtype: 0 where attended, the
  // dtype's minimum where masked; causal on top when config.is_decoder.
  at::Tensor get_extended_attention_mask(const at::Tensor& attention_mask, at::IntArrayRef input_shape) const;
  // Encoder attention mask [B, S] or [B, T, S] -> additive [B, 1, 1|T, S] (dtype minimum where masked).
  at::Tensor invert_attention_mask(const at::Tensor& encoder_attention_mask) const;
  // A one-time warning when input_ids look padded (pad_token_id first or last) and no attention_mask was given.
  void warn_if_padding_and_no_attention_mask(const at::Tensor& input_ids, const at::Tensor& attention_mask) const;

  // ---- Introspection ----
  // floating_point_ops: 6 * tokens * parameters (forward + backward), embeddings excluded by default. Tokens are
  // counted on main_input_name; without it the estimate is 0 with a warning, once per model (warnings_issued).
  int64_t floating_point_ops(const ModelInputs& inputs, bool exclude_embeddings = true);
  int64_t num_parameters(bool only_trainable = false, bool exclude_embeddings = false) const;
  int64_t get_memory_footprint() const;  // bytes of parameters and buffers, tied counted once
  virtual bool can_generate() const { return false; }
  c10::ScalarType dtype() const;  // first floating-point parameter
  // Parameters and persistent buffers by checkpoint key. Tied weights appear under each name.
  std::vector<std::pair<std::string, at::Tensor>> state_dict() const;

  // ---- Loading / saving ----
  // Family hook, run by load_state_dict before checkpoint keys are matched: a family whose parameter layout depends
  // on how the checkpoint was saved (weight norm: weight_g/weight_v) adapts itself to `checkpoint` (keys renamed).
  virtual void _prepare_for_checkpoint(const std::vector<std::pair<std::string, at::Tensor>>& checkpoint) {}
  // Loads a checkpoint folder (config already applied) into this model; transformers' key semantics.
  LoadingInfo load_pretrained_weights(const std::string& dir, const FromPretrainedOptions& options);
  // Loads tensors by key, with the prefix rules of _load_pretrained_model. `source` names files in errors.
  LoadingInfo load_state_dict(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                              const std::string& source, bool ignore_mismatched_sizes = false,
                              bool init_missing = true);
  void save_pretrained(const std::string& dir, const SavePretrainedOptions& options = {});
  // PushToHubMixin.push_to_hub: saves to a temporary folder and commits it to repo_id (created if needed; hub.h).
  hub::CommitInfo push_to_hub(const std::string& repo_id, const hub::PushToHubOptions& options = {});

  // Generation hooks (families that can generate override these).
  virtual ModelInputs prepare_inputs_for_generation(const at::Tensor& input_ids, const ModelInputs& kwargs);
  // Encoder-decoder models: the encoder generate() runs once (get_encoder); null for other models.
  virtual std::shared_ptr<PreTrainedModel> get_encoder() { return nullptr; }
  // Beam search: selects the cache rows of the surviving beams (_reorder_cache; by default Cache.reorder_cache).
  virtual void _reorder_cache(Cache& past_key_values, const at::Tensor& beam_idx) {
    past_key_values.reorder_cache(beam_idx);
  }

  // The loading report of the last from_pretrained.
  LoadingInfo loading_info;

  // ---- Quantization (quantization.h) ----
  std::shared_ptr<HfQuantizer> hf_quantizer;
  bool is_quantized = false;
  std::string quantization_method;
  // Restores float Linear weights and drops config.quantization_config; ValueError if the model is not quantized.
  void dequantize();
  // A quantized model cannot change dtype or device (ValueError), as transformers' to()/half() on quantized models.
  using torch::nn::Module::to;
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;
  void half();

  // ---- Device maps (device_map.h) ----
  // The union of _no_split_modules over this model's submodules; ValueError naming the class when one that
  // PreTrainedModel subclasses lacks the declaration ("... does not support `device_map='<map>'`").
  std::vector<std::string> _get_no_split_modules(const std::string& device_map) const;
  // Module prefix -> device after from_pretrained(device_map=...), in module order.
  std::vector<std::pair<std::string, std::string>> hf_device_map;
  std::shared_ptr<void> _offload_state;  // disk offload hooks of this model, unregistered when it goes

 protected:
  // Families call this in their constructor for each registered submodule so the base can resolve the prefix.
  std::shared_ptr<torch::nn::Module> submodule(const std::string& name) const;
};

// torch.finfo(dtype).min: the additive value of a masked position.
double finfo_min(c10::ScalarType dtype);
// ModuleUtilsMixin.get_extended_attention_mask / invert_attention_mask with an explicit dtype and decoder flag
// (the members of PreTrainedModel use the model's dtype and config.is_decoder). ValueError for other ranks.
at::Tensor get_extended_attention_mask(const at::Tensor& attention_mask, at::IntArrayRef input_shape, bool is_decoder,
                                       c10::ScalarType dtype);
at::Tensor invert_attention_mask(const at::Tensor& encoder_attention_mask, c10::ScalarType dtype);

// ModuleUtilsMixin.get_head_mask: [heads] or [layers, heads] -> one broadcastable [1, H, 1, 1] mask per layer
// (undefined tensors when no mask). ValueError for other shapes.
std::vector<at::Tensor> get_head_mask(const at::Tensor& head_mask, int64_t num_hidden_layers, c10::ScalarType dtype);

// Builds a model of the registered class from a config; used by from_pretrained and the auto classes.
using ModelFactory = std::function<std::shared_ptr<PreTrainedModel>(std::shared_ptr<PretrainedConfig>)>;

// Reads config + weights from `path` into a model built by `factory`.
std::shared_ptr<PreTrainedModel> from_pretrained_with(const std::string& path, const std::string& class_name,
                                                      const ModelFactory& factory,
                                                      std::shared_ptr<PretrainedConfig> config,
                                                      const FromPretrainedOptions& options);

// "5GB" -> 5e9, "1GiB" -> 2^30, "200MB" -> 2e8, "12345" -> 12345. ValueError otherwise.
int64_t convert_file_size_to_int(const std::string& size);
// "float32"/"bfloat16"/... <-> scalar type; ValueError for unknown names.
c10::ScalarType dtype_from_name(const std::string& name);
std::string dtype_name(c10::ScalarType type);

// Thread-local switch: while alive, post_init skips weight init (from_pretrained fills weights afterwards).
class NoInitWeights {
 public:
  NoInitWeights();
  ~NoInitWeights();
  static bool active();

 private:
  bool previous_;
};

}  // namespace transformers
