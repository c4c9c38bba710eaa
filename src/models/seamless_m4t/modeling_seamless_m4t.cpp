// Port of transformers/models/seamless_m4t/{configuration,modeling}_seamless_m4t.py (4.40.2): SeamlessM4TConfig,
// HifiGanResidualBlock, SeamlessM4TVariancePredictor, SeamlessM4THifiGan, SeamlessM4TCodeHifiGan.
#include "transformers/models/seamless_m4t.h"

#include "transformers/auto.h"
#include "transformers/errors.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace transformers {

// ---- SeamlessM4TConfig ----

void SeamlessM4TConfig::visit(ConfigVisitor& v) {
  v("vocab_size", vocab_size);
  v("t2u_vocab_size", t2u_vocab_size);
  v("hidden_size", hidden_size);
  v("initializer_range", initializer_range);
  v("layer_norm_eps", layer_norm_eps);
  v("max_position_embeddings", max_position_embeddings);
  v("use_cache", use_cache);
  v("max_new_tokens", max_new_tokens);
  v("encoder_layerdrop", encoder_layerdrop);
  v("decoder_layerdrop", decoder_layerdrop);
  v("activation_function", activation_function);
  v("dropout", dropout);
  v("attention_dropout", attention_dropout);
  v("activation_dropout", activation_dropout);
  v("scale_embedding", scale_embedding);
  v("encoder_layers", encoder_layers);
  v("encoder_ffn_dim", encoder_ffn_dim);
  v("encoder_attention_heads", encoder_attention_heads);
  v("decoder_layers", decoder_layers);
  v("decoder_ffn_dim", decoder_ffn_dim);
  v("decoder_attention_heads", decoder_attention_heads);
  // self.num_attention_heads = decoder_attention_heads (likewise layers), unless kwargs set them.
  if (v.mode() == ConfigVisitor::Mode::kRead) {
    num_attention_heads = decoder_attention_heads;
    num_hidden_layers = decoder_layers;
  }
  v("num_attention_heads", num_attention_heads);
  v("num_hidden_layers", num_hidden_layers);
  v("speech_encoder_layers", speech_encoder_layers);
  v("speech_encoder_hidden_act", speech_encoder_hidden_act);
  v("speech_encoder_dropout", speech_encoder_dropout);
  v("speech_encoder_attention_heads", speech_encoder_attention_heads);
  v("speech_encoder_layerdrop", speech_encoder_layerdrop);
  v("speech_encoder_intermediate_size", speech_encoder_intermediate_size);
  v("feature_projection_input_dim", feature_projection_input_dim);
  v("num_conv_pos_embeddings", num_conv_pos_embeddings);
  v("num_conv_pos_embedding_groups", num_conv_pos_embedding_groups);
  v("adaptor_kernel_size", adaptor_kernel_size);
  v("adaptor_stride", adaptor_stride);
  v("adaptor_dropout", adaptor_dropout);
  v("num_adapter_layers", num_adapter_layers);
  v("position_embeddings_type", position_embeddings_type);
  v("rotary_embedding_base", rotary_embedding_base);
  v("max_source_positions", max_source_positions);
  v("conv_depthwise_kernel_size", conv_depthwise_kernel_size);
  v("add_adapter", add_adapter);
  v("t2u_bos_token_id", t2u_bos_token_id);
  v("t2u_pad_token_id", t2u_pad_token_id);
  v("t2u_eos_token_id", t2u_eos_token_id);
  v("t2u_decoder_start_token_id", t2u_decoder_start_token_id);
  v("t2u_max_new_tokens", t2u_max_new_tokens);
  v("t2u_encoder_layers", t2u_encoder_layers);
  v("t2u_encoder_ffn_dim", t2u_encoder_ffn_dim);
  v("t2u_encoder_attention_heads", t2u_encoder_attention_heads);
  v("t2u_decoder_layers", t2u_decoder_layers);
  v("t2u_decoder_ffn_dim", t2u_decoder_ffn_dim);
  v("t2u_decoder_attention_heads", t2u_decoder_attention_heads);
  v("t2u_max_position_embeddings", t2u_max_position_embeddings);
  v("sampling_rate", sampling_rate);
  v("upsample_initial_channel", upsample_initial_channel);
  v("upsample_rates", upsample_rates);
  v("upsample_kernel_sizes", upsample_kernel_sizes);
  v("resblock_kernel_sizes", resblock_kernel_sizes);
  v("resblock_dilation_sizes", resblock_dilation_sizes);
  v("leaky_relu_slope", leaky_relu_slope);
  v("unit_hifi_gan_vocab_size", unit_hifi_gan_vocab_size);
  v("unit_embed_dim", unit_embed_dim);
  v("lang_embed_dim", lang_embed_dim);
  v("spkr_embed_dim", spkr_embed_dim);
  v("vocoder_num_langs", vocoder_num_langs);
  v("vocoder_num_spkrs", vocoder_num_spkrs);
  v("variance_predictor_kernel_size", variance_predictor_kernel_size);
  v("var_pred_dropout", var_pred_dropout);
  v("vocoder_offset", vocoder_offset);
}

