#include "tokenizers/added_vocabulary.h"

#include <algorithm>

#include "tokenizers/unicode.h"

namespace transformers::tokenizers {

namespace {

size_t previous_char_start(const std::string& text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return start;
}

char32_t char_at(const std::string& text, size_t pos) {
  size_t len = 0;
  return decode_utf8_at(text, pos, &len);
}

// Start of the whitespace run that ends at `end` (regex \s*$).
size_t whitespace_start_before(const std::string& text, size_t end) {
  while (end > 0 && is_whitespace(char_at(text, previous_char_start(text, end)))) {
    end = previous_char_start(text, end);
  }
  return end;
}

// End of the whitespace run that starts at `start` (regex ^\s*).
size_t whitespace_end_after(const std::string& text, size_t start) {
  size_t len = 0;
  while (start < text.size() && is_whitespace(decode_utf8_at(text, start, &len))) start += len;
  return start;
}

}  // namespace

bool AddedToken::operator==(const AddedToken& other) const {
  return content == other.content && single_word == other.single_word && lstrip == other.lstrip &&
         rstrip == other.rstrip && normalized == other.normalized && special == other.special;
}

AddedToken read_added_token(const json& config) {
  AddedToken token;
  token.content = config.at("content").get<std::string>();
  token.special = bool_or(config, "special", false);
  token.single_word = bool_or(config, "single_word", false);
  token.lstrip = bool_or(config, "lstrip", false);
  token.rstrip = bool_or(config, "rstrip", false);
  token.normalized = bool_or(config, "normalized", !token.special);
  return token;
}

void TokenMatcher::add(const std::string& pattern, uint32_t id) {
  size_t node = 0;
  for (unsigned char byte : pattern) {
    auto& children = nodes_[node].children;
    auto it = std::find_if(children.begin(), children.end(), [byte](const auto& c) { return c.first == byte; });
    if (it != children.end()) {
      node = it->second;
      continue;
    }
    children.emplace_back(byte, nodes_.size());
    node = nodes_.size();
    nodes_.emplace_back();
  }
  if (!nodes_[node].id) nodes_[node].id = id;
}

std::optional<TokenMatcher::Match> TokenMatcher::find(const std::string& text, size_t from) const {
  for (size_t start = from; start < text.size(); ++start) {
    std::optional<Match> longest;
    size_t node = 0;
    for (size_t pos = start; pos < text.size(); ++pos) {
      const auto byte = static_cast<unsigned char>(text[pos]);
      const auto& children = nodes_[node].children;
      auto it = std::find_if(children.begin(), children.end(), [byte](const auto& c) { return c.first == byte; });
      if (it == children.end()) break;
      node = it->second;
      if (nodes_[node].id) longest = Match{start, pos + 1, *nodes_[node].id};
    }
    if (longest) return longest;
  }
  return std::nullopt;
}

void AddedVocabulary::add_tokens(const std::vector<AddedToken>& tokens, const Model& model,
                                 const Normalizer* normalizer) {
  const auto model_size = static_cast<uint32_t>(model.vocab_size());
  uint32_t next_id = model_size;
  if (!tokens_.empty()) {
    const uint32_t max_id = tokens_.rbegin()->first;
    next_id = max_id >= model_size || model_size == 0 ? max_id + 1 : model_size;
  }

  for (const AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    if (const auto known = ids_.find(token.content); known != ids_.end() && tokens_.at(known->second) == token) {
      continue;
    }
    std::optional<uint32_t> id = token_to_id(token.content);
    if (!id) id = model.token_to_id(token.content);
    if (!id) id = next_id++;

    if (token.normalized && normalizer != nullptr) {
      NormalizedString text(token.content);
      normalizer->normalize(text);
      if (text.get() != token.content) normalized_contents_[*id] = text.get();
    }
    ids_[token.content] = *id;
    if (token.special) special_tokens_.insert(token.content);
    tokens_[*id] = token;
  }
  rebuild_matchers();
}

void AddedVocabulary::rebuild_matchers() {
  raw_matcher_ = TokenMatcher();
  normalized_matcher_ = TokenMatcher();
  for (const auto& [id, token] : tokens_) {
    if (!token.normalized) {
      raw_matcher_.add(token.content, id);
      continue;
    }
    const auto normalized = normalized_contents_.find(id);
    normalized_matcher_.add(normalized != normalized_contents_.end() ? normalized->second : token.content, id);
  }
}

std::optional<uint32_t> AddedVocabulary::token_to_id(const std::string& content) const {
  const auto it = ids_.find(content);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> AddedVocabulary::id_to_token(uint32_t id) const {
  const auto it = tokens_.find(id);
  if (it == tokens_.end()) return std::nullopt;
  const auto normalized = normalized_contents_.find(id);
  return normalized != normalized_contents_.end() ? normalized->second : it->second.content;
}

// AddedVocabulary::find_matches: the token spans (with lstrip/rstrip whitespace) and the text between them.
std::vector<AddedVocabulary::Found> AddedVocabulary::find_matches(const std::string& text,
                                                                  const TokenMatcher& matcher) const {
  if (text.empty()) return {{std::nullopt, {0, 0}}};
  if (matcher.empty()) return {{std::nullopt, {0, text.size()}}};

  std::vector<Found> found;
  size_t start_offset = 0;
  for (auto match = matcher.find(text, 0); match; match = matcher.find(text, match->end)) {
    const AddedToken& token = tokens_.at(match->id);
    size_t start = match->start;
    size_t stop = match->end;
    if (token.single_word) {
      const bool space_before = start == 0 || !is_word_char(char_at(text, previous_char_start(text, start)));
      const bool space_after = stop == text.size() || !is_word_char(char_at(text, stop));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) start = std::max(whitespace_start_before(text, start), start_offset);
    if (token.rstrip) stop = whitespace_end_after(text, stop);
    if (start_offset < start) found.push_back({std::nullopt, {start_offset, start}});
    found.push_back({match->id, {start, stop}});
    start_offset = stop;
  }
  if (start_offset != text.size()) found.push_back({std::nullopt, {start_offset, text.size()}});
  return found;
}

std::vector<Split> AddedVocabulary::split_with_indices(const NormalizedString& text,
                                                       const TokenMatcher& matcher) const {
  std::vector<Split> pieces;
  for (const auto& [id, offsets] : find_matches(text.get(), matcher)) {
    NormalizedString piece = text.slice(offsets);
    if (!id) {
      pieces.push_back({std::move(piece), std::nullopt});
      continue;
    }
    std::string value = piece.get();
    const size_t len = value.size();
    pieces.push_back({std::move(piece), std::vector<Token>{{*id, std::move(value), {0, len}}}});
  }
  return pieces;
}

PreTokenizedString AddedVocabulary::extract_and_normalize(const Normalizer* normalizer, const std::string& text) const {
  PreTokenizedString pieces(text);
  pieces.split([this](NormalizedString piece) { return split_with_indices(piece, raw_matcher_); });
  pieces.split([this, normalizer](NormalizedString piece) {
    if (normalizer != nullptr) normalizer->normalize(piece);
    return split_with_indices(piece, normalized_matcher_);
  });
  return pieces;
}

}  // namespace transformers::tokenizers
