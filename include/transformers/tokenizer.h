// Tokenizer reading Hugging Face `tokenizer.json` (the `tokenizers` library's format).
// Pipeline as in `tokenizers`: added tokens split -> normalizer -> pre-tokenizer -> model -> post-processor;
// decoding: model ids -> tokens -> decoder chain.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace transformers {

class TokenizerImpl;

class Tokenizer {
 public:
  // `path` is a tokenizer.json file. Throws TokenizerError naming the file and the unsupported/invalid part.
  static Tokenizer from_file(const std::string& path);
  // A model folder: reads tokenizer.json, and tokenizer_config.json when present (add_bos_token, add_eos_token).
  static Tokenizer from_pretrained(const std::string& dir);

  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const;
  std::vector<std::string> tokenize(const std::string& text) const;  // tokens, without special tokens
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  int64_t token_to_id(const std::string& token) const;  // -1 when absent
  std::string id_to_token(int64_t id) const;            // "" when out of range
  int64_t vocab_size() const;                           // model vocab + added tokens
  bool is_special(int64_t id) const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  explicit Tokenizer(std::unique_ptr<TokenizerImpl> impl);
  std::unique_ptr<TokenizerImpl> impl_;
};

// Prints text as ids arrive, like transformers' TextStreamer: decodes the whole sequence and emits only the new,
// complete characters (holds back a trailing incomplete UTF-8 sequence / byte-fallback run).
class TextStreamer {
 public:
  TextStreamer(const Tokenizer& tokenizer, bool skip_special_tokens = true);
  // Returns the text that became printable with this id.
  std::string put(int64_t id);
  // Returns whatever is left.
  std::string end();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int64_t> ids_;
  size_t printed_ = 0;
};

}  // namespace transformers