TFCPP_REGISTER_CONFIG("seamless_m4t", SeamlessM4TConfig);

namespace {

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

std::string shape_str(at::IntArrayRef sizes) { return fmt::format("[{}]", fmt::join(sizes, ", ")); }

// The generator's layout comes from the config; what transformers would only trip over later (an IndexError in
// forward, a negative padding) is a ConfigError here.
void check_hifi_gan_config(const SeamlessM4TConfig& c) {
  auto fail = [](const std::string& what) { throw ConfigError("SeamlessM4TConfig: " + what); };
  if (c.upsample_rates.empty()) fail("upsample_rates must not be empty");
  if (c.upsample_rates.size() != c.upsample_kernel_sizes.size())
    fail(fmt::format("upsample_rates ({} entries) and upsample_kernel_sizes ({} entries) must have the same length",
                     c.upsample_rates.size(), c.upsample_kernel_sizes.size()));
  for (size_t i = 0; i < c.upsample_rates.size(); ++i) {
    int64_t rate = c.upsample_rates[i], kernel = c.upsample_kernel_sizes[i];
    if (rate < 1 || kernel < rate)
      fail(fmt::format("upsample {}: need 1 <= upsample_rates[{}] ({}) <= upsample_kernel_sizes[{}] ({})", i, i, rate,
                       i, kernel));
    if ((c.upsample_initial_channel >> (i + 1)) < 1)
      fail(fmt::format("upsample_initial_channel ({}) is too small for {} upsampling layers (halved at each)",
                       c.upsample_initial_channel, c.upsample_rates.size()));
  }
  if (c.resblock_kernel_sizes.empty()) fail("resblock_kernel_sizes must not be empty");
  if (c.resblock_kernel_sizes.size() != c.resblock_dilation_sizes.size())
    fail(fmt::format("resblock_kernel_sizes ({} entries) and resblock_dilation_sizes ({} entries) must have the same "
                     "length",
                     c.resblock_kernel_sizes.size(), c.resblock_dilation_sizes.size()));
  for (size_t i = 0; i < c.resblock_kernel_sizes.size(); ++i) {
    if (c.resblock_kernel_sizes[i] < 1) fail(fmt::format("resblock_kernel_sizes[{}] must be >= 1", i));
    for (int64_t d : c.resblock_dilation_sizes[i])
      if (d < 1) fail(fmt::format("resblock_dilation_sizes[{}] must hold dilations >= 1", i));
  }
  for (auto [name, value] : {std::pair<const char*, int64_t>{"unit_embed_dim", c.unit_embed_dim},
                             {"lang_embed_dim", c.lang_embed_dim},
                             {"spkr_embed_dim", c.spkr_embed_dim},
                             {"variance_predictor_kernel_size", c.variance_predictor_kernel_size}})
    if (value < 1) fail(fmt::format("{} must be >= 1, got {}", name, value));
}

// Integer ids of shape [B, 1] (speaker, language) or [B, T] (units), each in [0, num).
void check_ids(const at::Tensor& ids, const char* name, const char* what, int64_t num, const char* config_field) {
  if (at::isFloatingType(ids.scalar_type()) || ids.scalar_type() == at::kBool)
    throw ValueError(fmt::format("{} must hold integer ids, got dtype {}", name, c10::toString(ids.scalar_type())));
  if (ids.numel() == 0) return;
  int64_t low = ids.min().item<int64_t>(), high = ids.max().item<int64_t>();
  if (low < 0 || high >= num)
    throw ValueError(fmt::format("{}: {} id {} is out of range; valid {} ids are 0..{} (config.{} = {})", name, what,
                                 low < 0 ? low : high, what, num - 1, config_field, num));
}

}  // namespace

