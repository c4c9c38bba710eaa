// SentencePiece `.model` files without libsentencepiece (which clashes with libtorch's protobuf): the ModelProto is
// read with a small protobuf wire-format reader and run with this layer's Unigram / a score-ordered BPE, the
// SentencePiece normalizer (precompiled charsmap, dummy prefix, whitespace rules) and its decoder.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace transformers {
class TokenizerImpl;
}

namespace transformers::tokenizers {

enum class PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct SentencePieceModel {
  struct Piece {
    std::string piece;
    float score = 0.0f;
    PieceType type = PieceType::Normal;
  };
  std::vector<Piece> pieces;
  int model_type = 1;  // 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
  int unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
  std::string precompiled_charsmap;
};

// Throws TokenizerError naming `path` for a file that is not a ModelProto.
SentencePieceModel read_sentencepiece_model(const std::string& path);

// SentencePieceProcessor::Encode / Decode with default options (no bos/eos).
class SentencePieceProcessor {
 public:
  explicit SentencePieceProcessor(SentencePieceModel model);
  ~SentencePieceProcessor();
  // The normalized text (with U+2581 for spaces).
  std::string normalize(const std::string& text) const;
  // (piece, id) of a normalized text.
  std::vector<std::pair<std::string, int>> encode_normalized(const std::string& normalized) const;
  std::vector<std::pair<std::string, int>> encode(const std::string& text) const { return encode_normalized(normalize(text)); }
  std::string decode(const std::vector<int>& ids) const;
  const SentencePieceModel& model() const { return model_; }

 private:
  struct Impl;
  SentencePieceModel model_;
  std::unique_ptr<Impl> impl_;
};

// A tokenizer (no post-processor: tokenizer_config.json's flags add bos/eos for Llama-style classes).
std::unique_ptr<TokenizerImpl> load_sentencepiece(const std::string& path);

}  // namespace transformers::tokenizers
