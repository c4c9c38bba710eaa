// Pre-tokenizers (tokenizers/src/pre_tokenizers): cut the normalized pieces into words for the model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizers/component_config.h"
#include "tokenizers/normalized_string.h"

namespace transformers::tokenizers {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(PreTokenizedString& text) const = 0;
};

// `null` -> nullptr.
std::unique_ptr<PreTokenizer> build_pre_tokenizer(const json& config);

enum class PrependScheme { Always, First, Never };

// Shared by the Metaspace pre-tokenizer and decoder.
struct MetaspaceConfig {
  char32_t replacement = U'\u2581';
  PrependScheme prepend_scheme = PrependScheme::Always;
  bool split = true;
};
MetaspaceConfig read_metaspace_config(const json& config);

}  // namespace transformers::tokenizers