// ---- SeamlessM4TConv1d (torch.nn.Conv1d / ConvTranspose1d + torch.nn.utils.weight_norm) ----

SeamlessM4TConv1d::SeamlessM4TConv1d(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, int64_t d, bool t)
    : in_channels(in), out_channels(out), kernel_size(k), stride(s), padding(p), dilation(d), transposed(t) {
  bind_parameter("weight", &weight, transposed ? at::empty({in, out, k}) : at::empty({out, in, k}));
  bind_parameter("bias", &bias, at::zeros({out}));
}

at::Tensor SeamlessM4TConv1d::compute_weight() const {
  if (!has_weight_norm()) return weight;
  return at::_weight_norm(weight_v, weight_g, 0);
}

at::Tensor SeamlessM4TConv1d::forward(const at::Tensor& x) const {
  if (transposed && x.scalar_type() == at::kBFloat16) {
    // libtorch 1.13's bfloat16 conv_transpose1d on CPU rejects valid shapes (in Python too): computed in float32.
    return at::conv_transpose1d(x.to(at::kFloat), compute_weight().to(at::kFloat), bias.to(at::kFloat), stride,
                                padding, 0, 1, dilation)
        .to(at::kBFloat16);
  }
  if (transposed) return at::conv_transpose1d(x, compute_weight(), bias, stride, padding, 0, 1, dilation);
  return at::conv1d(x, compute_weight(), bias, stride, padding, dilation, 1);
}

void SeamlessM4TConv1d::apply_weight_norm() {
  if (has_weight_norm()) throw ValueError("Cannot register two weight_norm hooks on the same parameter weight");
  at::NoGradGuard no_grad;
  at::Tensor w = weight;
  bool requires_grad = w.requires_grad();
  parameters_.erase("weight");
  weight = at::Tensor();
  bind_parameter("weight_g", &weight_g, at::norm_except_dim(w, 2, 0), requires_grad);
  bind_parameter("weight_v", &weight_v, w, requires_grad);
}

void SeamlessM4TConv1d::remove_weight_norm() {
  if (!has_weight_norm()) throw ValueError("weight_norm of 'weight' not found in SeamlessM4TConv1d");
  at::NoGradGuard no_grad;
  at::Tensor w = compute_weight();
  bool requires_grad = weight_v.requires_grad();
  parameters_.erase("weight_g");
  parameters_.erase("weight_v");
  weight_g = weight_v = at::Tensor();
  bind_parameter("weight", &weight, w, requires_grad);
}

// ---- HifiGanResidualBlock ----

HifiGanResidualBlock::HifiGanResidualBlock(int64_t channels, int64_t kernel_size, std::vector<int64_t> dilation,
                                           double slope)
    : leaky_relu_slope(slope) {
  convs1 = register_module("convs1", std::make_shared<nn::ModuleList<SeamlessM4TConv1d>>());
  convs2 = register_module("convs2", std::make_shared<nn::ModuleList<SeamlessM4TConv1d>>());
  for (int64_t d : dilation)
    convs1->push_back(std::make_shared<SeamlessM4TConv1d>(channels, channels, kernel_size, 1,
                                                          get_padding(kernel_size, d), d));
  for (size_t i = 0; i < dilation.size(); ++i)
    convs2->push_back(std::make_shared<SeamlessM4TConv1d>(channels, channels, kernel_size, 1,
                                                          get_padding(kernel_size, 1), 1));
}

