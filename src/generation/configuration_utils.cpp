// Port of transformers/generation/configuration_utils.py (4.40): fields, defaults, diff-on-save, from_model_config.
#include "transformers/generation_config.h"

#include "transformers/errors.h"
#include "transformers/hub.h"

#include <algorithm>
#include <filesystem>

namespace fs = std::filesystem;

namespace transformers {

void GenerationConfig::visit(ConfigVisitor& v) {
  v("max_length", max_length);
  v("max_new_tokens", max_new_tokens);
  v("min_length", min_length);
  v("min_new_tokens", min_new_tokens);
  v("early_stopping", early_stopping);
  v("max_time", max_time);
  v("stop_strings", stop_strings);
  v("do_sample", do_sample);
  v("num_beams", num_beams);
  v("num_beam_groups", num_beam_groups);
  v("penalty_alpha", penalty_alpha);
  v("use_cache", use_cache);
  v("temperature", temperature);
  v("top_k", top_k);
  v("top_p", top_p);
  v("min_p", min_p);
  v("typical_p", typical_p);
  v("epsilon_cutoff", epsilon_cutoff);
  v("eta_cutoff", eta_cutoff);
  v("diversity_penalty", diversity_penalty);
  v("repetition_penalty", repetition_penalty);
  v("encoder_repetition_penalty", encoder_repetition_penalty);
  v("length_penalty", length_penalty);
  v("no_repeat_ngram_size", no_repeat_ngram_size);
  v("bad_words_ids", bad_words_ids);
  v("force_words_ids", force_words_ids);
  v("renormalize_logits", renormalize_logits);
  v("forced_bos_token_id", forced_bos_token_id);
  v("forced_eos_token_id", forced_eos_token_id);
  v("remove_invalid_values", remove_invalid_values);
  v("exponential_decay_length_penalty", exponential_decay_length_penalty);
  v("suppress_tokens", suppress_tokens);
  v("begin_suppress_tokens", begin_suppress_tokens);
  v("forced_decoder_ids", forced_decoder_ids);
  v("sequence_bias", sequence_bias);
  v("guidance_scale", guidance_scale);
  v("low_memory", low_memory);
  v("num_return_sequences", num_return_sequences);
  v("output_attentions", output_attentions);
  v("output_hidden_states", output_hidden_states);
  v("output_scores", output_scores);
  v("output_logits", output_logits);
  v("return_dict_in_generate", return_dict_in_generate);
  v("pad_token_id", pad_token_id);
  v("bos_token_id", bos_token_id);
  v("encoder_no_repeat_ngram_size", encoder_no_repeat_ngram_size);
  v("decoder_start_token_id", decoder_start_token_id);
  v("num_assistant_tokens", num_assistant_tokens);
  v("num_assistant_tokens_schedule", num_assistant_tokens_schedule);
  v("cache_implementation", cache_implementation);
  v("prompt_lookup_num_tokens", prompt_lookup_num_tokens);
  v("max_matching_ngram_size", max_matching_ngram_size);
  v("generation_kwargs", generation_kwargs);
  v("_from_model_config", _from_model_config);
}

void GenerationConfig::from_dict(const json& input, const std::string& source, bool keep_unknown) {
  if (!input.is_object()) throw ConfigError(source + ": expected a JSON object");
  json dict = input;
  ConfigVisitor reader(ConfigVisitor::Mode::kRead, dict, source);
  visit(reader);
  if (dict.contains("eos_token_id")) {
    const json& e = dict["eos_token_id"];
    if (e.is_null()) eos_token_id.reset();
    else if (e.is_number_integer()) eos_token_id = TokenIds{e.get<int64_t>()};
    else if (e.is_array() && std::all_of(e.begin(), e.end(), [](const json& x) { return x.is_number_integer(); }))
      eos_token_id = e.get<TokenIds>();
    else throw ConfigError(source + ": key 'eos_token_id' must be an integer or a list of integers, got " + e.dump());
  }
  if (dict.contains("seed") && dict["seed"].is_number_integer()) seed = dict["seed"].get<uint64_t>();
  if (dict.contains("transformers_version") && dict["transformers_version"].is_string())
    transformers_version = dict["transformers_version"].get<std::string>();
  if (!keep_unknown) return;
  for (auto& [key, value] : dict.items())
    if (!reader.seen().count(key) && key != "eos_token_id" && key != "transformers_version" && key != "seed")
      extra[key] = value;
}

json GenerationConfig::to_dict() const {
  json out = extra;
  ConfigVisitor writer(ConfigVisitor::Mode::kWrite, out, "");
  const_cast<GenerationConfig*>(this)->visit(writer);
  if (!eos_token_id) out["eos_token_id"] = nullptr;
  else if (eos_token_id->size() == 1) out["eos_token_id"] = (*eos_token_id)[0];
  else out["eos_token_id"] = *eos_token_id;
  out["transformers_version"] = transformers_version;
  return out;
}

json GenerationConfig::to_diff_dict() const {
  json config = to_dict();
  json defaults = GenerationConfig().to_dict();
  json diff = json::object();
  for (auto& [key, value] : config.items())
    if (key == "transformers_version" || !defaults.contains(key) || value != defaults[key]) diff[key] = value;
  return diff;
}

void GenerationConfig::save_pretrained(const std::string& dir, const std::string& file_name) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw ConfigError("cannot create directory " + dir + ": " + ec.message());
  write_json_file(to_diff_dict(), (fs::path(dir) / file_name).string());
}

