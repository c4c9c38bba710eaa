// Encodings and post-processors (tokenizers/src/tokenizer/encoding.rs, src/processors, src/utils/truncation.rs and
// padding.rs): the model's tokens of one or two sequences become the final encoding, with the special tokens of a
// template, truncated and padded.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizers/component_config.h"
#include "tokenizers/normalized_string.h"

namespace transformers::tokenizers {

enum class TruncationDirection { Left, Right };
enum class PaddingDirection { Left, Right };

struct Encoding {
  std::vector<uint32_t> ids;
  std::vector<std::string> tokens;
  std::vector<Offsets> offsets;  // in the input text of the token's sequence (bytes, or characters if asked)
  std::vector<uint32_t> type_ids;
  std::vector<std::optional<uint32_t>> word_ids;
  std::vector<std::optional<uint32_t>> sequence_ids;  // filled from sequence_ranges by fill_sequence_ids()
  std::vector<uint32_t> special_tokens_mask;
  std::vector<uint32_t> attention_mask;
  std::vector<Encoding> overflowing;
  std::map<uint32_t, std::pair<size_t, size_t>> sequence_ranges;

  size_t size() const { return ids.size(); }
  void push_back(uint32_t id, std::string token, Offsets offset, uint32_t type_id, std::optional<uint32_t> word,
                 std::optional<uint32_t> sequence, bool special);
  // Encoding::merge_with: overflowing parts are combined too.
  void merge_with(Encoding pair, bool growing_offsets);
  void set_sequence_id(uint32_t sequence);
  void set_type_id(uint32_t type_id);
  void truncate(size_t max_len, size_t stride, TruncationDirection direction);
  void pad(size_t target_length, uint32_t pad_id, uint32_t pad_type_id, const std::string& pad_token,
           PaddingDirection direction);
  // get_sequence_ids(): every token of a range gets its sequence, and without ranges everything is sequence 0.
  void fill_sequence_ids();
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual size_t added_tokens(bool is_pair) const = 0;
  virtual std::vector<Encoding> process_encodings(std::vector<Encoding> encodings, bool add_special_tokens) const = 0;
  // PostProcessor::process: sequence and type ids per input, then process_encodings, then merge.
  Encoding process(Encoding first, std::optional<Encoding> second, bool add_special_tokens) const;
};

// No post-processor: the sequences are joined as they are.
Encoding default_post_process(Encoding first, std::optional<Encoding> second);

// `null` -> nullptr.
std::unique_ptr<PostProcessor> build_post_processor(const json& config);

// TemplateProcessing as transformers' LlamaTokenizerFast.update_post_processor builds it.
std::unique_ptr<PostProcessor> make_bos_eos_template(const std::optional<std::pair<std::string, uint32_t>>& bos,
                                                     const std::optional<std::pair<std::string, uint32_t>>& eos);

}  // namespace transformers::tokenizers
