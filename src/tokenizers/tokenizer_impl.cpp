#include "tokenizers/tokenizer_impl.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "tokenizers/component_config.h"
#include "tokenizers/unicode.h"

namespace transformers {

using tokenizers::Encoding;
using tokenizers::json;
using tokenizers::Offsets;
using tokenizers::OffsetType;

namespace {

// BytesToCharOffsetConverter (tokenizers/src/tokenizer/pre_tokenizer.rs).
class CharOffsets {
 public:
  explicit CharOffsets(const std::string& text) : char_of_byte_(text.size()) {
    const std::vector<size_t> starts = tokenizers::char_starts(text);
    for (size_t c = 0; c + 1 < starts.size(); ++c) {
      for (size_t b = starts[c]; b < starts[c + 1]; ++b) char_of_byte_[b] = c;
    }
  }
  Offsets convert(Offsets bytes) const {
    const size_t n = char_of_byte_.size();
    if (bytes.first >= n) return bytes;
    const size_t start = char_of_byte_[bytes.first];
    if (bytes.second < n) return {start, char_of_byte_[bytes.second]};
    const size_t last = bytes.second >= 1 && bytes.second - 1 < n ? char_of_byte_[bytes.second - 1] : start + 1;
    return {start, last + 1};
  }

 private:
  std::vector<size_t> char_of_byte_;
};

std::string read_text_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw TokenizerError(path + ": cannot open the file");
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

json parse_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw TokenizerError(path + ": invalid JSON: " + e.what());
  }
}

// A special token in tokenizer_config.json: "<s>" or an AddedToken object {"content": "<s>", ...}.
std::optional<std::string> config_token(const json& config, const char* key, const char* fallback) {
  const auto it = config.find(key);
  if (it == config.end()) return std::string(fallback);
  if (it->is_null()) return std::nullopt;
  if (it->is_object()) return it->at("content").get<std::string>();
  return it->get<std::string>();
}

}  // namespace

std::unique_ptr<TokenizerImpl> TokenizerImpl::from_file(const std::string& path) {
  const json config = parse_json_file(path);
  try {
    return from_json(config);
  } catch (const TokenizerError& e) {
    throw TokenizerError(path + ": " + e.what());
  } catch (const json::exception& e) {
    throw TokenizerError(path + ": unexpected content: " + e.what());
  }
}

std::unique_ptr<TokenizerImpl> TokenizerImpl::from_json(const json& config) {
  if (!config.is_object()) throw TokenizerError("a tokenizer.json must hold a JSON object");
  const std::string version = tokenizers::string_or(config, "version", "1.0");
  if (version != "1.0") throw TokenizerError("unknown tokenizer version '" + version + "'");
  if (!config.contains("model") || config.at("model").is_null()) throw TokenizerError("no \"model\"");

  auto tokenizer = std::make_unique<TokenizerImpl>();
  tokenizer->normalizer_ = tokenizers::build_normalizer(config.value("normalizer", json()));
  tokenizer->pre_tokenizer_ = tokenizers::build_pre_tokenizer(config.value("pre_tokenizer", json()));
  tokenizer->model_ = tokenizers::build_model(config.at("model"));
  tokenizer->post_processor_ = tokenizers::build_post_processor(config.value("post_processor", json()));
  tokenizer->decoder_ = tokenizers::build_decoder(config.value("decoder", json()));
  if (const json t = config.value("truncation", json()); !t.is_null()) tokenizer->truncation_ = tokenizers::read_truncation(t);
  if (const json p = config.value("padding", json()); !p.is_null()) tokenizer->padding_ = tokenizers::read_padding(p);

  std::vector<tokenizers::AddedToken> added_tokens;
  for (const auto& token : config.value("added_tokens", json::array())) {
    added_tokens.push_back(tokenizers::read_added_token(token));
  }
  tokenizer->added_vocabulary_.add_tokens(added_tokens, *tokenizer->model_, tokenizer->normalizer_.get());
  return tokenizer;
}

