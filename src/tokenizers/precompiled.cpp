#include "tokenizers/precompiled.h"

#include "transformers/errors.h"

namespace transformers::tokenizers {

namespace {

bool has_leaf(uint32_t unit) { return ((unit >> 8) & 1) == 1; }
uint32_t value(uint32_t unit) { return unit & ((1u << 31) - 1); }
uint32_t label(uint32_t unit) { return unit & ((1u << 31) | 0xFF); }
size_t offset(uint32_t unit) { return static_cast<size_t>((unit >> 10) << ((unit & (1u << 9)) >> 6)); }

}  // namespace

std::string base64_decode(const std::string& text) {
  auto decode_char = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=' || c == '\n' || c == '\r') continue;
    const int v = decode_char(c);
    if (v < 0) throw TokenizerError("invalid base64 character in precompiled_charsmap");
    buffer = (buffer << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  return out;
}

PrecompiledCharsmap::PrecompiledCharsmap(const std::string& blob) {
  if (blob.empty()) return;
  if (blob.size() < 4) throw TokenizerError("precompiled_charsmap is shorter than its 4-byte header");
  const auto* bytes = reinterpret_cast<const unsigned char*>(blob.data());
  const size_t trie_size = bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (static_cast<size_t>(bytes[3]) << 24);
  if (trie_size % 4 != 0 || 4 + trie_size > blob.size()) {
    throw TokenizerError("precompiled_charsmap: trie size " + std::to_string(trie_size) + " does not fit the " +
                         std::to_string(blob.size()) + "-byte blob");
  }
  trie_.resize(trie_size / 4);
  for (size_t i = 0; i < trie_.size(); ++i) {
    const unsigned char* p = bytes + 4 + 4 * i;
    trie_[i] = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
  }
  normalized_ = blob.substr(4 + trie_size);
}

void PrecompiledCharsmap::common_prefix_search(std::string_view key,
                                               std::vector<std::pair<uint32_t, size_t>>& results) const {
  results.clear();
  if (trie_.empty()) return;
  size_t node_pos = 0;
  uint32_t unit = trie_[node_pos];
  node_pos ^= offset(unit);
  for (size_t i = 0; i < key.size(); ++i) {
    const auto c = static_cast<unsigned char>(key[i]);
    if (c == 0) break;
    node_pos ^= c;
    if (node_pos >= trie_.size()) return;
    unit = trie_[node_pos];
    if (label(unit) != c) return;
    node_pos ^= offset(unit);
    if (node_pos >= trie_.size()) return;
    if (has_leaf(unit)) results.push_back({value(trie_[node_pos]), i + 1});
  }
}

std::string_view PrecompiledCharsmap::normalized_at(uint32_t index) const {
  if (index >= normalized_.size()) return {};
  size_t end = index;
  while (end < normalized_.size() && normalized_[end] != '\0') ++end;
  return std::string_view(normalized_).substr(index, end - index);
}

std::optional<std::string_view> PrecompiledCharsmap::transform(std::string_view chunk) const {
  thread_local std::vector<std::pair<uint32_t, size_t>> results;
  common_prefix_search(chunk, results);
  if (results.empty()) return std::nullopt;
  return normalized_at(results[0].first);
}

std::optional<std::pair<std::string_view, size_t>> PrecompiledCharsmap::longest_prefix(std::string_view text) const {
  thread_local std::vector<std::pair<uint32_t, size_t>> results;
  common_prefix_search(text, results);
  if (results.empty()) return std::nullopt;
  const auto& longest = results.back();
  return std::make_pair(normalized_at(longest.first), longest.second);
}

}  // namespace transformers::tokenizers
