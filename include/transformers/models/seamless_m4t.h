// SeamlessM4T, as transformers/models/seamless_m4t/{configuration,modeling}_seamless_m4t.py (4.40): the full
// config, and the code HiFi-GAN vocoder (unit ids + speaker + language -> 16 kHz waveform).
#pragma once

#include "transformers/modeling_utils.h"

namespace transformers {

// Every field of SeamlessM4TConfig with transformers' defaults, so config.json round-trips; the vocoder reads the
// "hifi-gan vocoder" and "Code Hifi-Gan" groups (and t2u_pad_token_id, initializer_range).
class SeamlessM4TConfig : public PretrainedConfig {
 public:
  SeamlessM4TConfig() {
    pad_token_id = 0;
    bos_token_id = 2;
    eos_token_id = TokenIds{3};
    decoder_start_token_id = 3;
    is_encoder_decoder = true;
  }
  std::string model_type() const override { return "seamless_m4t"; }
  std::shared_ptr<PretrainedConfig> clone_default() const override { return std::make_shared<SeamlessM4TConfig>(); }
  void visit(ConfigVisitor& v) override;

  // overall config
  int64_t vocab_size = 256102;
  int64_t t2u_vocab_size = 10082;
  int64_t hidden_size = 1024;
  double initializer_range = 0.02;
  double layer_norm_eps = 1e-5;
  bool use_cache = true;
  int64_t max_position_embeddings = 1024;
  int64_t max_new_tokens = 256;
  double encoder_layerdrop = 0.05;
  double decoder_layerdrop = 0.05;
  std::string activation_function = "relu";
  double dropout = 0.1;
  double attention_dropout = 0.1;
  double activation_dropout = 0.0;
  bool scale_embedding = true;
  int64_t num_attention_heads = 16;  // decoder_attention_heads unless config.json says otherwise
  int64_t num_hidden_layers = 24;    // decoder_layers unless config.json says otherwise
  // text|unit encoder|decoder
  int64_t encoder_layers = 24;
  int64_t encoder_ffn_dim = 8192;
  int64_t encoder_attention_heads = 16;
  int64_t decoder_layers = 24;
  int64_t decoder_ffn_dim = 8192;
  int64_t decoder_attention_heads = 16;
  // speech encoder
  int64_t speech_encoder_layers = 24;
  std::string speech_encoder_hidden_act = "swish";
  double speech_encoder_dropout = 0.0;
  int64_t speech_encoder_attention_heads = 16;
  double speech_encoder_layerdrop = 0.1;
  int64_t speech_encoder_intermediate_size = 4096;
  int64_t feature_projection_input_dim = 160;
  int64_t num_conv_pos_embeddings = 128;
  int64_t num_conv_pos_embedding_groups = 16;
  int64_t adaptor_kernel_size = 8;
  int64_t adaptor_stride = 8;
  double adaptor_dropout = 0.1;
  int64_t num_adapter_layers = 1;
  std::optional<std::string> position_embeddings_type = "relative";
  int64_t rotary_embedding_base = 10000;
  int64_t max_source_positions = 4096;
  int64_t conv_depthwise_kernel_size = 31;
  bool add_adapter = true;
  // t2u
  int64_t t2u_bos_token_id = 0;
  int64_t t2u_pad_token_id = 1;
  int64_t t2u_eos_token_id = 2;
  int64_t t2u_decoder_start_token_id = 2;
  int64_t t2u_max_new_tokens = 1024;
  int64_t t2u_encoder_layers = 6;
  int64_t t2u_encoder_ffn_dim = 8192;
  int64_t t2u_encoder_attention_heads = 16;
  int64_t t2u_decoder_layers = 6;
  int64_t t2u_decoder_ffn_dim = 8192;
  int64_t t2u_decoder_attention_heads = 16;
  int64_t t2u_max_position_embeddings = 2048;
  // hifi-gan vocoder
  int64_t sampling_rate = 16000;
  int64_t upsample_initial_channel = 512;
  std::vector<int64_t> upsample_rates{5, 4, 4, 2, 2};
  std::vector<int64_t> upsample_kernel_sizes{11, 8, 8, 4, 4};
  std::vector<int64_t> resblock_kernel_sizes{3, 7, 11};
  std::vector<std::vector<int64_t>> resblock_dilation_sizes{{1, 3, 5}, {1, 3, 5}, {1, 3, 5}};
  double leaky_relu_slope = 0.1;
  // code hifi-gan
  int64_t unit_hifi_gan_vocab_size = 10000;
  int64_t unit_embed_dim = 1280;
  int64_t lang_embed_dim = 256;
  int64_t spkr_embed_dim = 256;
  int64_t vocoder_num_langs = 36;
  int64_t vocoder_num_spkrs = 200;
  int64_t variance_predictor_kernel_size = 3;
  double var_pred_dropout = 0.5;
  int64_t vocoder_offset = 4;
};

// torch.nn.Conv1d, or torch.nn.ConvTranspose1d when `transposed`, with torch.nn.utils.weight_norm (dim 0):
// apply_weight_norm() replaces `weight` by `weight_g` (||weight|| over all dims but 0) and `weight_v`, and forward
// computes g * v / ||v|| as weight_norm's pre-forward hook does; remove_weight_norm() folds them back into `weight`.
// Kept in this family until nn.h has convolutions.
class SeamlessM4TConv1d : public nn::Module {
 public:
  SeamlessM4TConv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1,
                    int64_t padding = 0, int64_t dilation = 1, bool transposed = false);
  at::Tensor forward(const at::Tensor& x) const;
  void apply_weight_norm();
  void remove_weight_norm();
  bool has_weight_norm() const { return weight_g.defined(); }
  at::Tensor compute_weight() const;  // `weight`, or g * v / ||v|| under weight norm

