// Port of tokenizers/src/tokenizer/normalizer.rs (NormalizedString) and pattern.rs.
#include "tokenizers/normalized_string.h"

#include <algorithm>
#include <utility>

#include "tokenizers/unicode.h"

namespace transformers::tokenizers {

std::vector<PatternMatch> find_literal(const std::string& text, const std::string& pattern) {
  if (text.empty()) return {{{0, 0}, false}};
  if (pattern.empty()) return {{{0, text.size()}, false}};
  std::vector<PatternMatch> matches;
  size_t prev = 0;
  for (size_t start = text.find(pattern); start != std::string::npos; start = text.find(pattern, prev)) {
    if (prev != start) matches.push_back({{prev, start}, false});
    prev = start + pattern.size();
    matches.push_back({{start, prev}, true});
  }
  if (prev != text.size()) matches.push_back({{prev, text.size()}, false});
  return matches;
}

std::vector<PatternMatch> find_chars(const std::string& text, const std::function<bool(char32_t)>& predicate) {
  if (text.empty()) return {{{0, 0}, false}};
  std::vector<PatternMatch> matches;
  size_t last_offset = 0;
  for (size_t pos = 0, len = 0; pos < text.size(); pos += len) {
    const char32_t c = decode_utf8_at(text, pos, &len);
    if (!predicate(c)) continue;
    if (last_offset < pos) matches.push_back({{last_offset, pos}, false});
    matches.push_back({{pos, pos + len}, true});
    last_offset = pos + len;
  }
  if (last_offset < text.size()) matches.push_back({{last_offset, text.size()}, false});
  return matches;
}

NormalizedString::NormalizedString(std::string original) : original_(std::move(original)), normalized_(original_) {
  alignments_.reserve(original_.size());
  for (size_t pos = 0, len = 0; pos < original_.size(); pos += len) {
    decode_utf8_at(original_, pos, &len);
    alignments_.insert(alignments_.end(), len, Offsets{pos, pos + len});
  }
}

std::optional<Offsets> NormalizedString::convert_offsets(Offsets range) const {
  if (range.first == range.second) return range;
  if (range.first > range.second || range.second > alignments_.size()) return std::nullopt;
  return Offsets{alignments_[range.first].first, alignments_[range.second - 1].second};
}

NormalizedString NormalizedString::slice(Offsets range) const {
  const Offsets original_range = convert_offsets(range).value_or(Offsets{0, 0});
  NormalizedString piece;
  if (original_range.first < original_range.second && original_range.second <= original_.size()) {
    piece.original_ = original_.substr(original_range.first, original_range.second - original_range.first);
  }
  piece.normalized_ = normalized_.substr(range.first, range.second - range.first);
  const size_t shift = original_range.first;
  piece.alignments_.reserve(range.second - range.first);
  for (size_t i = range.first; i < range.second; ++i) {
    const auto [start, end] = alignments_[i];
    piece.alignments_.push_back({start >= shift ? start - shift : 0, end >= shift ? end - shift : 0});
  }
  piece.original_shift_ = original_shift_ + shift;
  return piece;
}

std::vector<NormalizedString> NormalizedString::split(const std::vector<PatternMatch>& matches,
                                                      SplitDelimiterBehavior behavior) const {
  // (offsets, remove)
  std::vector<std::pair<Offsets, bool>> pieces;
  bool previous_match = false;
  switch (behavior) {
    case SplitDelimiterBehavior::Removed:
      for (const auto& m : matches) pieces.push_back({m.offsets, m.is_match});
      break;
    case SplitDelimiterBehavior::Isolated:
      for (const auto& m : matches) pieces.push_back({m.offsets, false});
      break;
    case SplitDelimiterBehavior::Contiguous:
      for (const auto& m : matches) {
        if (m.is_match == previous_match && !pieces.empty()) {
          pieces.back().first.second = m.offsets.second;
        } else {
          pieces.push_back({m.offsets, false});
        }
        previous_match = m.is_match;
      }
      break;
    case SplitDelimiterBehavior::MergedWithPrevious:
      for (const auto& m : matches) {
        if (m.is_match && !previous_match && !pieces.empty()) {
          pieces.back().first.second = m.offsets.second;
        } else {
          pieces.push_back({m.offsets, false});
        }
        previous_match = m.is_match;
      }
      break;
    case SplitDelimiterBehavior::MergedWithNext:
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->is_match && !previous_match && !pieces.empty()) {
          pieces.back().first.first = it->offsets.first;
        } else {
          pieces.push_back({it->offsets, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
  }
  std::vector<NormalizedString> result;
  for (const auto& [offsets, remove] : pieces) {
    if (!remove) result.push_back(slice(offsets));
  }
  return result;
}

void NormalizedString::transform_range(Offsets range, const std::vector<std::pair<char32_t, int>>& dest,
                                       size_t initial_offset) {
  const std::vector<char32_t> replaced = decode_utf8(normalized_.substr(range.first, range.second - range.first));
  size_t next_replaced = 0;
  auto take_replaced_bytes = [&]() -> size_t {
    if (next_replaced >= replaced.size()) return 0;
    return to_utf8(replaced[next_replaced++]).size();
  };
  size_t offset = range.first;
  for (size_t i = 0; i < initial_offset; ++i) offset += take_replaced_bytes();

  std::string text;
  std::vector<Offsets> alignments;
  for (const auto& [c, change] : dest) {
    Offsets align{0, 0};
    if (change > 0) {
      if (offset >= 1) align = alignments_.at(offset - 1);
    } else {
      align = alignments_.at(offset);
    }
    if (change <= 0) offset += take_replaced_bytes();
    for (int i = 0; i < -change; ++i) offset += take_replaced_bytes();
    const size_t before = text.size();
    append_utf8(text, c);
    alignments.insert(alignments.end(), text.size() - before, align);
  }
  alignments_.erase(alignments_.begin() + range.first, alignments_.begin() + range.second);
  alignments_.insert(alignments_.begin() + range.first, alignments.begin(), alignments.end());
  normalized_.replace(range.first, range.second - range.first, text);
}

void NormalizedString::filter(const std::function<bool(char32_t)>& keep) {
  std::vector<std::pair<char32_t, int>> dest;
  dest.reserve(normalized_.size());
  int removed = 0;
  size_t removed_start = 0;
  std::optional<char32_t> last;
  for (size_t pos = 0, len = 0; pos < normalized_.size(); pos += len) {
    const char32_t c = decode_utf8_at(normalized_, pos, &len);
    if (keep(c)) {
      if (last) {
        dest.push_back({*last, -removed});
      } else {
        removed_start = static_cast<size_t>(removed);
      }
      last = c;
      removed = 0;
    } else {
      ++removed;
    }
  }
  if (last) dest.push_back({*last, -removed});
  transform(dest, last ? removed_start : static_cast<size_t>(removed));
}

void NormalizedString::map(const std::function<char32_t(char32_t)>& fn) {
  std::vector<std::pair<char32_t, int>> dest;
  dest.reserve(normalized_.size());
  for (size_t pos = 0, len = 0; pos < normalized_.size(); pos += len) {
    dest.push_back({fn(decode_utf8_at(normalized_, pos, &len)), 0});
  }
  transform(dest, 0);
}

void NormalizedString::lowercase() {
  std::vector<std::pair<char32_t, int>> dest;
  dest.reserve(normalized_.size());
  for (size_t pos = 0, len = 0; pos < normalized_.size(); pos += len) {
    const std::u32string lower = to_lowercase(decode_utf8_at(normalized_, pos, &len));
    for (size_t i = 0; i < lower.size(); ++i) dest.push_back({lower[i], i > 0 ? 1 : 0});
  }
  transform(dest, 0);
}

void NormalizedString::append(const std::string& s) {
  if (normalized_.empty() || s.empty()) return;
  size_t start = normalized_.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(normalized_[start]) & 0xC0) == 0x80) --start;
  size_t len = 0;
  const char32_t last = decode_utf8_at(normalized_, start, &len);
  std::vector<std::pair<char32_t, int>> dest = {{last, 0}};
  for (char32_t c : decode_utf8(s)) dest.push_back({c, 1});
  transform_range({start, normalized_.size()}, dest, 0);
}

void NormalizedString::prepend(const std::string& s) {
  if (normalized_.empty()) return;
  size_t first_len = 0;
  const char32_t first = decode_utf8_at(normalized_, 0, &first_len);
  std::vector<std::pair<char32_t, int>> dest;
  for (char32_t c : decode_utf8(s)) dest.push_back({c, dest.empty() ? 0 : 1});
  dest.push_back({first, 1});
  transform_range({0, first_len}, dest, 0);
}

void NormalizedString::replace(const std::vector<PatternMatch>& matches, const std::string& content) {
  std::string text;
  std::vector<Offsets> alignments;
  size_t last_end = 0;
  for (const auto& m : matches) {
    if (!m.is_match) continue;
    const auto [start, end] = m.offsets;
    text.append(normalized_, last_end, start - last_end);
    alignments.insert(alignments.end(), alignments_.begin() + last_end, alignments_.begin() + start);
    // Inserted characters share the alignment of the last replaced byte.
    const Offsets align = end >= 1 ? alignments_[end - 1] : Offsets{0, 0};
    text += content;
    alignments.insert(alignments.end(), content.size(), align);
    last_end = end;
  }
  text.append(normalized_, last_end, std::string::npos);
  alignments.insert(alignments.end(), alignments_.begin() + last_end, alignments_.end());
  normalized_ = std::move(text);
  alignments_ = std::move(alignments);
}

void NormalizedString::strip(bool left, bool right) {
  const std::vector<char32_t> chars = decode_utf8(normalized_);
  size_t leading = 0;
  size_t trailing = 0;
  if (left) {
    while (leading < chars.size() && is_whitespace(chars[leading])) ++leading;
  }
  if (right) {
    while (trailing < chars.size() && is_whitespace(chars[chars.size() - 1 - trailing])) ++trailing;
  }
  if (leading == 0 && trailing == 0) return;
  std::vector<std::pair<char32_t, int>> dest;
  for (size_t i = 0; i < chars.size(); ++i) {
    if (i < leading || i >= chars.size() - trailing) continue;
    // tokenizers compares with the byte length here; kept for identical alignments.
    const bool last_kept = i + trailing + 1 == normalized_.size();
    dest.push_back({chars[i], last_kept ? -static_cast<int>(trailing) : 0});
  }
  transform_range({0, normalized_.size()}, dest, leading);
}

PreTokenizedString::PreTokenizedString(const std::string& text) : original_(text) {
  splits_.push_back({NormalizedString(text), std::nullopt});
}

void PreTokenizedString::split(const SplitFn& fn) {
  std::vector<Split> result;
  result.reserve(splits_.size());
  for (auto& piece : splits_) {
    if (piece.tokens) {
      result.push_back(std::move(piece));
      continue;
    }
    for (auto& sub : fn(std::move(piece.normalized))) {
      if (!sub.normalized.empty()) result.push_back(std::move(sub));
    }
  }
  splits_ = std::move(result);
}

}  // namespace transformers::tokenizers