void TokenizerImpl::apply_tokenizer_config(const json& config) {
  // transformers' LlamaTokenizerFast / CodeLlamaTokenizerFast call update_post_processor() in __init__.
  const std::string tokenizer_class = tokenizers::string_or(config, "tokenizer_class", "");
  const bool llama_style = tokenizer_class == "LlamaTokenizer" || tokenizer_class == "LlamaTokenizerFast" ||
                           tokenizer_class == "CodeLlamaTokenizer" || tokenizer_class == "CodeLlamaTokenizerFast";
  if (!llama_style) return;

  auto special = [&](const char* flag, bool flag_default, const char* key,
                     const char* token_default) -> std::optional<std::pair<std::string, uint32_t>> {
    if (!tokenizers::bool_or(config, flag, flag_default)) return std::nullopt;
    const auto token = config_token(config, key, token_default);
    if (!token) throw TokenizerError(std::string(flag) + " is true but " + key + " is null");
    const auto id = token_to_id(*token);
    if (!id) throw TokenizerError(std::string(key) + " '" + *token + "' is not in the vocabulary");
    return std::make_pair(*token, *id);
  };
  const auto bos = special("add_bos_token", true, "bos_token", "<s>");
  const auto eos = special("add_eos_token", false, "eos_token", "</s>");
  post_processor_ = tokenizers::make_bos_eos_template(bos, eos);
}

Encoding TokenizerImpl::encode_sequence(const std::string& text, uint32_t type_id, OffsetType offset_type) const {
  if (const size_t bad = tokenizers::find_invalid_utf8(text); bad != std::string::npos) {
    throw TokenizerError("cannot encode text that is not valid UTF-8 (invalid byte at offset " + std::to_string(bad) +
                         ")");
  }
  tokenizers::PreTokenizedString pieces = added_vocabulary_.extract_and_normalize(normalizer_.get(), text);
  if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(pieces);

  Encoding encoding;
  std::optional<CharOffsets> char_offsets;
  if (offset_type == OffsetType::Char) char_offsets.emplace(text);
  const auto& splits = pieces.splits();
  for (size_t word = 0; word < splits.size(); ++word) {
    const tokenizers::Split& split = splits[word];
    const std::vector<tokenizers::Token> tokens =
        split.tokens ? *split.tokens : model_->tokenize(split.normalized.get());
    const size_t shift = split.normalized.offsets_original().first;
    for (const auto& token : tokens) {
      Offsets offsets = token.offsets;
      if (const auto original = split.normalized.convert_offsets(token.offsets)) {
        offsets = {shift + original->first, shift + original->second};
      }
      if (char_offsets) offsets = char_offsets->convert(offsets);
      encoding.push_back(token.id, token.value, offsets, type_id, static_cast<uint32_t>(word), std::nullopt, false);
    }
  }
  return encoding;
}

Encoding TokenizerImpl::encode(const std::string& text, const std::optional<std::string>& pair, bool add_special_tokens,
                               OffsetType offset_type) const {
  return encode_with(text, pair, add_special_tokens, offset_type, truncation_ ? &*truncation_ : nullptr,
                     padding_ ? &*padding_ : nullptr);
}

