// CLVP, as transformers/models/clvp/{configuration,modeling,feature_extraction}_clvp.py (4.40), with the parts of
// transformers/audio_utils.py the feature extractor uses.
#pragma once

#include "transformers/generation.h"
#include "transformers/modeling_utils.h"

#include <array>

namespace transformers {

// ---- configuration_clvp.py ----

class ClvpEncoderConfig : public PretrainedConfig {
 public:
  ClvpEncoderConfig() {
    bos_token_id = 255;
    eos_token_id = TokenIds{0};
  }
  std::string model_type() const override { return "clvp_encoder"; }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<ClvpEncoderConfig>(); }
  void visit(ConfigVisitor& v) override;

  int64_t vocab_size = 256;
  int64_t hidden_size = 768;
  int64_t intermediate_size = 1536;
  int64_t projection_dim = 768;
  int64_t num_hidden_layers = 20;
  int64_t num_attention_heads = 12;
  std::string hidden_act = "gelu";
  double layer_norm_eps = 1e-5;
  double attention_dropout = 0.1;
  double dropout = 0.1;
  bool use_rotary_embedding = true;
  bool use_attention_bias = false;
  std::string summary_type = "mean";
  double initializer_factor = 1.0;
};

class ClvpDecoderConfig : public PretrainedConfig {
 public:
  ClvpDecoderConfig() {
    bos_token_id = 8192;
    eos_token_id = TokenIds{8193};
  }
  std::string model_type() const override { return "clvp_decoder"; }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<ClvpDecoderConfig>(); }
  void visit(ConfigVisitor& v) override;

  int64_t vocab_size = 8194;
  int64_t max_position_embeddings = 608;
  int64_t max_text_tokens = 404;
  int64_t hidden_size = 1024;
  int64_t num_hidden_layers = 30;
  int64_t num_attention_heads = 16;
  std::optional<int64_t> n_inner;  // null -> 4 * hidden_size
  int64_t num_mel_attn_blocks = 6;
  std::string activation_function = "gelu_new";
  double resid_pdrop = 0.1;
  double embd_pdrop = 0.1;
  double attention_dropout = 0.1;
  double layer_norm_epsilon = 1e-5;
  double initializer_range = 0.02;
  std::string summary_type = "cls_index";
  bool summary_use_proj = true;
  std::optional<std::string> summary_activation;
  bool summary_proj_to_labels = true;
  double summary_first_dropout = 0.1;
  bool use_cache = true;
  int64_t feature_size = 80;
  bool use_attention_bias = true;
  double initializer_factor = 1.0;
  std::vector<int64_t> decoder_fixing_codes{83, 45, 45, 248};

  int64_t decoder_eos_token_id() const;  // eos_token_id as one id (fix_speech_decoder_output)
};

// Composition of a text encoder, a speech encoder and the speech decoder config. config.json nests each sub-config
// as its full to_dict() (transformers' is_composition = True).
class ClvpConfig : public PretrainedConfig {
 public:
  ClvpConfig()
      : text_config(std::make_shared<ClvpEncoderConfig>()),
        speech_config(std::make_shared<ClvpEncoderConfig>()),
        decoder_config(std::make_shared<ClvpDecoderConfig>()) {}
  std::string model_type() const override { return "clvp"; }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<ClvpConfig>(); }
  void visit(ConfigVisitor& v) override;
  void post_read(const std::string& source) override;
  // ClvpConfig.from_sub_model_configs
  static std::shared_ptr<ClvpConfig> from_sub_model_configs(const ClvpEncoderConfig& text_config,
                                                            const ClvpEncoderConfig& speech_config,
                                                            const ClvpDecoderConfig& decoder_config);

  std::shared_ptr<ClvpEncoderConfig> text_config, speech_config;
  std::shared_ptr<ClvpDecoderConfig> decoder_config;
  int64_t projection_dim = 768;
  double logit_scale_init_value = 2.6592;
  double initializer_factor = 1.0;

 private:
  std::array<json, 3> sub_config_dicts_;  // read by visit, turned into configs by post_read
};

