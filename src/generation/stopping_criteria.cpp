// Port of transformers/generation/stopping_criteria.py (4.41: MaxLengthCriteria, MaxTimeCriteria, EosTokenCriteria,
// StopStringCriteria, StoppingCriteriaList) and GenerationMixin._get_stopping_criteria.
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/tokenizer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <typeinfo>

namespace transformers {

at::Tensor MaxLengthCriteria::operator()(const at::Tensor& input_ids, const at::Tensor&) {
  int64_t cur_len = input_ids.size(-1);
  bool is_done = cur_len >= max_length;
  return at::full({input_ids.size(0)}, is_done, input_ids.options().dtype(at::kBool));
}

at::Tensor MaxTimeCriteria::operator()(const at::Tensor& input_ids, const at::Tensor&) {
  bool is_done = std::chrono::duration<double>(Clock::now() - initial_timestamp).count() > max_time;
  return at::full({input_ids.size(0)}, is_done, input_ids.options().dtype(at::kBool));
}

EosTokenCriteria::EosTokenCriteria(std::vector<int64_t> eos_token_id) : eos_token_id(std::move(eos_token_id)) {
  eos_ = at::tensor(this->eos_token_id, at::kLong);
}

at::Tensor EosTokenCriteria::operator()(const at::Tensor& input_ids, const at::Tensor&) {
  if (eos_.device() != input_ids.device()) eos_ = eos_.to(input_ids.device());
  return at::isin(input_ids.select(1, -1), eos_);
}

// ---- StopStringCriteria ----

StopStringCriteria::StopStringCriteria(std::vector<std::string> token_strings, std::vector<std::string> stop_strings_in)
    : stop_strings(std::move(stop_strings_in)), token_strings_(std::move(token_strings)) {
  if (stop_strings.empty()) throw GenerationError("StopStringCriteria: `stop_strings` is empty");
  for (const auto& s : stop_strings) {
    if (s.empty()) throw GenerationError("StopStringCriteria: a stop string is empty");
    maximum_token_len_ = std::max<int64_t>(maximum_token_len_, static_cast<int64_t>(s.size()));
  }
}

StopStringCriteria::StopStringCriteria(const Tokenizer& tokenizer, std::vector<std::string> stop_strings)
    : StopStringCriteria(clean_tokenizer_vocab(tokenizer), std::move(stop_strings)) {}

std::vector<std::string> StopStringCriteria::clean_tokenizer_vocab(const Tokenizer& tokenizer,
                                                                   const std::string& static_prefix) {
  // Each token's string is what it adds after a fixed prefix: decoding prefix + token and dropping the prefix removes
  // artefacts such as "##", "Ġ" or a leading "▁" turned into a space only at the start of a text.
  std::vector<int64_t> sentence_base = tokenizer.encode(static_prefix, /*add_special_tokens=*/false);
  int64_t vocab_size = tokenizer.vocab_size();
  std::vector<std::string> clean(static_cast<size_t>(vocab_size));
  std::vector<int64_t> ids = sentence_base;
  ids.push_back(0);
  for (int64_t token_idx = 0; token_idx < vocab_size; ++token_idx) {
    ids.back() = token_idx;
    std::string token_string = tokenizer.decode(ids, /*skip_special_tokens=*/false);
    size_t at = token_string.find(static_prefix);
    clean[token_idx] = at == std::string::npos ? token_string : token_string.substr(at + static_prefix.size());
  }
  return clean;
}

at::Tensor StopStringCriteria::operator()(const at::Tensor& input_ids, const at::Tensor&) {
  // The maximum length we need to consider is 1 token per character.
  at::Tensor ids = input_ids.to(at::kCPU, at::kLong).contiguous();
  int64_t batch = ids.size(0), length = ids.size(1);
  int64_t window = std::min(length, maximum_token_len_);
  std::vector<uint8_t> done(static_cast<size_t>(batch), 0);
  for (int64_t row = 0; row < batch; ++row) {
    const int64_t* tokens = ids.data_ptr<int64_t>() + row * length + (length - window);
    // The text of the last `window` tokens; a match must end inside the last token (at least one of its characters)
    std::string text;
    size_t last_start = 0;
    for (int64_t i = 0; i < window; ++i) {
      if (i == window - 1) last_start = text.size();
      int64_t id = tokens[i];
      if (id >= 0 && id < static_cast<int64_t>(token_strings_.size())) text += token_strings_[id];
    }
    for (const auto& stop : stop_strings) {
      for (size_t pos = text.find(stop); pos != std::string::npos; pos = text.find(stop, pos + 1))
        if (pos + stop.size() > last_start) {
          done[row] = 1;
          break;
        }
      if (done[row]) break;
    }
  }
  return at::tensor(std::vector<int64_t>(done.begin(), done.end()), at::kLong).to(input_ids.device()).to(at::kBool);
}

// ---- StoppingCriteriaList ----

at::Tensor StoppingCriteriaList::operator()(const at::Tensor& input_ids, const at::Tensor& scores) const {
  at::Tensor is_done = at::zeros({input_ids.size(0)}, input_ids.options().dtype(at::kBool));
  for (const auto& criteria : *this) is_done = is_done | (*criteria)(input_ids, scores);
  return is_done;
}

std::optional<int64_t> StoppingCriteriaList::max_length() const {
  for (const auto& criteria : *this)
    if (auto* max_length = dynamic_cast<const MaxLengthCriteria*>(criteria.get())) return max_length->max_length;
  return std::nullopt;
}

StoppingCriteriaList get_stopping_criteria(const GenerationConfig& config, const StoppingCriteriaList& custom,
                                           const Tokenizer* tokenizer,
                                           std::optional<int64_t> max_position_embeddings) {
  StoppingCriteriaList criteria;
  criteria.push_back(std::make_shared<MaxLengthCriteria>(config.max_length, max_position_embeddings));
  if (config.max_time) criteria.push_back(std::make_shared<MaxTimeCriteria>(*config.max_time));
  if (!config.stop_strings.is_null()) {
    if (!tokenizer)
      throw GenerationError("There are one or more stop strings, either in the arguments to `generate` or in the "
                            "model's generation config, but we could not locate a tokenizer. When generating with "
                            "stop strings, you must pass the model's tokenizer to the `tokenizer` argument of "
                            "`generate`.");
    std::vector<std::string> stop_strings;
    if (config.stop_strings.is_string()) stop_strings.push_back(config.stop_strings.get<std::string>());
    else if (config.stop_strings.is_array())
      for (const auto& s : config.stop_strings) {
        if (!s.is_string()) throw GenerationError("stop_strings must be strings, got " + config.stop_strings.dump());
        stop_strings.push_back(s.get<std::string>());
      }
    else throw GenerationError("stop_strings must be a string or a list of strings, got " + config.stop_strings.dump());
    criteria.push_back(std::make_shared<StopStringCriteria>(*tokenizer, std::move(stop_strings)));
  }
  if (config.eos_token_id && !config.eos_token_id->empty())
    criteria.push_back(std::make_shared<EosTokenCriteria>(*config.eos_token_id));
  // _merge_criteria_processor_list
  for (const auto& default_criteria : criteria) {
    const StoppingCriteria& d = *default_criteria;
    for (const auto& custom_criteria : custom) {
      if (!custom_criteria) continue;
      const StoppingCriteria& c = *custom_criteria;
      if (typeid(c) == typeid(d))
        throw GenerationError(std::string("A custom stopping criteria of type ") + typeid(c).name() +
                              " has been passed to `.generate()`, but it has already been created with the values "
                              "of the generation config. Set the value in the generation config instead of passing "
                              "a custom stopping criteria.");
    }
  }
  for (const auto& c : custom)
    if (c) criteria.push_back(c);
  return criteria;
}

}  // namespace transformers