namespace {

// truncate_encodings (tokenizers/src/utils/truncation.rs)
void truncate_encodings(Encoding& encoding, std::optional<Encoding>& pair, const tokenizers::TruncationParams& params) {
  if (params.max_length == 0) {
    encoding.truncate(0, params.stride, params.direction);
    if (pair) pair->truncate(0, params.stride, params.direction);
    return;
  }
  const size_t total = encoding.size() + (pair ? pair->size() : 0);
  if (total <= params.max_length) return;
  const size_t to_remove = total - params.max_length;
  switch (params.strategy) {
    case tokenizers::TruncationStrategy::LongestFirst:
      if (pair) {
        size_t n1 = encoding.size();
        size_t n2 = pair->size();
        const bool swap = n1 > n2;
        if (swap) std::swap(n1, n2);
        if (n1 > params.max_length) {
          n2 = n1;
        } else {
          n2 = std::max(n1, params.max_length - n1);
        }
        if (n1 + n2 > params.max_length) {
          n1 = params.max_length / 2;
          n2 = n1 + params.max_length % 2;
        }
        if (swap) std::swap(n1, n2);
        encoding.truncate(n1, params.stride, params.direction);
        pair->truncate(n2, params.stride, params.direction);
      } else {
        encoding.truncate(total - to_remove, params.stride, params.direction);
      }
      break;
    case tokenizers::TruncationStrategy::OnlyFirst:
    case tokenizers::TruncationStrategy::OnlySecond: {
      Encoding* target = &encoding;
      if (params.strategy == tokenizers::TruncationStrategy::OnlySecond) {
        if (!pair) throw TokenizerError("Truncation error: Second sequence not provided");
        target = &*pair;
      }
      if (target->size() <= to_remove) {
        throw TokenizerError("Truncation error: Sequence to truncate too short to respect the provided max_length");
      }
      target->truncate(target->size() - to_remove, params.stride, params.direction);
      break;
    }
  }
}

}  // namespace

Encoding TokenizerImpl::encode_with(const std::string& text, const std::optional<std::string>& pair,
                                    bool add_special_tokens, OffsetType offset_type,
                                    const tokenizers::TruncationParams* truncation,
                                    const tokenizers::PaddingParams* padding) const {
  Encoding first = encode_sequence(text, 0, offset_type);
  std::optional<Encoding> second;
  if (pair) second = encode_sequence(*pair, 1, offset_type);
  if (truncation) {
    const size_t added = post_processor_ ? post_processor_->added_tokens(second.has_value()) : 0;
    tokenizers::TruncationParams params = *truncation;
    if (add_special_tokens && added > 0) {
      if (params.max_length < added) {
        throw TokenizerError("truncation max_length " + std::to_string(params.max_length) + " is shorter than the " +
                             std::to_string(added) + " special tokens");
      }
      params.max_length -= added;
    }
    truncate_encodings(first, second, params);
  }
  Encoding result = post_processor_ ? post_processor_->process(std::move(first), std::move(second), add_special_tokens)
                                    : tokenizers::default_post_process(std::move(first), std::move(second));
  result.fill_sequence_ids();
  if (padding) {
    std::vector<Encoding> one;
    one.push_back(std::move(result));
    tokenizers::pad_encodings(one, *padding);
    result = std::move(one[0]);
  }
  return result;
}

namespace tokenizers {

TruncationParams read_truncation(const json& config) {
  TruncationParams params;
  const std::string direction = string_or(config, "direction", "Right");
  if (direction != "Left" && direction != "Right") throw TokenizerError("truncation: unknown direction '" + direction + "'");
  params.direction = direction == "Left" ? TruncationDirection::Left : TruncationDirection::Right;
  params.max_length = json_uint<size_t>(config.value("max_length", json(512)), "truncation max_length");
  params.stride = json_uint<size_t>(config.value("stride", json(0)), "truncation stride");
  const std::string strategy = string_or(config, "strategy", "LongestFirst");
  if (strategy == "LongestFirst") {
    params.strategy = TruncationStrategy::LongestFirst;
  } else if (strategy == "OnlyFirst") {
    params.strategy = TruncationStrategy::OnlyFirst;
  } else if (strategy == "OnlySecond") {
    params.strategy = TruncationStrategy::OnlySecond;
  } else {
    throw TokenizerError("truncation: unknown strategy '" + strategy + "'");
  }
  return params;
}

PaddingParams read_padding(const json& config) {
  PaddingParams params;
  const json strategy = config.value("strategy", json("BatchLongest"));
  if (strategy.is_object() && strategy.contains("Fixed")) {
    params.fixed = json_uint<size_t>(strategy.at("Fixed"), "padding Fixed length");
  } else if (!(strategy.is_string() && strategy.get<std::string>() == "BatchLongest")) {
    throw TokenizerError("padding: unknown strategy " + strategy.dump());
  }
  const std::string direction = string_or(config, "direction", "Right");
  if (direction != "Left" && direction != "Right") throw TokenizerError("padding: unknown direction '" + direction + "'");
  params.direction = direction == "Left" ? PaddingDirection::Left : PaddingDirection::Right;
  if (const json m = config.value("pad_to_multiple_of", json()); !m.is_null()) params.pad_to_multiple_of = json_uint<size_t>(m, "pad_to_multiple_of");
  params.pad_id = json_uint<uint32_t>(config.value("pad_id", json(0)), "pad_id");
  params.pad_type_id = json_uint<uint32_t>(config.value("pad_type_id", json(0)), "pad_type_id");
  params.pad_token = string_or(config, "pad_token", "[PAD]");
  return params;
}

void pad_encodings(std::vector<Encoding>& encodings, const PaddingParams& params) {
  if (encodings.empty()) return;
  size_t length = 0;
  if (params.fixed) {
    length = *params.fixed;
  } else {
    for (const auto& e : encodings) length = std::max(length, e.size());
  }
  if (params.pad_to_multiple_of && *params.pad_to_multiple_of > 0 && length % *params.pad_to_multiple_of > 0) {
    length += *params.pad_to_multiple_of - length % *params.pad_to_multiple_of;
  }
  for (auto& e : encodings) e.pad(length, params.pad_id, params.pad_type_id, params.pad_token, params.direction);
}

}  // namespace tokenizers