void HifiGanResidualBlock::apply_weight_norm() {
  for (const auto& layer : *convs1) layer->apply_weight_norm();
  for (const auto& layer : *convs2) layer->apply_weight_norm();
}

void HifiGanResidualBlock::remove_weight_norm() {
  for (const auto& layer : *convs1) layer->remove_weight_norm();
  for (const auto& layer : *convs2) layer->remove_weight_norm();
}

at::Tensor HifiGanResidualBlock::forward(const at::Tensor& input) const {
  at::Tensor hidden_states = input;
  for (size_t i = 0; i < convs1->size(); ++i) {
    at::Tensor residual = hidden_states;
    hidden_states = at::leaky_relu(hidden_states, leaky_relu_slope);
    hidden_states = (*convs1)[i]->forward(hidden_states);
    hidden_states = at::leaky_relu(hidden_states, leaky_relu_slope);
    hidden_states = (*convs2)[i]->forward(hidden_states);
    hidden_states = hidden_states + residual;
  }
  return hidden_states;
}

// ---- SeamlessM4TVariancePredictor ----

SeamlessM4TVariancePredictor::SeamlessM4TVariancePredictor(const SeamlessM4TConfig& config)
    : var_pred_dropout(config.var_pred_dropout) {
  const int64_t embed_dim = config.unit_embed_dim, kernel_size = config.variance_predictor_kernel_size;
  conv1 = register_module("conv1", std::make_shared<SeamlessM4TConv1d>(embed_dim, embed_dim, kernel_size, 1,
                                                                       (kernel_size - 1) / 2));
  ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(embed_dim));
  // padding=1 whatever the kernel size, as transformers.
  conv2 = register_module("conv2", std::make_shared<SeamlessM4TConv1d>(embed_dim, embed_dim, kernel_size, 1, 1));
  ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(embed_dim));
  proj = register_module("proj", std::make_shared<nn::Linear>(embed_dim, 1));
}

at::Tensor SeamlessM4TVariancePredictor::forward(const at::Tensor& input) const {
  // [B, T, C] -> [B, T]
  at::Tensor hidden_states = conv1->forward(input.transpose(1, 2));
  hidden_states = at::relu(hidden_states).transpose(1, 2);
  hidden_states = at::dropout(ln1->forward(hidden_states), var_pred_dropout, is_training());
  hidden_states = conv2->forward(hidden_states.transpose(1, 2));
  hidden_states = at::relu(hidden_states).transpose(1, 2);
  hidden_states = at::dropout(ln2->forward(hidden_states), var_pred_dropout, is_training());
  return proj->forward(hidden_states).squeeze(2);
}

// ---- SeamlessM4THifiGan ----

SeamlessM4THifiGan::SeamlessM4THifiGan(const SeamlessM4TConfig& config)
    : model_in_dim(config.unit_embed_dim + config.lang_embed_dim + config.spkr_embed_dim),
      leaky_relu_slope(config.leaky_relu_slope),
      num_kernels(static_cast<int64_t>(config.resblock_kernel_sizes.size())),
      num_upsamples(static_cast<int64_t>(config.upsample_rates.size())) {
  check_hifi_gan_config(config);
  const int64_t initial = config.upsample_initial_channel;
  conv_pre = register_module("conv_pre", std::make_shared<SeamlessM4TConv1d>(model_in_dim, initial, 7, 1, 3));
  upsampler = register_module("upsampler", std::make_shared<nn::ModuleList<SeamlessM4TConv1d>>());
  for (int64_t i = 0; i < num_upsamples; ++i) {
    int64_t rate = config.upsample_rates[i], kernel_size = config.upsample_kernel_sizes[i];
    upsampler->push_back(std::make_shared<SeamlessM4TConv1d>(initial >> i, initial >> (i + 1), kernel_size, rate,
                                                             floor_div(kernel_size - rate, 2), 1,
                                                             /*transposed=*/true));
  }
  resblocks = register_module("resblocks", std::make_shared<nn::ModuleList<HifiGanResidualBlock>>());
  int64_t channels = initial;
  for (int64_t i = 0; i < num_upsamples; ++i) {
    channels = initial >> (i + 1);
    for (int64_t j = 0; j < num_kernels; ++j)
      resblocks->push_back(std::make_shared<HifiGanResidualBlock>(channels, config.resblock_kernel_sizes[j],
                                                                  config.resblock_dilation_sizes[j],
                                                                  config.leaky_relu_slope));
  }
  conv_post = register_module("conv_post", std::make_shared<SeamlessM4TConv1d>(channels, 1, 7, 1, 3));
}

