// The tokenizer.json pipeline behind transformers::Tokenizer (tokenizers/src/tokenizer/mod.rs, TokenizerImpl):
// added tokens -> normalizer -> pre-tokenizer -> model -> post-processor; decoding through the decoder chain.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizers/added_vocabulary.h"
#include "tokenizers/component_config.h"
#include "tokenizers/decoders.h"
#include "tokenizers/models.h"
#include "tokenizers/normalizers.h"
#include "tokenizers/post_processors.h"
#include "tokenizers/pre_tokenizers.h"

namespace transformers {

namespace tokenizers {
enum class OffsetType { Byte, Char };

// tokenizers/src/utils/truncation.rs and padding.rs
enum class TruncationStrategy { LongestFirst, OnlyFirst, OnlySecond };
struct TruncationParams {
  TruncationDirection direction = TruncationDirection::Right;
  size_t max_length = 512;
  TruncationStrategy strategy = TruncationStrategy::LongestFirst;
  size_t stride = 0;
};
struct PaddingParams {
  std::optional<size_t> fixed;  // PaddingStrategy::Fixed(n); nullopt = BatchLongest
  PaddingDirection direction = PaddingDirection::Right;
  std::optional<size_t> pad_to_multiple_of;
  uint32_t pad_id = 0;
  uint32_t pad_type_id = 0;
  std::string pad_token = "[PAD]";
};
TruncationParams read_truncation(const json& config);
PaddingParams read_padding(const json& config);
void pad_encodings(std::vector<Encoding>& encodings, const PaddingParams& params);
}  // namespace tokenizers

class TokenizerImpl {
 public:
  // Errors name `path`.
  static std::unique_ptr<TokenizerImpl> from_file(const std::string& path);
  static std::unique_ptr<TokenizerImpl> from_json(const tokenizers::json& config);
  // tokenizer_config.json: Llama-style classes rebuild the template from add_bos_token / add_eos_token.
  void apply_tokenizer_config(const tokenizers::json& config);

  // Truncation and padding from tokenizer.json.
  tokenizers::Encoding encode(const std::string& text, const std::optional<std::string>& pair, bool add_special_tokens,
                              tokenizers::OffsetType offset_type = tokenizers::OffsetType::Byte) const;
  // Explicit truncation and padding (nullptr: none).
  tokenizers::Encoding encode_with(const std::string& text, const std::optional<std::string>& pair,
                                   bool add_special_tokens, tokenizers::OffsetType offset_type,
                                   const tokenizers::TruncationParams* truncation,
                                   const tokenizers::PaddingParams* padding) const;
  const std::optional<tokenizers::TruncationParams>& truncation() const { return truncation_; }
  const std::optional<tokenizers::PaddingParams>& padding() const { return padding_; }
  tokenizers::Model& model() { return *model_; }
  const tokenizers::AddedVocabulary& added_vocabulary() const { return added_vocabulary_; }
  // A tokenizer from parts (SentencePiece .model files).
  static std::unique_ptr<TokenizerImpl> from_parts(std::unique_ptr<tokenizers::Normalizer> normalizer,
                                                   std::unique_ptr<tokenizers::PreTokenizer> pre_tokenizer,
                                                   std::unique_ptr<tokenizers::Model> model,
                                                   std::unique_ptr<tokenizers::PostProcessor> post_processor,
                                                   std::unique_ptr<tokenizers::Decoder> decoder,
                                                   const std::vector<tokenizers::AddedToken>& added_tokens);
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const;

  std::optional<uint32_t> token_to_id(const std::string& token) const;
  std::optional<std::string> id_to_token(int64_t id) const;
  size_t vocab_size() const;
  bool is_special(int64_t id) const;

 private:
  tokenizers::Encoding encode_sequence(const std::string& text, uint32_t type_id,
                                       tokenizers::OffsetType offset_type) const;

  tokenizers::AddedVocabulary added_vocabulary_;
  std::unique_ptr<tokenizers::Normalizer> normalizer_;
  std::unique_ptr<tokenizers::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<tokenizers::Model> model_;
  std::unique_ptr<tokenizers::PostProcessor> post_processor_;
  std::unique_ptr<tokenizers::Decoder> decoder_;
  std::optional<tokenizers::TruncationParams> truncation_;
  std::optional<tokenizers::PaddingParams> padding_;
};

}  // namespace transformers