// ---- Layers that torch / transformers provide in Python ----


// torch.nn.Conv1d (stride 1, no padding): weight [out, in, kernel_size].
class ClvpConv1d : public nn::Module {
 public:
  ClvpConv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size);
  at::Tensor forward(const at::Tensor& x) const;  // [B, in, T] -> [B, out, T - kernel_size + 1]
  at::Tensor weight, bias;
};

// torch.nn.GroupNorm (affine).
class ClvpGroupNorm : public nn::Module {
 public:
  ClvpGroupNorm(int64_t num_groups, int64_t num_channels, double eps);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t num_groups;
  double eps;
  at::Tensor weight, bias;
};

// modeling_utils.SequenceSummary: "last", "first", "mean" or "cls_index" pooling, then optional projection
// (`summary`, a Linear) and activation. Dropouts are identity outside training.
class ClvpSequenceSummary : public nn::Module {
 public:
  explicit ClvpSequenceSummary(const PretrainedConfig& config, int64_t hidden_size);
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& cls_index = {}) const;
  std::string summary_type;
  std::shared_ptr<nn::Linear> summary;  // null: Identity
  nn::Activation activation = nullptr;  // null: Identity
  double first_dropout = 0.0, last_dropout = 0.0;
};

// ---- modeling_clvp.py ----

class ClvpRMSNorm : public nn::Module {
 public:
  ClvpRMSNorm(int64_t hidden_size, double eps = 1e-6);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  at::Tensor weight;
  double variance_epsilon;
};