at::Tensor SeamlessM4THifiGan::forward(const at::Tensor& input_embeds) const {
  if (!at::isFloatingType(input_embeds.scalar_type()))
    throw ValueError("input_embeds must be floating point, got dtype " +
                     std::string(c10::toString(input_embeds.scalar_type())));
  if (input_embeds.dim() != 2 && input_embeds.dim() != 3)
    throw ValueError("input_embeds must be [batch, channels, frames] or [channels, frames], got shape " +
                     shape_str(input_embeds.sizes()));
  int64_t channel_dim = input_embeds.dim() - 2;
  if (input_embeds.size(channel_dim) != model_in_dim)
    throw ValueError(fmt::format("input_embeds has {} channels at dim {} (shape {}); expected {} = unit_embed_dim + "
                                 "lang_embed_dim + spkr_embed_dim",
                                 input_embeds.size(channel_dim), channel_dim, shape_str(input_embeds.sizes()),
                                 model_in_dim));
  if (input_embeds.size(-1) == 0 || (input_embeds.dim() == 3 && input_embeds.size(0) == 0))
    throw ValueError("input_embeds is empty (shape " + shape_str(input_embeds.sizes()) + ")");

  at::Tensor hidden_states = conv_pre->forward(input_embeds.to(conv_pre->compute_weight().scalar_type()));
  for (int64_t i = 0; i < num_upsamples; ++i) {
    hidden_states = at::leaky_relu(hidden_states, leaky_relu_slope);
    hidden_states = (*upsampler)[i]->forward(hidden_states);

    at::Tensor res_state = (*resblocks)[i * num_kernels]->forward(hidden_states);
    for (int64_t j = 1; j < num_kernels; ++j) res_state += (*resblocks)[i * num_kernels + j]->forward(hidden_states);
    hidden_states = res_state / num_kernels;
  }
  hidden_states = at::leaky_relu(hidden_states);  // default slope 0.01, as transformers
  hidden_states = conv_post->forward(hidden_states);
  hidden_states = at::tanh(hidden_states);
  // remove seq-len dim since this collapses to 1
  return hidden_states.squeeze(1);
}

// ---- SeamlessM4TCodeHifiGan ----

SeamlessM4TCodeHifiGan::SeamlessM4TCodeHifiGan(std::shared_ptr<SeamlessM4TConfig> config)
    : PreTrainedModel(config, "SeamlessM4TCodeHifiGan"), pad_token_id(config->t2u_pad_token_id) {
  main_input_name = "input_embeds";
  _no_split_modules = std::vector<std::string>{};
  // Weight-norm checkpoints saved with torch.nn.utils.parametrizations.weight_norm (torch >= 2.1) use the names of
  // torch.nn.utils.weight_norm, as transformers' _fix_key does on torch without parametrizations.weight_norm.
  checkpoint_key_renames = {{"gamma", "weight"},
                            {"beta", "bias"},
                            {"parametrizations.weight.original0", "weight_g"},
                            {"parametrizations.weight.original1", "weight_v"}};
  dur_predictor = register_module("dur_predictor", std::make_shared<SeamlessM4TVariancePredictor>(*config));
  unit_embedding = register_module(
      "unit_embedding", std::make_shared<nn::Embedding>(config->unit_hifi_gan_vocab_size, config->unit_embed_dim));
  speaker_embedding = register_module(
      "speaker_embedding", std::make_shared<nn::Embedding>(config->vocoder_num_spkrs, config->spkr_embed_dim));
  language_embedding = register_module(
      "language_embedding", std::make_shared<nn::Embedding>(config->vocoder_num_langs, config->lang_embed_dim));
  hifi_gan = register_module("hifi_gan", std::make_shared<SeamlessM4THifiGan>(*config));
  post_init();
}

