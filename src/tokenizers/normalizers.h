// Normalizers (tokenizers/src/normalizers): rewrite the text of each piece, keeping alignments.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizers/component_config.h"
#include "tokenizers/normalized_string.h"

namespace transformers::tokenizers {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(NormalizedString& text) const = 0;
};

// `null` -> nullptr.
std::unique_ptr<Normalizer> build_normalizer(const json& config);

class Regex;

// A {"String": ...} or {"Regex": ...} pattern (Replace normalizer and decoder, Split pre-tokenizer).
class Pattern {
 public:
  Pattern(const json& config, const std::string& stage);
  ~Pattern();
  Pattern(Pattern&&) noexcept;
  std::vector<PatternMatch> find_matches(const std::string& text) const;

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
};

}  // namespace transformers::tokenizers
