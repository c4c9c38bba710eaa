#include "transformers/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <utility>

#include "tokenizers/sentencepiece.h"
#include "tokenizers/tokenizer_impl.h"
#include "transformers/chat_template.h"
#include "transformers/errors.h"

namespace transformers {

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

namespace fs = std::filesystem;

bool is_sentencepiece_file(const std::string& path) {
  return path.size() > 6 && path.compare(path.size() - 6, 6, ".model") == 0;
}

tokenizers::json read_json_file(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw TokenizerError(path + ": cannot open the file");
  try {
    return tokenizers::json::parse(file);
  } catch (const tokenizers::json::exception& e) {
    throw TokenizerError(path + ": invalid JSON: " + e.what());
  }
}

std::optional<std::string> token_content(const tokenizers::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content") && value.at("content").is_string()) {
    return value.at("content").get<std::string>();
  }
  return std::nullopt;
}

std::optional<std::string>* special_slot(SpecialTokensMap& map, const std::string& name) {
  if (name == "bos_token") return &map.bos_token;
  if (name == "eos_token") return &map.eos_token;
  if (name == "unk_token") return &map.unk_token;
  if (name == "sep_token") return &map.sep_token;
  if (name == "pad_token") return &map.pad_token;
  if (name == "cls_token") return &map.cls_token;
  if (name == "mask_token") return &map.mask_token;
  return nullptr;
}

// tokenizer_config.json first; special_tokens_map.json fills what it leaves unset (PreTrainedTokenizerBase).
void read_special_tokens(const tokenizers::json& source, SpecialTokensMap& map) {
  if (!source.is_object()) return;
  for (const auto& [key, value] : source.items()) {
    if (auto* slot = special_slot(map, key)) {
      if (!*slot) *slot = token_content(value);
    } else if (key == "additional_special_tokens" && value.is_array() && map.additional_special_tokens.empty()) {
      for (const auto& token : value) {
        if (auto content = token_content(token)) map.additional_special_tokens.push_back(*content);
      }
    }
  }
}

Encoding to_public(const tokenizers::Encoding& e) {
  Encoding out;
  out.ids.assign(e.ids.begin(), e.ids.end());
  out.tokens = e.tokens;
  out.offsets = e.offsets;
  out.attention_mask.assign(e.attention_mask.begin(), e.attention_mask.end());
  out.type_ids.assign(e.type_ids.begin(), e.type_ids.end());
  out.special_tokens_mask.assign(e.special_tokens_mask.begin(), e.special_tokens_mask.end());
  for (const auto& w : e.word_ids) out.word_ids.push_back(w ? std::optional<int64_t>(*w) : std::nullopt);
  for (const auto& s : e.sequence_ids) out.sequence_ids.push_back(s ? std::optional<int64_t>(*s) : std::nullopt);
  for (const auto& o : e.overflowing) out.overflowing.push_back(to_public(o));
  return out;
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) {
  if (is_sentencepiece_file(path)) return Tokenizer(tokenizers::load_sentencepiece(path));
  return Tokenizer(TokenizerImpl::from_file(path));
}

Tokenizer Tokenizer::from_pretrained(const std::string& dir) {
  std::unique_ptr<TokenizerImpl> impl;
  const std::string json_path = dir + "/tokenizer.json";
  if (fs::exists(json_path)) {
    impl = TokenizerImpl::from_file(json_path);
  } else {
    for (const char* name : {"tokenizer.model", "spiece.model", "sentencepiece.bpe.model"}) {
      if (fs::exists(dir + "/" + name)) {
        impl = tokenizers::load_sentencepiece(dir + "/" + name);
        break;
      }
    }
    if (!impl) {
      throw TokenizerError(dir + ": no tokenizer.json and no SentencePiece model (tokenizer.model, spiece.model, " +
                           "sentencepiece.bpe.model)");
    }
  }
  tokenizers::json config = tokenizers::json::object();
  const std::string config_path = dir + "/tokenizer_config.json";
  if (fs::exists(config_path)) {
    config = read_json_file(config_path);
    try {
      impl->apply_tokenizer_config(config);
    } catch (const tokenizers::json::exception& e) {
      throw TokenizerError(config_path + ": " + e.what());
    } catch (const TokenizerError& e) {
      throw TokenizerError(config_path + ": " + e.what());
    }
  }
  Tokenizer tokenizer(std::move(impl));
  read_special_tokens(config, tokenizer.special_tokens_);
  const std::string map_path = dir + "/special_tokens_map.json";
  if (fs::exists(map_path)) read_special_tokens(read_json_file(map_path), tokenizer.special_tokens_);
  tokenizer.config_ = std::move(config);
  return tokenizer;
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  const auto encoding = impl_->encode(text, std::nullopt, add_special_tokens);
  return {encoding.ids.begin(), encoding.ids.end()};
}

