// Port of transformers/models/clvp/configuration_clvp.py (4.40.2).
#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/models/clvp.h"

namespace transformers {

// ---- ClvpEncoderConfig ----

void ClvpEncoderConfig::visit(ConfigVisitor& v) {
  v("vocab_size", vocab_size);
  v("hidden_size", hidden_size);
  v("intermediate_size", intermediate_size);
  v("projection_dim", projection_dim);
  v("num_hidden_layers", num_hidden_layers);
  v("num_attention_heads", num_attention_heads);
  v("layer_norm_eps", layer_norm_eps);
  v("hidden_act", hidden_act);
  v("initializer_factor", initializer_factor);
  v("attention_dropout", attention_dropout);
  v("dropout", dropout);
  v("use_rotary_embedding", use_rotary_embedding);
  v("use_attention_bias", use_attention_bias);
  v("summary_type", summary_type);
}

// ---- ClvpDecoderConfig ----

void ClvpDecoderConfig::visit(ConfigVisitor& v) {
  v("vocab_size", vocab_size);
  v("max_position_embeddings", max_position_embeddings);
  v("max_text_tokens", max_text_tokens);
  v("hidden_size", hidden_size);
  v("num_hidden_layers", num_hidden_layers);
  v("num_attention_heads", num_attention_heads);
  v("n_inner", n_inner);
  v("num_mel_attn_blocks", num_mel_attn_blocks);
  v("activation_function", activation_function);
  v("resid_pdrop", resid_pdrop);
  v("embd_pdrop", embd_pdrop);
  v("attention_dropout", attention_dropout);
  v("layer_norm_epsilon", layer_norm_epsilon);
  v("initializer_range", initializer_range);
  v("summary_type", summary_type);
  v("summary_use_proj", summary_use_proj);
  v("summary_activation", summary_activation);
  v("summary_first_dropout", summary_first_dropout);
  v("summary_proj_to_labels", summary_proj_to_labels);
  v("use_cache", use_cache);
  v("feature_size", feature_size);
  v("use_attention_bias", use_attention_bias);
  v("initializer_factor", initializer_factor);
  v("decoder_fixing_codes", decoder_fixing_codes);
}

int64_t ClvpDecoderConfig::decoder_eos_token_id() const {
  if (!eos_token_id || eos_token_id->size() != 1)
    throw ConfigError("ClvpDecoderConfig: eos_token_id must be a single id for fix_speech_decoder_output");
  return eos_token_id->front();
}

// ---- ClvpConfig ----

namespace {

// A sub-config inside the composite's config.json: its to_dict() without transformers_version (to_dict of nested
// configs in configuration_utils.py), _name_or_path included.
json sub_config_dict(const PretrainedConfig& config) {
  json dict = config.to_dict();
  dict.erase("transformers_version");
  dict["_name_or_path"] = config.name_or_path;
  return dict;
}

}  // namespace

void ClvpConfig::visit(ConfigVisitor& v) {
  static const char* const kKeys[] = {"text_config", "speech_config", "decoder_config"};
  if (v.mode() == ConfigVisitor::Mode::kRead) {
    for (size_t i = 0; i < 3; ++i) {
      sub_config_dicts_[i] = nullptr;
      v(kKeys[i], sub_config_dicts_[i]);
    }
  } else {
    const PretrainedConfig* subs[] = {text_config.get(), speech_config.get(), decoder_config.get()};
    for (size_t i = 0; i < 3; ++i) {
      json dict = sub_config_dict(*subs[i]);
      v(kKeys[i], dict);
    }
  }
  v("projection_dim", projection_dim);
  v("logit_scale_init_value", logit_scale_init_value);
  v("initializer_factor", initializer_factor);
}

void ClvpConfig::post_read(const std::string& source) {
  // `None` (absent or null) -> the sub-config's defaults, as ClvpConfig.__init__.
  static const char* const kKeys[] = {"text_config", "speech_config", "decoder_config"};
  for (size_t i = 0; i < 3; ++i) {
    json dict = sub_config_dicts_[i].is_null() ? json::object() : sub_config_dicts_[i];
    if (!dict.is_object())
      throw ConfigError(source + ": key '" + kKeys[i] + "' must be an object (a " +
                        (i == 2 ? "ClvpDecoderConfig" : "ClvpEncoderConfig") + " dict), got " + dict.dump());
    std::string where = source + " [" + kKeys[i] + "]";
    if (i == 2) {
      auto config = std::make_shared<ClvpDecoderConfig>();
      config->from_dict(dict, where);
      decoder_config = config;
    } else {
      auto config = std::make_shared<ClvpEncoderConfig>();
      config->from_dict(dict, where);
      (i == 0 ? text_config : speech_config) = config;
    }
    sub_config_dicts_[i] = nullptr;
  }
}

std::shared_ptr<ClvpConfig> ClvpConfig::from_sub_model_configs(const ClvpEncoderConfig& text,
                                                               const ClvpEncoderConfig& speech,
                                                               const ClvpDecoderConfig& decoder) {
  auto config = std::make_shared<ClvpConfig>();
  json dict = json::object();
  dict["text_config"] = text.to_dict();
  dict["speech_config"] = speech.to_dict();
  dict["decoder_config"] = decoder.to_dict();
  config->from_dict(dict, "ClvpConfig.from_sub_model_configs");
  return config;
}

TFCPP_REGISTER_CONFIG("clvp", ClvpConfig);
TFCPP_REGISTER_CONFIG("clvp_encoder", ClvpEncoderConfig);
TFCPP_REGISTER_CONFIG("clvp_decoder", ClvpDecoderConfig);

}  // namespace transformers
