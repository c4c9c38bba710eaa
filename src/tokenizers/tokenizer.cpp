#include "transformers/tokenizer.h"

#include <fstream>
#include <utility>

#include "tokenizers/tokenizer_impl.h"
#include "transformers/errors.h"

namespace transformers {

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) { return Tokenizer(TokenizerImpl::from_file(path)); }

Tokenizer Tokenizer::from_pretrained(const std::string& dir) {
  auto impl = TokenizerImpl::from_file(dir + "/tokenizer.json");
  const std::string config_path = dir + "/tokenizer_config.json";
  if (std::ifstream file(config_path); file) {
    try {
      impl->apply_tokenizer_config(tokenizers::json::parse(file));
    } catch (const tokenizers::json::exception& e) {
      throw TokenizerError(config_path + ": " + e.what());
    } catch (const TokenizerError& e) {
      throw TokenizerError(config_path + ": " + e.what());
    }
  }
  return Tokenizer(std::move(impl));
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  const auto encoding = impl_->encode(text, std::nullopt, add_special_tokens);
  return {encoding.ids.begin(), encoding.ids.end()};
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
