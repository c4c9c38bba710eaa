// Decoders (tokenizers/src/decoders): token strings back to text.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizers/component_config.h"

namespace transformers::tokenizers {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
};

// `null` -> nullptr.
std::unique_ptr<Decoder> build_decoder(const json& config);

}  // namespace transformers::tokenizers