  int64_t in_channels, out_channels, kernel_size, stride, padding, dilation;
  bool transposed;
  at::Tensor weight, bias, weight_g, weight_v;  // weight undefined under weight norm, g/v undefined otherwise
};

class HifiGanResidualBlock : public nn::Module {
 public:
  HifiGanResidualBlock(int64_t channels, int64_t kernel_size = 3, std::vector<int64_t> dilation = {1, 3, 5},
                       double leaky_relu_slope = 0.1);
  static int64_t get_padding(int64_t kernel_size, int64_t dilation = 1) { return (kernel_size * dilation - dilation) / 2; }
  void apply_weight_norm();
  void remove_weight_norm();
  at::Tensor forward(const at::Tensor& hidden_states) const;

  double leaky_relu_slope;
  std::shared_ptr<nn::ModuleList<SeamlessM4TConv1d>> convs1, convs2;
};

// Duration predictor: [B, T, C] -> log durations [B, T].
class SeamlessM4TVariancePredictor : public nn::Module {
 public:
  explicit SeamlessM4TVariancePredictor(const SeamlessM4TConfig& config);
  at::Tensor forward(const at::Tensor& hidden_states) const;

  std::shared_ptr<SeamlessM4TConv1d> conv1, conv2;
  std::shared_ptr<nn::LayerNorm> ln1, ln2;
  std::shared_ptr<nn::Linear> proj;
  double var_pred_dropout;
};

// The HiFi-GAN generator: [B, unit_embed_dim + lang_embed_dim + spkr_embed_dim, frames] -> waveform [B, samples]
// (an un-batched [C, frames] gives [1, samples], as in transformers). A plain module, not a PreTrainedModel.
class SeamlessM4THifiGan : public nn::Module {
 public:
  explicit SeamlessM4THifiGan(const SeamlessM4TConfig& config);
  at::Tensor forward(const at::Tensor& input_embeds) const;

  int64_t model_in_dim;
  double leaky_relu_slope;
  int64_t num_kernels, num_upsamples;
  std::shared_ptr<SeamlessM4TConv1d> conv_pre;
  std::shared_ptr<nn::ModuleList<SeamlessM4TConv1d>> upsampler;
  std::shared_ptr<nn::ModuleList<HifiGanResidualBlock>> resblocks;
  std::shared_ptr<SeamlessM4TConv1d> conv_post;
};

// Code HiFi-GAN vocoder. forward(input_ids [B, T], extra "spkr_id" [B, 1], extra "lang_id" [B, 1]) returns
// extra "waveform" [B, samples] (zero-padded past each sample's length) and "lengths" [B] (int64; a 0-d tensor for
// B = 1, as transformers' squeeze() gives). call_method("hifi_gan.forward") runs the generator on extra
// "input_embeds". A checkpoint saved under weight norm (weight_g/weight_v, or parametrizations.weight.original0/1)
// loads with weight norm applied to match it; remove_weight_norm() folds it for inference.
class SeamlessM4TCodeHifiGan : public PreTrainedModel {
 public:
  explicit SeamlessM4TCodeHifiGan(std::shared_ptr<SeamlessM4TConfig> config);
  static std::shared_ptr<SeamlessM4TCodeHifiGan> from_pretrained(const std::string& path,
                                                                 const FromPretrainedOptions& options = {});
  const SeamlessM4TConfig& cfg() const { return static_cast<const SeamlessM4TConfig&>(*config); }

  ModelOutput forward(const ModelInputs& inputs) override;
  ModelOutput call_method(const std::string& method, const ModelInputs& inputs) override;
  // (waveform, lengths), as transformers' forward(input_ids, spkr_id, lang_id).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& input_ids, const at::Tensor& spkr_id,
                                            const at::Tensor& lang_id);
  void _init_weights(torch::nn::Module& module) override;
  void _prepare_for_checkpoint(const std::vector<std::pair<std::string, at::Tensor>>& checkpoint) override;

  // Output length after the duration layer / after the HiFi-GAN convolutions.
  at::Tensor _get_dur_output_lengths(const at::Tensor& input_ids, const at::Tensor& dur_out) const;
  at::Tensor _get_output_hifigan_lengths(const at::Tensor& input_lengths) const;

  void apply_weight_norm();
  void remove_weight_norm();
  bool has_weight_norm() const { return hifi_gan->conv_pre->has_weight_norm(); }

  int64_t pad_token_id;
  std::shared_ptr<SeamlessM4TVariancePredictor> dur_predictor;
  std::shared_ptr<nn::Embedding> unit_embedding, speaker_embedding, language_embedding;
  std::shared_ptr<SeamlessM4THifiGan> hifi_gan;
};

}  // namespace transformers