// Rotary embedding over the first max(projection_dim / (2 * heads), 32) channels of each head.
class ClvpRotaryPositionalEmbedding : public nn::Module {
 public:
  explicit ClvpRotaryPositionalEmbedding(const ClvpEncoderConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;  // [B, T, C] -> [1, T, dim]
  at::Tensor inv_freq;  // persistent buffer (in the checkpoint)
};

// Multi-headed attention with optional partial rotary embedding (applied to query, key and value) and KV cache.
class ClvpSelfAttention : public nn::Module {
 public:
  // `embed_dim`, `num_heads`, `dropout`, `use_attention_bias` from a ClvpEncoderConfig or ClvpDecoderConfig.
  ClvpSelfAttention(int64_t embed_dim, int64_t num_heads, double dropout, bool use_attention_bias);
  struct Output {
    at::Tensor attn_output, attn_weights;  // attn_weights only with output_attentions
  };
  // hidden_states [B, T, C]; rotary_pos_emb [1, T, dim]; attention_mask additive [B, 1, T, S]; position_ids [1|B, T].
  // past_key_value: the layer's cache entry (`layer_idx`), extended in place with this step's keys/values.
  Output forward(const at::Tensor& hidden_states, const at::Tensor& rotary_pos_emb = {},
                 const at::Tensor& attention_mask = {}, const at::Tensor& position_ids = {},
                 Cache* past_key_value = nullptr, int64_t layer_idx = 0, const at::Tensor& head_mask = {},
                 bool output_attentions = false) const;
  int64_t embed_dim, num_heads, head_dim;
  double scale, dropout;
  std::shared_ptr<nn::Linear> k_proj, v_proj, q_proj, out_proj;
};

// Gated linear unit: the second half of proj's output, activated, gates the first half.
class ClvpGatedLinearUnit : public nn::Module {
 public:
  explicit ClvpGatedLinearUnit(const ClvpEncoderConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  nn::Activation activation_fn;
  std::shared_ptr<nn::Linear> proj;
};

class ClvpEncoderMLP : public nn::Module {
 public:
  explicit ClvpEncoderMLP(const ClvpEncoderConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  ClvpEncoderConfig config;  // a copy: _init_weights reads hidden_size and num_hidden_layers from it
  std::shared_ptr<ClvpGatedLinearUnit> fc1;
  std::shared_ptr<nn::Linear> fc2;
  double dropout;
};

class ClvpEncoderLayer : public nn::Module {
 public:
  explicit ClvpEncoderLayer(const ClvpEncoderConfig& config);
  // Returns the layer's output hidden states (in attn_output) and its attention weights.
  ClvpSelfAttention::Output forward(const at::Tensor& hidden_states, const at::Tensor& rotary_pos_emb,
                                    const at::Tensor& attention_mask, const at::Tensor& position_ids,
                                    bool output_attentions) const;
  std::shared_ptr<ClvpSelfAttention> self_attn;
  std::shared_ptr<ClvpEncoderMLP> mlp;
  std::shared_ptr<ClvpRMSNorm> input_rmsnorm, post_attention_rmsnorm;
};

// GPT-2 MLP: c_fc, activation, c_proj, dropout.
class ClvpDecoderMLP : public nn::Module {
 public:
  ClvpDecoderMLP(int64_t intermediate_size, const ClvpDecoderConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;
  std::shared_ptr<nn::Conv1D> c_fc, c_proj;
  nn::Activation act;
  double dropout;
};

class ClvpDecoderLayer : public nn::Module {
 public:
  explicit ClvpDecoderLayer(const ClvpDecoderConfig& config);
  // Returns the layer's output hidden states (in attn_output) and its attention weights.
  ClvpSelfAttention::Output forward(const at::Tensor& hidden_states, Cache* past_key_value, int64_t layer_idx,
                                    const at::Tensor& attention_mask, const at::Tensor& position_ids,
                                    const at::Tensor& head_mask, bool output_attentions) const;
  std::shared_ptr<nn::LayerNorm> input_layernorm, post_attention_layernorm;
  std::shared_ptr<ClvpSelfAttention> attn;
  std::shared_ptr<ClvpDecoderMLP> mlp;
};

// Log-mel spectrogram + text tokens -> conditioning embeddings [B, 1 + T + 2, decoder hidden] for the decoder.
class ClvpConditioningEncoder : public nn::Module {
 public:
  explicit ClvpConditioningEncoder(const ClvpConfig& config);
  static int64_t compute_groupnorm_groups(int64_t channels, int64_t groups = 32);
  // input_features [B, feature_size, frames]; input_ids [B, T]; attention_mask [B, T] (default all ones).
  at::Tensor forward(const at::Tensor& input_features, const at::Tensor& input_ids,
                     const at::Tensor& inputs_embeds = {}, const at::Tensor& attention_mask = {}) const;

  std::shared_ptr<ClvpEncoderConfig> text_config;
  std::shared_ptr<ClvpDecoderConfig> decoder_config;
  std::shared_ptr<nn::Embedding> text_token_embedding, text_position_embedding;
  std::shared_ptr<ClvpConv1d> mel_conv;
  std::shared_ptr<nn::ModuleList<ClvpGroupNorm>> group_norms;
  std::shared_ptr<nn::ModuleList<ClvpSelfAttention>> mel_attn_blocks;
  bool gradient_checkpointing = false;  // set by the owning model (its gradient_checkpointing_enable)
};

// _pad_extra_bos_eos_tokens: bos at the start, eos where the first `pad_token_id` is (else at the end); the mask
// grows on the left by one per added token. Returns (input_ids, attention_mask).
std::pair<at::Tensor, at::Tensor> _pad_extra_bos_eos_tokens(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                                            int64_t pad_token_id = 0, int64_t bos_token_id = 255,
                                                            int64_t eos_token_id = 0, bool add_bos_token = true,
                                                            bool add_eos_token = true);

class ClvpPreTrainedModel : public PreTrainedModel {
 public:
  ClvpPreTrainedModel(std::shared_ptr<PretrainedConfig> config, std::string class_name);
  void _init_weights(torch::nn::Module& module) override;
};

// Text or speech encoder. Outputs: extra["embeds"] (projection of the pooled output), last_hidden_state,
// pooler_output, hidden_states, attentions.
class ClvpEncoder : public ClvpPreTrainedModel {
 public:
  explicit ClvpEncoder(std::shared_ptr<ClvpEncoderConfig> config);
  static std::shared_ptr<ClvpEncoder> from_pretrained(const std::string& path, const FromPretrainedOptions& options = {});
  const ClvpEncoderConfig& cfg() const { return static_cast<const ClvpEncoderConfig&>(*config); }
  // input_ids or inputs_embeds, attention_mask, position_ids.
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return token_embedding; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;

