// Normalizers (tokenizers/src/normalizers): rewrite the text of each piece, keeping alignments.
#pragma once

#include <memory>
#include <string>

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

// The literal of a {"String": ...} pattern (Replace normalizer and decoder); Regex patterns are unsupported.
std::string literal_pattern(const json& pattern, const std::string& stage);

}  // namespace transformers::tokenizers