std::shared_ptr<SeamlessM4TCodeHifiGan> SeamlessM4TCodeHifiGan::from_pretrained(const std::string& path,
                                                                              const FromPretrainedOptions& options) {
  return std::dynamic_pointer_cast<SeamlessM4TCodeHifiGan>(model_from_pretrained(path, "SeamlessM4TCodeHifiGan", options));
}

void SeamlessM4TCodeHifiGan::_init_weights(torch::nn::Module& module) {
  const double std = cfg().initializer_range;
  if (auto* linear = dynamic_cast<nn::Linear*>(&module)) {
    linear->weight.normal_(0.0, std);
    if (linear->bias.defined()) linear->bias.zero_();
  } else if (auto* conv = dynamic_cast<SeamlessM4TConv1d*>(&module)) {
    if (conv->has_weight_norm()) {
      conv->weight_v.normal_(0.0, std);
      conv->weight_g.copy_(at::norm_except_dim(conv->weight_v, 2, 0));
    } else {
      conv->weight.normal_(0.0, std);
    }
    if (conv->bias.defined()) conv->bias.zero_();
  } else if (auto* embedding = dynamic_cast<nn::Embedding*>(&module)) {
    embedding->weight.normal_(0.0, std);
    if (embedding->padding_idx) embedding->weight[*embedding->padding_idx].zero_();
  }
}

void SeamlessM4TCodeHifiGan::_prepare_for_checkpoint(const std::vector<std::pair<std::string, at::Tensor>>& checkpoint) {
  auto has = [&](const std::string& key) {
    return std::any_of(checkpoint.begin(), checkpoint.end(), [&](const auto& item) { return item.first == key; });
  };
  if (has("hifi_gan.conv_pre.weight_g") && !has_weight_norm()) apply_weight_norm();
  else if (has("hifi_gan.conv_pre.weight") && has_weight_norm()) remove_weight_norm();
}

void SeamlessM4TCodeHifiGan::apply_weight_norm() {
  hifi_gan->conv_pre->apply_weight_norm();
  for (const auto& layer : *hifi_gan->upsampler) layer->apply_weight_norm();
  for (const auto& layer : *hifi_gan->resblocks) layer->apply_weight_norm();
  hifi_gan->conv_post->apply_weight_norm();
}

void SeamlessM4TCodeHifiGan::remove_weight_norm() {
  hifi_gan->conv_pre->remove_weight_norm();
  for (const auto& layer : *hifi_gan->upsampler) layer->remove_weight_norm();
  for (const auto& layer : *hifi_gan->resblocks) layer->remove_weight_norm();
  hifi_gan->conv_post->remove_weight_norm();
}

at::Tensor SeamlessM4TCodeHifiGan::_get_dur_output_lengths(const at::Tensor& input_ids, const at::Tensor& dur_out) const {
  at::Tensor unit_lengths = input_ids.ne(pad_token_id).sum(1);
  // take care of edge cases where no padding or too many padding
  unit_lengths = at::clamp(unit_lengths, 0, dur_out.size(1) - 1);
  at::Tensor cumulative_dur_out = at::cumsum(dur_out, 1);
  return cumulative_dur_out.gather(1, unit_lengths.unsqueeze(1)).squeeze();
}

