// Models (tokenizers/src/models): turn one word into tokens with ids.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizers/component_config.h"
#include "tokenizers/normalized_string.h"

namespace transformers::tokenizers {

class Model {
 public:
  virtual ~Model() = default;
  // Token offsets are bytes of `word`.
  virtual std::vector<Token> tokenize(const std::string& word) const = 0;
  virtual std::optional<uint32_t> token_to_id(const std::string& token) const = 0;
  virtual std::optional<std::string> id_to_token(uint32_t id) const = 0;
  virtual size_t vocab_size() const = 0;
};

std::unique_ptr<Model> build_model(const json& config);

}  // namespace transformers::tokenizers