  std::shared_ptr<nn::Embedding> token_embedding;
  std::shared_ptr<ClvpRotaryPositionalEmbedding> rotary_pos_emb;  // null without use_rotary_embedding
  std::shared_ptr<nn::ModuleList<ClvpEncoderLayer>> layers;
  std::shared_ptr<ClvpSequenceSummary> sequence_summary;
  std::shared_ptr<nn::LayerNorm> final_layer_norm;
  std::shared_ptr<nn::Linear> projection;
};

// GPT-2-like decoder stack (input and position embeddings, layers, final layer norm).
class ClvpDecoder : public ClvpPreTrainedModel {
 public:
  explicit ClvpDecoder(std::shared_ptr<ClvpDecoderConfig> config);
  const ClvpDecoderConfig& cfg() const { return static_cast<const ClvpDecoderConfig&>(*config); }
  // input_ids or inputs_embeds, attention_mask, token_type_ids, position_ids, head_mask, past_key_values, use_cache.
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return input_embeds_layer; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override;

  std::shared_ptr<nn::Embedding> input_embeds_layer, position_embeds_layer;
  std::shared_ptr<nn::ModuleList<ClvpDecoderLayer>> layers;
  std::shared_ptr<nn::LayerNorm> layer_norm;
};

class ClvpModel : public ClvpPreTrainedModel {
 public:
  explicit ClvpModel(std::shared_ptr<ClvpDecoderConfig> config);
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return decoder->input_embeds_layer; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override { decoder->set_input_embeddings(value); }
  std::shared_ptr<ClvpDecoder> decoder;
};

// The speech decoder with its language modelling head. Its lm_head is not tied to the input embeddings
// (transformers defines no get_output_embeddings for it).
class ClvpForCausalLM : public ClvpPreTrainedModel {
 public:
  explicit ClvpForCausalLM(std::shared_ptr<ClvpDecoderConfig> config);
  static std::shared_ptr<ClvpForCausalLM> from_pretrained(const std::string& path,
                                                          const FromPretrainedOptions& options = {});
  const ClvpDecoderConfig& cfg() const { return static_cast<const ClvpDecoderConfig&>(*config); }
  ModelOutput forward(const ModelInputs& inputs) override;
  std::shared_ptr<nn::Embedding> get_input_embeddings() override { return model->decoder->input_embeds_layer; }
  void set_input_embeddings(std::shared_ptr<nn::Embedding> value) override { model->decoder->set_input_embeddings(value); }
  bool can_generate() const override { return true; }
  // extra["conditioning_embeds"] marks conditioned generation: after the first step the fed token's position is the
  // number of ids so far, as transformers does.
  ModelInputs prepare_inputs_for_generation(const at::Tensor& input_ids, const ModelInputs& kwargs) override;
  // The conditioning part of _prepare_model_inputs: appends the mel start (bos) token embedding and subtracts the
  // position embeddings the first forward adds back. Returns (inputs_embeds [B, T + 1, C], input_ids [B, 1] of bos).
  std::pair<at::Tensor, at::Tensor> prepare_conditioning_inputs(const at::Tensor& conditioning_embeds) const;