at::Tensor SeamlessM4TCodeHifiGan::_get_output_hifigan_lengths(const at::Tensor& input_lengths) const {
  auto conv_out_length = [](const at::Tensor& length, int64_t kernel_size, int64_t stride, int64_t pad,
                            int64_t dilation = 1) {
    return at::div(length + 2 * pad - dilation * (kernel_size - 1) - 1, stride, "floor") + 1;
  };
  auto transpose_conv_out_length = [](const at::Tensor& length, int64_t kernel_size, int64_t stride, int64_t pad,
                                      int64_t dilation = 1) {
    return (length - 1) * stride - 2 * pad + dilation * (kernel_size - 1) + 1;
  };
  const SeamlessM4TConfig& c = cfg();
  // conv_pre
  at::Tensor lengths = conv_out_length(input_lengths, 7, 1, 3);
  // upsampler
  for (size_t i = 0; i < c.upsample_rates.size(); ++i) {
    int64_t rate = c.upsample_rates[i], kernel_size = c.upsample_kernel_sizes[i];
    lengths = transpose_conv_out_length(lengths, kernel_size, rate, floor_div(kernel_size - rate, 2));
  }
  // resblock
  for (size_t i = 0; i < c.upsample_rates.size(); ++i)
    for (size_t j = 0; j < c.resblock_kernel_sizes.size(); ++j) {
      int64_t kernel_size = c.resblock_kernel_sizes[j];
      for (int64_t dil : c.resblock_dilation_sizes[j])
        lengths = conv_out_length(lengths, kernel_size, 1, (kernel_size - 1) * dil / 2, dil);
      for (size_t k = 0; k < c.resblock_dilation_sizes[j].size(); ++k)
        lengths = conv_out_length(lengths, kernel_size, 1, (kernel_size - 1) / 2, 1);
    }
  // conv_post
  return conv_out_length(lengths, 7, 1, 3);
}

std::pair<at::Tensor, at::Tensor> SeamlessM4TCodeHifiGan::forward(const at::Tensor& input_ids_in,
                                                                  const at::Tensor& spkr_id_in,
                                                                  const at::Tensor& lang_id_in) {
  const SeamlessM4TConfig& c = cfg();
  if (!input_ids_in.defined()) throw ValueError("SeamlessM4TCodeHifiGan.forward requires input_ids (unit ids)");
  if (!spkr_id_in.defined()) throw ValueError("SeamlessM4TCodeHifiGan.forward requires spkr_id ([batch, 1])");
  if (!lang_id_in.defined()) throw ValueError("SeamlessM4TCodeHifiGan.forward requires lang_id ([batch, 1])");
  if (input_ids_in.dim() != 2 || input_ids_in.numel() == 0)
    throw ValueError("input_ids must be a non-empty [batch, units] tensor of unit ids, got shape " +
                     shape_str(input_ids_in.sizes()));
  const int64_t batch = input_ids_in.size(0);
  for (auto [name, t] : {std::pair<const char*, const at::Tensor*>{"spkr_id", &spkr_id_in}, {"lang_id", &lang_id_in}})
    if (t->dim() != 2 || t->size(0) != batch || t->size(1) != 1)
      throw ValueError(fmt::format("{} must have shape [batch, 1] = [{}, 1], got {}", name, batch, shape_str(t->sizes())));
  check_ids(input_ids_in, "input_ids", "unit", c.unit_hifi_gan_vocab_size, "unit_hifi_gan_vocab_size");
  check_ids(spkr_id_in, "spkr_id", "speaker", c.vocoder_num_spkrs, "vocoder_num_spkrs");
  check_ids(lang_id_in, "lang_id", "language", c.vocoder_num_langs, "vocoder_num_langs");
  const at::Tensor input_ids = input_ids_in.to(at::kLong), spkr_id = spkr_id_in.to(at::kLong),
                   lang_id = lang_id_in.to(at::kLong);

  at::Tensor hidden_states = unit_embedding->forward(input_ids).transpose(1, 2);
  at::Tensor spkr = speaker_embedding->forward(spkr_id).transpose(1, 2);
  at::Tensor lang = language_embedding->forward(lang_id).transpose(1, 2);

  at::Tensor log_dur_pred = dur_predictor->forward(hidden_states.transpose(1, 2));
  if (log_dur_pred.size(1) != input_ids.size(1))
    throw ValueError(fmt::format("the duration predictor gives {} durations for {} units: its conv2 pads by 1, so only "
                                 "config.variance_predictor_kernel_size = 3 works (got {})",
                                 log_dur_pred.size(1), input_ids.size(1), c.variance_predictor_kernel_size));
  at::Tensor dur_out = at::clamp_min(at::round(at::exp(log_dur_pred) - 1).to(at::kLong), 1);
  // B x C x T
  if (hidden_states.size(0) == 1) {
    hidden_states = at::repeat_interleave(hidden_states, dur_out.view(-1), 2);
  } else {
    // if batched sample, need to interleave per sample, and pad -> loss of parallelism
    std::vector<at::Tensor> per_sample;
    for (int64_t b = 0; b < batch; ++b)
      per_sample.push_back(at::repeat_interleave(hidden_states[b], dur_out[b], -1).transpose(0, 1));
    hidden_states = at::pad_sequence(per_sample, /*batch_first=*/true).transpose(1, 2);
  }

  spkr = spkr.repeat({1, 1, hidden_states.size(-1)});
  lang = lang.repeat({1, 1, hidden_states.size(-1)});
  hidden_states = at::cat({lang, hidden_states, spkr}, 1);

  hidden_states = hifi_gan->forward(hidden_states);

  at::Tensor unit_lengths = _get_dur_output_lengths(input_ids, dur_out);
  at::Tensor lengths = _get_output_hifigan_lengths(unit_lengths);
  return {hidden_states, lengths};
}

