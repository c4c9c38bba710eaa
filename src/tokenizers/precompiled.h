// SentencePiece's precompiled_charsmap (the Rust crate spm_precompiled): a darts-clone double-array trie over
// UTF-8 byte strings whose values index NUL-terminated replacement strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace transformers::tokenizers {

class PrecompiledCharsmap {
 public:
  // `blob` is the raw charsmap (already base64-decoded). Throws TokenizerError when it is malformed.
  explicit PrecompiledCharsmap(const std::string& blob);
  bool empty() const { return trie_.empty(); }

  // spm_precompiled's transform: the replacement for the shortest key that prefixes `chunk`.
  std::optional<std::string_view> transform(std::string_view chunk) const;
  // SentencePiece's normalizer: the longest key that prefixes `text`, with its byte length.
  std::optional<std::pair<std::string_view, size_t>> longest_prefix(std::string_view text) const;

 private:
  // Values of the keys that prefix `key`, shortest first, with the matched lengths.
  void common_prefix_search(std::string_view key, std::vector<std::pair<uint32_t, size_t>>& results) const;
  std::string_view normalized_at(uint32_t index) const;

  std::vector<uint32_t> trie_;
  std::string normalized_;
};

std::string base64_decode(const std::string& text);

}  // namespace transformers::tokenizers