  std::shared_ptr<ClvpModel> model;
  std::shared_ptr<nn::LayerNorm> final_norm;
  std::shared_ptr<nn::Linear> lm_head;
};

// Text encoder, speech encoder, conditioning encoder and speech decoder. forward ranks the decoder's argmax speech
// tokens against the text; generate() samples speech ids with the decoder and ranks them (CustomGenerate).
class ClvpModelForConditionalGeneration : public ClvpPreTrainedModel, public CustomGenerate {
 public:
  explicit ClvpModelForConditionalGeneration(std::shared_ptr<ClvpConfig> config);
  static std::shared_ptr<ClvpModelForConditionalGeneration> from_pretrained(const std::string& path,
                                                                            const FromPretrainedOptions& options = {});
  const ClvpConfig& cfg() const { return static_cast<const ClvpConfig&>(*config); }

  // input_ids, extra["input_features"], extra["conditioning_encoder_inputs_embeds"],
  // extra["text_encoder_inputs_embeds"], attention_mask, extra["return_loss"] (bool scalar), output_hidden_states.
  // Outputs (extra): logits_per_speech, logits_per_text, text_embeds, speech_embeds, text_model_output,
  // speech_model_output, text_encoder_hidden_states.N, speech_encoder_hidden_states.N; decoder_hidden_states; loss.
  ModelOutput forward(const ModelInputs& inputs) override;
  // "forward", "get_text_features" (-> text_embeds), "get_speech_features" (-> speech_embeds).
  ModelOutput call_method(const std::string& method, const ModelInputs& inputs) override;
  bool can_generate() const override { return true; }

  // Replaces decoder eos tokens and fills the rest of each stopped sequence with decoder_fixing_codes; drops the
  // leading bos column.
  at::Tensor fix_speech_decoder_output(const at::Tensor& speech_ids) const;
  // Projected pooled text encoder output, not normalised. input_ids or text_encoder_inputs_embeds.
  at::Tensor get_text_features(const at::Tensor& input_ids, const at::Tensor& text_encoder_inputs_embeds = {},
                               const at::Tensor& attention_mask = {});
  // From speech_ids, or (without them) from speech ids generated for input_ids + input_features.
  at::Tensor get_speech_features(const at::Tensor& speech_ids, const at::Tensor& input_ids = {},
                                 const at::Tensor& input_features = {}, const at::Tensor& attention_mask = {},
                                 const GenerationConfig* generation_config = nullptr);

  // ClvpModelForConditionalGeneration.generate. GenerateOutput: sequences (the decoder's raw ids, bos first) and
  // extra speech_ids, logits_per_speech, logits_per_text, text_embeds, speech_embeds, text_model_output,
  // speech_model_output (+ text/speech_encoder_hidden_states.N and decoder hidden states per step
  // with output_hidden_states).
  GenerateOutput generate(const at::Tensor& input_ids, const at::Tensor& input_features,
                          const at::Tensor& attention_mask, const GenerationConfig& generation_config,
                          std::optional<int64_t> pad_to_max_mel_tokens = std::nullopt,
                          std::optional<bool> output_hidden_states = std::nullopt, const TokenCallback& streamer = {});
  // CustomGenerate: what generate(model, input_ids, config, kwargs) runs. kwargs: extra["input_features"],
  // attention_mask, extra["pad_to_max_mel_tokens"] (integer scalar), output_hidden_states.
  GenerateOutput generate(const at::Tensor& input_ids, const GenerationConfig& config, const ModelInputs& model_kwargs,
                          const TokenCallback& streamer) override;

