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
}  // namespace tokenizers

class TokenizerImpl {
 public:
  // Errors name `path`.
  static std::unique_ptr<TokenizerImpl> from_file(const std::string& path);
  static std::unique_ptr<TokenizerImpl> from_json(const tokenizers::json& config);
  // tokenizer_config.json: Llama-style classes rebuild the template from add_bos_token / add_eos_token.
  void apply_tokenizer_config(const tokenizers::json& config);

  tokenizers::Encoding encode(const std::string& text, const std::optional<std::string>& pair, bool add_special_tokens,
                              tokenizers::OffsetType offset_type = tokenizers::OffsetType::Byte) const;
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
};

}  // namespace transformers
