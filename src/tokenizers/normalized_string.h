// The text a pipeline stage works on, aligned with the original input (tokenizers/src/tokenizer/normalizer.rs
// and pre_tokenizer.rs). Every byte of the normalized text records the byte range of the original text it came
// from, so token offsets can be reported in the caller's text whatever the normalizers did.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace transformers::tokenizers {

using Offsets = std::pair<size_t, size_t>;

struct Token {
  uint32_t id;
  std::string value;
  Offsets offsets;  // bytes of the NormalizedString the token was produced from
};

// A pattern match (or the gap between two): [start, end) in bytes, is_match false for the gaps.
struct PatternMatch {
  Offsets offsets;
  bool is_match;
};

std::vector<PatternMatch> find_literal(const std::string& text, const std::string& pattern);
std::vector<PatternMatch> find_chars(const std::string& text, const std::function<bool(char32_t)>& predicate);

enum class SplitDelimiterBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

class NormalizedString {
 public:
  explicit NormalizedString(std::string original = "");

  const std::string& get() const { return normalized_; }
  const std::string& original() const { return original_; }
  bool empty() const { return normalized_.empty(); }
  size_t size() const { return normalized_.size(); }
  // [start, end) of this piece in the whole input, in bytes.
  Offsets offsets_original() const { return {original_shift_, original_shift_ + original_.size()}; }

  // Normalized byte range -> byte range of `original()`; nullopt when the range is invalid.
  std::optional<Offsets> convert_offsets(Offsets normalized_range) const;
  NormalizedString slice(Offsets normalized_range) const;
  std::vector<NormalizedString> split(const std::vector<PatternMatch>& matches, SplitDelimiterBehavior behavior) const;

  // Replaces the characters of normalized [start, end) by `dest`: (char, change) where change 0 replaces one
  // character, +1 inserts one, -n replaces one and removes n more; `initial_offset` characters are dropped first.
  void transform_range(Offsets normalized_range, const std::vector<std::pair<char32_t, int>>& dest,
                       size_t initial_offset);
  // transform_range over the whole text.
  void transform(const std::vector<std::pair<char32_t, int>>& dest, size_t initial_offset) {
    transform_range({0, normalized_.size()}, dest, initial_offset);
  }
  // NormalizedString::filter / map / lowercase / nfd... of tokenizers.
  void filter(const std::function<bool(char32_t)>& keep);
  void map(const std::function<char32_t(char32_t)>& fn);
  void lowercase();
  void append(const std::string& s);
  void prepend(const std::string& s);
  void replace(const std::vector<PatternMatch>& matches, const std::string& content);
  void strip(bool left, bool right);

 private:
  std::string original_;
  std::string normalized_;
  std::vector<Offsets> alignments_;  // one per normalized byte, into original_
  size_t original_shift_ = 0;
};

struct Split {
  NormalizedString normalized;
  std::optional<std::vector<Token>> tokens;  // set once the piece is final (added token, or model output)
};

// The input cut into pieces that later stages refine (tokenizers' PreTokenizedString).
class PreTokenizedString {
 public:
  explicit PreTokenizedString(const std::string& text);

  using SplitFn = std::function<std::vector<Split>(NormalizedString)>;
  // Replaces each piece that has no tokens yet by the pieces `fn` makes of it; empty pieces are dropped.
  void split(const SplitFn& fn);
  std::vector<Split>& splits() { return splits_; }
  const std::vector<Split>& splits() const { return splits_; }
  const std::string& original() const { return original_; }

 private:
  std::string original_;
  std::vector<Split> splits_;
};

}  // namespace transformers::tokenizers