namespace {

struct ResolvedOptions {
  std::optional<tokenizers::TruncationParams> truncation;
  std::optional<tokenizers::PaddingParams> padding;
  tokenizers::OffsetType offsets;
};

}  // namespace

static ResolvedOptions resolve(const TokenizerImpl& impl, const SpecialTokensMap& specials,
                               const EncodeOptions& options) {
  ResolvedOptions r;
  r.offsets = options.offsets_in_bytes ? tokenizers::OffsetType::Byte : tokenizers::OffsetType::Char;
  if (options.truncation) {
    tokenizers::TruncationParams t;
    t.max_length = options.truncation->max_length;
    t.stride = options.truncation->stride;
    t.direction = options.truncation->direction == Side::Left ? tokenizers::TruncationDirection::Left
                                                               : tokenizers::TruncationDirection::Right;
    t.strategy = static_cast<tokenizers::TruncationStrategy>(options.truncation->strategy);
    r.truncation = t;
  } else if (!options.no_truncation) {
    r.truncation = impl.truncation();
  }
  if (options.padding) {
    tokenizers::PaddingParams p = impl.padding().value_or(tokenizers::PaddingParams());
    p.fixed = options.padding->length;
    p.direction = options.padding->direction == Side::Left ? tokenizers::PaddingDirection::Left
                                                            : tokenizers::PaddingDirection::Right;
    p.pad_to_multiple_of = options.padding->pad_to_multiple_of;
    p.pad_type_id = static_cast<uint32_t>(options.padding->pad_type_id);
    if (options.padding->pad_token) {
      p.pad_token = *options.padding->pad_token;
    } else if (!impl.padding() && specials.pad_token) {
      p.pad_token = *specials.pad_token;
    }
    if (const auto id = impl.token_to_id(p.pad_token)) {
      p.pad_id = *id;
    } else if (options.padding->pad_token || !impl.padding()) {
      throw TokenizerError("padding: the pad token '" + p.pad_token + "' is not in the vocabulary");
    }
    r.padding = p;
  } else if (!options.no_padding) {
    r.padding = impl.padding();
  }
  return r;
}

Encoding Tokenizer::encode_plus(const std::string& text, const EncodeOptions& options) const {
  const ResolvedOptions r = resolve(*impl_, special_tokens_, options);
  return to_public(impl_->encode_with(text, std::nullopt, options.add_special_tokens, r.offsets,
                                      r.truncation ? &*r.truncation : nullptr, r.padding ? &*r.padding : nullptr));
}

Encoding Tokenizer::encode_plus(const std::string& text, const std::string& pair, const EncodeOptions& options) const {
  const ResolvedOptions r = resolve(*impl_, special_tokens_, options);
  return to_public(impl_->encode_with(text, pair, options.add_special_tokens, r.offsets,
                                      r.truncation ? &*r.truncation : nullptr, r.padding ? &*r.padding : nullptr));
}

std::vector<Encoding> Tokenizer::encode_batch_pairs(const std::vector<std::pair<std::string, std::string>>& pairs,
                                              const EncodeOptions& options) const {
  const ResolvedOptions r = resolve(*impl_, special_tokens_, options);
  std::vector<tokenizers::Encoding> encodings;
  for (const auto& [text, pair] : pairs) {
    encodings.push_back(impl_->encode_with(text, pair, options.add_special_tokens, r.offsets,
                                           r.truncation ? &*r.truncation : nullptr,
                                           r.padding ? &*r.padding : nullptr));
  }
  if (r.padding) tokenizers::pad_encodings(encodings, *r.padding);
  std::vector<Encoding> out;
  for (const auto& e : encodings) out.push_back(to_public(e));
  return out;
}

std::vector<Encoding> Tokenizer::encode_batch(const std::vector<std::string>& texts, const EncodeOptions& options) const {
  const ResolvedOptions r = resolve(*impl_, special_tokens_, options);
  std::vector<tokenizers::Encoding> encodings;
  for (const auto& text : texts) {
    encodings.push_back(impl_->encode_with(text, std::nullopt, options.add_special_tokens, r.offsets,
                                           r.truncation ? &*r.truncation : nullptr,
                                           r.padding ? &*r.padding : nullptr));
  }
  if (r.padding) tokenizers::pad_encodings(encodings, *r.padding);
  std::vector<Encoding> out;
  for (const auto& e : encodings) out.push_back(to_public(e));
  return out;
}

std::vector<std::string> Tokenizer::batch_decode(const std::vector<std::vector<int64_t>>& ids,
                                                 bool skip_special_tokens) const {
  std::vector<std::string> texts;
  for (const auto& row : ids) texts.push_back(decode(row, skip_special_tokens));
  return texts;
}

