// Encodings and post-processors (tokenizers/src/tokenizer/encoding.rs, src/processors): the model's tokens
// of one or two sequences become the final encoding, with the special tokens of a template.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizers/component_config.h"
#include "tokenizers/normalized_string.h"

namespace transformers::tokenizers {

struct Encoding {
  std::vector<uint32_t> ids;
  std::vector<std::string> tokens;
  std::vector<Offsets> offsets;  // in the input text of the token's sequence (bytes, or characters if asked)
  std::vector<uint32_t> type_ids;
  std::vector<std::optional<uint32_t>> word_ids;
  std::vector<std::optional<uint32_t>> sequence_ids;
  std::vector<uint32_t> special_tokens_mask;
  std::vector<uint32_t> attention_mask;

  size_t size() const { return ids.size(); }
  void push_back(uint32_t id, std::string token, Offsets offset, uint32_t type_id, std::optional<uint32_t> word,
                 std::optional<uint32_t> sequence, bool special);
  void append(const Encoding& other);
  void set_sequence_id(uint32_t sequence);
  void set_type_id(uint32_t type_id);
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual Encoding process(Encoding first, std::optional<Encoding> second, bool add_special_tokens) const = 0;
};

// No post-processor: the sequences are joined as they are.
Encoding default_post_process(Encoding first, std::optional<Encoding> second);

// `null` -> nullptr.
std::unique_ptr<PostProcessor> build_post_processor(const json& config);

// TemplateProcessing as transformers' LlamaTokenizerFast.update_post_processor builds it.
std::unique_ptr<PostProcessor> make_bos_eos_template(const std::optional<std::pair<std::string, uint32_t>>& bos,
                                                     const std::optional<std::pair<std::string, uint32_t>>& eos);

}  // namespace transformers::tokenizers
