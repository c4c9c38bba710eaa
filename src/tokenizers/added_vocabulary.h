// Added tokens (tokenizers/src/tokenizer/added_vocabulary.rs): special and user tokens are found in the raw
// text before any other stage runs, so `<s>` in the input is one token whatever the model would make of it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tokenizers/models.h"
#include "tokenizers/normalized_string.h"
#include "tokenizers/normalizers.h"

namespace transformers::tokenizers {

struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;

  bool operator==(const AddedToken& other) const;
};

AddedToken read_added_token(const json& config);

// Leftmost-longest search for a set of strings (a byte trie).
class TokenMatcher {
 public:
  void add(const std::string& pattern, uint32_t id);
  bool empty() const { return nodes_.size() == 1; }
  struct Match {
    size_t start, end;
    uint32_t id;
  };
  // The leftmost match starting at or after `from`, the longest one there.
  std::optional<Match> find(const std::string& text, size_t from) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, size_t>> children;
    std::optional<uint32_t> id;
  };
  std::vector<Node> nodes_ = std::vector<Node>(1);
};

class AddedVocabulary {
 public:
  // Ids come from the model vocabulary when the content is in it, else follow the model's ids.
  void add_tokens(const std::vector<AddedToken>& tokens, const Model& model, const Normalizer* normalizer);

  std::optional<uint32_t> token_to_id(const std::string& content) const;
  std::optional<std::string> id_to_token(uint32_t id) const;
  bool is_special_token(const std::string& content) const { return special_tokens_.count(content) > 0; }
  bool is_special_id(uint32_t id) const {
    const auto it = tokens_.find(id);
    return it != tokens_.end() && it->second.special;
  }
  const std::map<std::string, uint32_t>& vocab() const { return ids_; }

  // Splits `text` on non-normalized added tokens, normalizes the rest, then splits on normalized ones.
  PreTokenizedString extract_and_normalize(const Normalizer* normalizer, const std::string& text) const;

 private:
  struct Found {
    std::optional<uint32_t> id;
    Offsets offsets;
  };
  std::vector<Found> find_matches(const std::string& text, const TokenMatcher& matcher) const;
  std::vector<Split> split_with_indices(const NormalizedString& text, const TokenMatcher& matcher) const;
  void rebuild_matchers();

  std::map<std::string, uint32_t> ids_;
  std::map<uint32_t, AddedToken> tokens_;
  std::map<uint32_t, std::string> normalized_contents_;  // content after the normalizer, where it differs
  std::set<std::string> special_tokens_;
  TokenMatcher raw_matcher_;         // normalized == false: matched in the raw text
  TokenMatcher normalized_matcher_;  // normalized == true: matched after normalization
};

}  // namespace transformers::tokenizers