std::vector<int64_t> Tokenizer::convert_tokens_to_ids(const std::vector<std::string>& tokens) const {
  const int64_t unk = special_token_id("unk_token");
  std::vector<int64_t> ids;
  for (const auto& token : tokens) {
    const int64_t id = token_to_id(token);
    ids.push_back(id >= 0 ? id : unk);
  }
  return ids;
}

std::vector<std::string> Tokenizer::convert_ids_to_tokens(const std::vector<int64_t>& ids,
                                                          bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  for (int64_t id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    tokens.push_back(id_to_token(id));
  }
  return tokens;
}

const SpecialTokensMap& Tokenizer::special_tokens() const { return special_tokens_; }

int64_t Tokenizer::special_token_id(const std::string& name) const {
  auto* slot = special_slot(const_cast<SpecialTokensMap&>(special_tokens_), name);
  if (slot == nullptr) throw ValueError("unknown special token name '" + name + "'");
  if (!*slot) return -1;
  return token_to_id(**slot);
}

const nlohmann::json& Tokenizer::tokenizer_config() const { return config_; }

std::string Tokenizer::apply_chat_template(const nlohmann::json& messages, bool add_generation_prompt,
                                           const std::string& template_name) const {
  const auto it = config_.find("chat_template");
  if (it == config_.end() || it->is_null()) {
    throw ValueError("this tokenizer has no chat_template in tokenizer_config.json");
  }
  std::string source;
  if (it->is_string()) {
    source = it->get<std::string>();
  } else if (it->is_array()) {
    const std::string wanted = template_name.empty() ? "default" : template_name;
    std::string names;
    for (const auto& entry : *it) {
      const std::string name = entry.value("name", "");
      names += (names.empty() ? "" : ", ") + name;
      if (name == wanted) source = entry.value("template", "");
    }
    if (source.empty()) throw ValueError("chat template '" + wanted + "' not found (available: " + names + ")");
  } else {
    throw TokenizerError("tokenizer_config.json: chat_template must be a string or a list of {name, template}");
  }
  nlohmann::json context = {{"messages", messages}, {"add_generation_prompt", add_generation_prompt}};
  const std::pair<const char*, const std::optional<std::string>*> specials[] = {
      {"bos_token", &special_tokens_.bos_token}, {"eos_token", &special_tokens_.eos_token},
      {"unk_token", &special_tokens_.unk_token}, {"pad_token", &special_tokens_.pad_token},
      {"sep_token", &special_tokens_.sep_token}, {"cls_token", &special_tokens_.cls_token},
      {"mask_token", &special_tokens_.mask_token}};
  for (const auto& [name, value] : specials) {
    if (*value) context[name] = **value;
  }
  return render_chat_template(source, context);
}

std::vector<int64_t> Tokenizer::apply_chat_template_ids(const nlohmann::json& messages, bool add_generation_prompt,
                                                        const std::string& template_name) const {
  return encode(apply_chat_template(messages, add_generation_prompt, template_name), /*add_special_tokens=*/false);
}

std::vector<std::string> Tokenizer::tokenize(const std::string& text) const {
  return impl_->encode(text, std::nullopt, false).tokens;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

int64_t Tokenizer::token_to_id(const std::string& token) const {
  const auto id = impl_->token_to_id(token);
  return id ? static_cast<int64_t>(*id) : -1;
}

std::string Tokenizer::id_to_token(int64_t id) const { return impl_->id_to_token(id).value_or(""); }

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->vocab_size()); }

bool Tokenizer::is_special(int64_t id) const { return impl_->is_special(id); }

namespace {

constexpr char kReplacementChar[] = "\xEF\xBF\xBD";

// "<0xE4>": one byte of a character the vocabulary lacks; the ones after it decide what it decodes to.
bool is_byte_fallback_token(const std::string& token) {
  return token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>';
}

// Length of `text` without a trailing run of U+FFFD, which an incomplete UTF-8 sequence decodes to.
size_t complete_prefix(const std::string& text) {
  size_t end = text.size();
  while (end >= 3 && text.compare(end - 3, 3, kReplacementChar) == 0) end -= 3;
  return end;
}

}  // namespace

TextStreamer::TextStreamer(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string TextStreamer::put(int64_t id) {
  ids_.push_back(id);
  // A run of byte tokens is only final once a non-byte token ends it.
  if (is_byte_fallback_token(tokenizer_.id_to_token(id))) return "";
  const std::string text = tokenizer_.decode(ids_, skip_special_tokens_);
  const size_t printable = complete_prefix(text);
  if (printable <= printed_) return "";
  std::string piece = text.substr(printed_, printable - printed_);
  printed_ = printable;
  return piece;
}

std::string TextStreamer::end() {
  const std::string text = tokenizer_.decode(ids_, skip_special_tokens_);
  std::string rest = text.size() > printed_ ? text.substr(printed_) : "";
  ids_.clear();
  printed_ = 0;
  return rest;
}

}  // namespace transformers