  std::shared_ptr<ClvpConditioningEncoder> conditioning_encoder;
  std::shared_ptr<ClvpForCausalLM> speech_decoder_model;
  std::shared_ptr<ClvpEncoder> text_encoder_model, speech_encoder_model;
  at::Tensor logit_scale;  // scalar
};

// ---- audio_utils.py (the parts ClvpFeatureExtractor uses) ----

namespace audio_utils {

// "htk", "kaldi" or "slaney"; ValueError otherwise.
double hertz_to_mel(double freq, const std::string& mel_scale = "htk");
double mel_to_hertz(double mels, const std::string& mel_scale = "htk");
// [num_frequency_bins, num_mel_filters] float64 triangular filters; norm "" or "slaney".
at::Tensor mel_filter_bank(int64_t num_frequency_bins, int64_t num_mel_filters, double min_frequency,
                           double max_frequency, int64_t sampling_rate, const std::string& norm = "",
                           const std::string& mel_scale = "htk", bool triangularize_in_mel_space = false);
// "boxcar", "hamming", "hann", "povey"; float64 [window_length] (zero-padded to frame_length if given).
at::Tensor window_function(int64_t window_length, const std::string& name = "hann", bool periodic = true,
                           std::optional<int64_t> frame_length = std::nullopt, bool center = true);
// Power (or amplitude) spectrogram of one waveform [length] with centre reflect padding, optionally through mel
// filters [num_frequency_bins, num_mel_filters] with floor mel_floor: float64 [bins or mel filters, frames]. Frames
// are computed in float64 and stored as complex64 before the magnitude, as numpy does there.
at::Tensor spectrogram(const at::Tensor& waveform, const at::Tensor& window, int64_t frame_length, int64_t hop_length,
                       double power = 1.0, const at::Tensor& mel_filters = {}, double mel_floor = 1e-10);

}  // namespace audio_utils

// ---- feature_extraction_clvp.py ----

class ClvpFeatureExtractor {
 public:
  ClvpFeatureExtractor();
  // preprocessor_config.json (or a path to such a file). ConfigError if missing or malformed.
  static ClvpFeatureExtractor from_pretrained(const std::string& path);
  static ClvpFeatureExtractor from_dict(const json& dict, const std::string& source = "<dict>");
  json to_dict() const;
  void save_pretrained(const std::string& dir) const;

  // log(max(mel spectrogram, 1e-5)) [feature_size, frames] float64, divided by mel_norms when set.
  at::Tensor _np_extract_fbank_features(const at::Tensor& waveform) const;

  struct CallOptions {
    std::optional<int64_t> sampling_rate;  // ValueError when it differs from this->sampling_rate
    bool truncation = true;
    std::optional<int64_t> pad_to_multiple_of;
    bool return_attention_mask = true;
    std::string padding = "max_length";  // "max_length", "longest", "do_not_pad"
    std::optional<int64_t> max_length;   // default default_audio_length * sampling_rate
  };
  // A WAV file (transformers::read_wav: PCM or float) as one mono waveform [samples] float32, channels averaged.
  // ValueError naming the file when it was not sampled at `sampling_rate` (no resampling); AudioError when unreadable.
  at::Tensor load_wav(const std::string& path) const;

  // Mono waveforms (each [length]) -> {"input_features": [B, feature_size, frames] float32,
  // "attention_mask": [B, samples] int32 (when return_attention_mask)}.
  std::map<std::string, at::Tensor> operator()(const std::vector<at::Tensor>& raw_speech,
                                               const CallOptions& options) const;
  std::map<std::string, at::Tensor> operator()(const std::vector<at::Tensor>& raw_speech) const {
    return (*this)(raw_speech, CallOptions{});
  }

  int64_t feature_size = 80;
  int64_t sampling_rate = 22050;
  int64_t default_audio_length = 6;
  int64_t hop_length = 256;
  int64_t chunk_length = 30;
  int64_t n_fft = 1024;
  double padding_value = 0.0;
  std::optional<std::vector<double>> mel_norms;
  bool return_attention_mask = false;
  std::string padding_side = "right";
  int64_t n_samples = 0, nb_max_frames = 0;
  at::Tensor mel_filters;  // [1 + n_fft / 2, feature_size] float64
  json extra = json::object();  // other keys of preprocessor_config.json, written back unchanged

 private:
  void init_derived();
};

}  // namespace transformers
