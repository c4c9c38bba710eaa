// GenerationConfig <-> generation_config.json, as transformers/generation/configuration_utils.py (4.40).
#pragma once

#include "transformers/config.h"

namespace transformers {

class GenerationConfig {
 public:
  // Length
  int64_t max_length = 20;
  std::optional<int64_t> max_new_tokens;
  int64_t min_length = 0;
  std::optional<int64_t> min_new_tokens;
  json early_stopping = false;  // true, false or "never"
  std::optional<double> max_time;
  json stop_strings = nullptr;  // a string or a list of strings (transformers 4.41); generate() needs a tokenizer
  // Strategy
  bool do_sample = false;
  int64_t num_beams = 1;
  int64_t num_beam_groups = 1;
  std::optional<double> penalty_alpha;
  bool use_cache = true;
  // Logits manipulation
  double temperature = 1.0;
  int64_t top_k = 50;
  double top_p = 1.0;
  std::optional<double> min_p;  // transformers 4.41: MinPLogitsWarper
  double typical_p = 1.0;
  double epsilon_cutoff = 0.0;
  double eta_cutoff = 0.0;
  double diversity_penalty = 0.0;
  double repetition_penalty = 1.0;
  double encoder_repetition_penalty = 1.0;
  double length_penalty = 1.0;
  int64_t no_repeat_ngram_size = 0;
  json bad_words_ids = nullptr;
  json force_words_ids = nullptr;
  bool renormalize_logits = false;
  std::optional<int64_t> forced_bos_token_id;
  std::optional<int64_t> forced_eos_token_id;
  bool remove_invalid_values = false;
  json exponential_decay_length_penalty = nullptr;
  json suppress_tokens = nullptr;
  json begin_suppress_tokens = nullptr;
  json forced_decoder_ids = nullptr;
  json sequence_bias = nullptr;
  std::optional<double> guidance_scale;
  std::optional<bool> low_memory;
  // Outputs
  int64_t num_return_sequences = 1;
  bool output_attentions = false;
  bool output_hidden_states = false;
  bool output_scores = false;
  std::optional<bool> output_logits;
  bool return_dict_in_generate = false;
  // Special tokens
  std::optional<int64_t> pad_token_id;
  std::optional<int64_t> bos_token_id;
  std::optional<TokenIds> eos_token_id;
  int64_t encoder_no_repeat_ngram_size = 0;
  std::optional<int64_t> decoder_start_token_id;
  // Misc
  int64_t num_assistant_tokens = 5;
  std::string num_assistant_tokens_schedule = "heuristic";
  std::optional<std::string> cache_implementation;
  std::optional<int64_t> prompt_lookup_num_tokens;
  std::optional<int64_t> max_matching_ngram_size;
  json generation_kwargs = json::object();
  bool _from_model_config = false;
  std::string transformers_version = "4.40.2";
  json extra = json::object();
  // Not serialised: sampling seed used by generate() (transformers relies on torch.manual_seed).
  std::optional<uint64_t> seed;

  void visit(ConfigVisitor& v);
  // `update_only` = true applies only the keys present (kwargs of generate()).
  void from_dict(const json& dict, const std::string& source = "<dict>", bool keep_unknown = true);
  json to_dict() const;
  json to_diff_dict() const;  // differs from GenerationConfig() + transformers_version
  void save_pretrained(const std::string& dir, const std::string& file_name = "generation_config.json") const;
  // Reads dir/generation_config.json. ConfigError if missing or malformed.
  static GenerationConfig from_pretrained(const std::string& dir, const std::string& file_name = "generation_config.json");
  static GenerationConfig from_model_config(const PretrainedConfig& config);
  // Raises GenerationError on inconsistent values (num_beams < 1, top_p outside (0,1], ...).
  void validate() const;
  // First id of eos_token_id, or none.
  std::vector<int64_t> eos_ids() const { return eos_token_id.value_or(TokenIds{}); }
};

}  // namespace transformers