ModelOutput SeamlessM4TCodeHifiGan::forward(const ModelInputs& inputs) {
  auto extra = [&](const char* name) {
    auto it = inputs.extra.find(name);
    return it == inputs.extra.end() ? at::Tensor() : it->second;
  };
  auto [waveform, lengths] = forward(inputs.input_ids, extra("spkr_id"), extra("lang_id"));
  ModelOutput out;
  out.extra["waveform"] = waveform;
  out.extra["lengths"] = lengths;
  return out;
}

ModelOutput SeamlessM4TCodeHifiGan::call_method(const std::string& method, const ModelInputs& inputs) {
  if (method == "forward") return forward(inputs);
  if (method == "hifi_gan.forward") {
    auto it = inputs.extra.find("input_embeds");
    at::Tensor input_embeds = it != inputs.extra.end() ? it->second : inputs.inputs_embeds;
    if (!input_embeds.defined())
      throw ValueError("hifi_gan.forward requires input_embeds ([batch, unit_embed_dim + lang_embed_dim + "
                       "spkr_embed_dim, frames])");
    ModelOutput out;
    out.extra["waveform"] = hifi_gan->forward(input_embeds);
    return out;
  }
  throw ValueError("method '" + method + "' is not supported by " + class_name + " (supported: forward, hifi_gan.forward)");
}

TFCPP_REGISTER_MODEL("seamless_m4t", "unit-vocoder", SeamlessM4TCodeHifiGan, SeamlessM4TConfig);

// SeamlessM4THifiGan is a plain nn.Module inside SeamlessM4TCodeHifiGan: its checkpoints are the container's
// (fixture `load.submodule`), so `--class SeamlessM4THifiGan` loads the container and runs `hifi_gan.forward` on it.
static const bool seamless_m4t_hifi_gan_registered = [] {
  register_model("seamless_m4t", "vocoder", "SeamlessM4THifiGan", [](std::shared_ptr<PretrainedConfig> c) {
    auto typed = std::dynamic_pointer_cast<SeamlessM4TConfig>(c);
    if (!typed) throw ConfigError("SeamlessM4THifiGan: config is not a SeamlessM4TConfig");
    return std::static_pointer_cast<PreTrainedModel>(std::make_shared<SeamlessM4TCodeHifiGan>(typed));
  });
  return true;
}();

}  // namespace transformers