GenerationConfig GenerationConfig::from_pretrained(const std::string& dir, const std::string& file_name) {
  std::error_code ec;  // a hub id: the file from the cache / the Hub (hub.h)
  std::string path = fs::is_directory(dir) ? (fs::path(dir) / file_name).string()
                     : fs::exists(dir, ec) ? dir
                                           : hub::cached_file(dir, file_name);
  GenerationConfig config;
  config.from_dict(read_json_file(path, "generation config"), path);
  return config;
}

GenerationConfig GenerationConfig::from_model_config(const PretrainedConfig& model_config) {
  json dict = model_config.to_dict();
  dict.erase("_from_model_config");
  GenerationConfig config;
  config.from_dict(dict, "config.json", /*keep_unknown=*/false);
  config._from_model_config = true;
  return config;
}

void GenerationConfig::validate() const {
  auto fail = [](const std::string& what) { throw GenerationError("invalid generation config: " + what); };
  if (num_beams < 1) fail("num_beams must be >= 1, got " + std::to_string(num_beams));
  if (num_return_sequences < 1) fail("num_return_sequences must be >= 1");
  if (!do_sample && num_return_sequences > num_beams)
    fail("num_return_sequences (" + std::to_string(num_return_sequences) + ") must be <= num_beams (" +
         std::to_string(num_beams) + ") for greedy/beam search");
  if (do_sample && temperature <= 0.0) fail("temperature must be > 0 when sampling, got " + std::to_string(temperature));
  if (top_p < 0.0 || top_p > 1.0) fail("top_p must be in [0, 1], got " + std::to_string(top_p));
  if (top_k < 0) fail("top_k must be >= 0");
  if (min_p && (*min_p < 0.0 || *min_p > 1.0)) fail("min_p must be in [0, 1], got " + std::to_string(*min_p));
  if (!stop_strings.is_null() && !stop_strings.is_string() &&
      !(stop_strings.is_array() && !stop_strings.empty() &&
        std::all_of(stop_strings.begin(), stop_strings.end(), [](const json& x) { return x.is_string(); })))
    fail("stop_strings must be a string or a non-empty list of strings, got " + stop_strings.dump());
  if (max_new_tokens && *max_new_tokens < 0) fail("max_new_tokens must be >= 0");
  if (repetition_penalty <= 0.0) fail("repetition_penalty must be > 0");
}

}  // namespace transformers
