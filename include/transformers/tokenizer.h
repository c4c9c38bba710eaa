// Tokenizer reading Hugging Face `tokenizer.json` (the `tokenizers` library's format).
// Pipeline as in `tokenizers`: added tokens split -> normalizer -> pre-tokenizer -> model -> post-processor;
// decoding: model ids -> tokens -> decoder chain.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace transformers {

class TokenizerImpl;

// One encoded input, as the `tokenizers` library's Encoding.
struct Encoding {
  std::vector<int64_t> ids;
  std::vector<std::string> tokens;
  std::vector<std::pair<size_t, size_t>> offsets;  // [start, end) in the token's input: code points (or UTF-8 bytes)
  std::vector<int64_t> attention_mask;
  std::vector<int64_t> type_ids;
  std::vector<int64_t> special_tokens_mask;
  std::vector<std::optional<int64_t>> word_ids;      // nullopt for special and padding tokens
  std::vector<std::optional<int64_t>> sequence_ids;  // 0 = text, 1 = pair, nullopt = special/padding
  std::vector<Encoding> overflowing;                 // the parts truncation cut off
  size_t size() const { return ids.size(); }
};

enum class TruncationStrategy { LongestFirst, OnlyFirst, OnlySecond };
enum class Side { Left, Right };

struct TruncationOptions {
  size_t max_length = 512;
  size_t stride = 0;
  TruncationStrategy strategy = TruncationStrategy::LongestFirst;
  Side direction = Side::Right;
};

struct PaddingOptions {
  std::optional<size_t> length;  // pad to this length; nullopt = the longest of the batch
  Side direction = Side::Right;
  std::optional<size_t> pad_to_multiple_of;
  std::optional<std::string> pad_token;  // default: the tokenizer's pad_token (tokenizer.json's, or "[PAD]")
  int64_t pad_type_id = 0;
};

struct EncodeOptions {
  bool add_special_tokens = true;
  // Unset: what tokenizer.json's "truncation" / "padding" say (the tokenizers library's behaviour).
  std::optional<TruncationOptions> truncation;
  std::optional<PaddingOptions> padding;
  bool no_truncation = false;  // ignore tokenizer.json's "truncation"
  bool no_padding = false;     // ignore tokenizer.json's "padding"
  bool offsets_in_bytes = false;
};

// bos/eos/unk/sep/pad/cls/mask from tokenizer_config.json and special_tokens_map.json.
struct SpecialTokensMap {
  std::optional<std::string> bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token;
  std::vector<std::string> additional_special_tokens;
};

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a SentencePiece .model. Throws TokenizerError naming the file and the
  // unsupported/invalid part.
  static Tokenizer from_file(const std::string& path);
  // A model folder: tokenizer.json (else a SentencePiece .model: tokenizer.model, spiece.model,
  // sentencepiece.bpe.model), with tokenizer_config.json and special_tokens_map.json when present.
  static Tokenizer from_pretrained(const std::string& dir);

  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const;
  // The full encoding (transformers' encode_plus; the tokenizers library's Tokenizer.encode).
  Encoding encode_plus(const std::string& text, const EncodeOptions& options = {}) const;
  Encoding encode_plus(const std::string& text, const std::string& pair, const EncodeOptions& options = {}) const;
  // Padding (BatchLongest) applies across the batch.
  std::vector<Encoding> encode_batch(const std::vector<std::string>& texts, const EncodeOptions& options = {}) const;
  std::vector<Encoding> encode_batch_pairs(const std::vector<std::pair<std::string, std::string>>& pairs,
                                     const EncodeOptions& options = {}) const;
  std::vector<std::string> batch_decode(const std::vector<std::vector<int64_t>>& ids,
                                        bool skip_special_tokens = false) const;
  // Missing tokens map to the unk token's id (-1 without one).
  std::vector<int64_t> convert_tokens_to_ids(const std::vector<std::string>& tokens) const;
  std::vector<std::string> convert_ids_to_tokens(const std::vector<int64_t>& ids,
                                                 bool skip_special_tokens = false) const;

  const SpecialTokensMap& special_tokens() const;
  // The id of "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token" or "mask_token";
  // -1 when the tokenizer has none.
  int64_t special_token_id(const std::string& name) const;
  // tokenizer_config.json as read (empty object without one).
  const nlohmann::json& tokenizer_config() const;

  // Renders tokenizer_config.json's chat_template (a string, or a list of {"name", "template"}; `template_name`
  // picks one, default "default") with messages, add_generation_prompt and the special tokens.
  std::string apply_chat_template(const nlohmann::json& messages, bool add_generation_prompt = false,
                                  const std::string& template_name = "") const;
  // The same, tokenized without adding special tokens (the template writes them), as transformers' tokenize=True.
  std::vector<int64_t> apply_chat_template_ids(const nlohmann::json& messages, bool add_generation_prompt = false,
                                               const std::string& template_name = "") const;
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
  SpecialTokensMap special_tokens_;
  nlohmann::json config_ = nlohmann::json::object();
};

// transformers' AutoTokenizer: every tokenizer here is a Tokenizer.
struct AutoTokenizer {
  static Tokenizer from_pretrained(const std::string& dir) { return Tokenizer::from_pretrained(dir); }
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