std::unique_ptr<TokenizerImpl> TokenizerImpl::from_parts(std::unique_ptr<tokenizers::Normalizer> normalizer,
                                                         std::unique_ptr<tokenizers::PreTokenizer> pre_tokenizer,
                                                         std::unique_ptr<tokenizers::Model> model,
                                                         std::unique_ptr<tokenizers::PostProcessor> post_processor,
                                                         std::unique_ptr<tokenizers::Decoder> decoder,
                                                         const std::vector<tokenizers::AddedToken>& added_tokens) {
  auto tokenizer = std::make_unique<TokenizerImpl>();
  tokenizer->normalizer_ = std::move(normalizer);
  tokenizer->pre_tokenizer_ = std::move(pre_tokenizer);
  tokenizer->model_ = std::move(model);
  tokenizer->post_processor_ = std::move(post_processor);
  tokenizer->decoder_ = std::move(decoder);
  tokenizer->added_vocabulary_.add_tokens(added_tokens, *tokenizer->model_, tokenizer->normalizer_.get());
  return tokenizer;
}

std::string TokenizerImpl::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    auto token = id_to_token(id);
    if (!token) continue;
    if (skip_special_tokens && added_vocabulary_.is_special_token(*token)) continue;
    tokens.push_back(std::move(*token));
  }
  if (decoder_) tokens = decoder_->decode_chain(std::move(tokens));
  std::string text;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!decoder_ && i > 0) text += ' ';
    text += tokens[i];
  }
  return text;
}

std::optional<uint32_t> TokenizerImpl::token_to_id(const std::string& token) const {
  if (auto id = added_vocabulary_.token_to_id(token)) return id;
  return model_->token_to_id(token);
}

std::optional<std::string> TokenizerImpl::id_to_token(int64_t id) const {
  if (id < 0 || id > std::numeric_limits<uint32_t>::max()) return std::nullopt;
  if (auto token = added_vocabulary_.id_to_token(static_cast<uint32_t>(id))) return token;
  return model_->id_to_token(static_cast<uint32_t>(id));
}

size_t TokenizerImpl::vocab_size() const {
  size_t size = model_->vocab_size();
  for (const auto& entry : added_vocabulary_.vocab()) {
    if (!model_->token_to_id(entry.first)) ++size;
  }
  return size;
}

bool TokenizerImpl::is_special(int64_t id) const {
  return id >= 0 && id <= std::numeric_limits<uint32_t>::max() &&
         added_vocabulary_.is_special_id(static_cast<uint32_t>(id));
}

}  // namespace transformers
