#include "tokenizers/bpe.h"

#include <cstdio>
#include <queue>

#include "tokenizers/component_config.h"
#include "tokenizers/unicode.h"

namespace transformers::tokenizers {

namespace {

uint64_t pair_key(uint32_t left, uint32_t right) { return (static_cast<uint64_t>(left) << 32) | right; }

std::optional<std::string> optional_string(const json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  return it->get<std::string>();
}

// Both layouts of "merges": [["a", "b"], ...] and the legacy ["a b", ...].
BPE::Merges read_merges(const json& merges) {
  if (!merges.is_array()) throw TokenizerError("BPE \"merges\" must be a list");
  BPE::Merges pairs;
  pairs.reserve(merges.size());
  size_t rank = 0;
  for (const auto& merge : merges) {
    if (merge.is_array() && merge.size() == 2) {
      pairs.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
      continue;
    }
    if (!merge.is_string()) throw TokenizerError("BPE merge must be \"a b\" or [\"a\", \"b\"], got " + merge.dump());
    const std::string line = merge.get<std::string>();
    if (line.rfind("#version", 0) == 0) continue;
    ++rank;
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      throw TokenizerError("BPE merge " + std::to_string(rank) + " is not two tokens separated by a space: \"" + line +
                           "\"");
    }
    pairs.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return pairs;
}

}  // namespace

BPE::BPE(Vocab vocab, const Merges& merges, BpeOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  for (const auto& [token, id] : vocab_) vocab_r_.emplace(id, token);
  const size_t prefix_len = options_.continuing_subword_prefix ? options_.continuing_subword_prefix->size() : 0;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto left_id = token_to_id(left);
    const auto right_id = token_to_id(right);
    if (!left_id) throw TokenizerError("BPE merge token '" + left + "' is not in the vocabulary");
    if (!right_id) throw TokenizerError("BPE merge token '" + right + "' is not in the vocabulary");
    const std::string merged = left + right.substr(std::min(prefix_len, right.size()));
    const auto new_id = token_to_id(merged);
    if (!new_id) throw TokenizerError("BPE merge result '" + merged + "' is not in the vocabulary");
    merges_[pair_key(*left_id, *right_id)] = {static_cast<uint32_t>(rank), *new_id};
  }
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", byte);
    byte_ids_[byte] = token_to_id(name);
  }
}

std::optional<uint32_t> BPE::token_to_id(const std::string& token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> BPE::id_to_token(uint32_t id) const {
  const auto it = vocab_r_.find(id);
  if (it == vocab_r_.end()) return std::nullopt;
  return it->second;
}

uint32_t BPE::unk_id() const {
  const auto id = token_to_id(*options_.unk_token);
  if (!id) throw TokenizerError("BPE unk_token '" + *options_.unk_token + "' is not in the vocabulary");
  return *id;
}

const BPE::MergeRule* BPE::find_merge(uint32_t left, uint32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

// One symbol per character (BPE::merge_word before merge_all): byte fallback, then unk.
std::vector<BPE::Symbol> BPE::split_into_symbols(const std::string& word) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](uint32_t id, size_t len) {
    const auto index = static_cast<int64_t>(symbols.size());
    if (!symbols.empty()) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, len});
  };
  // A pending unk token: consecutive unknown characters fuse into one when fuse_unk is set.
  bool unk_pending = false;
  uint32_t unk_token_id = 0;
  size_t unk_len = 0;

  for (size_t pos = 0, len = 0; pos < word.size(); pos += len) {
    decode_utf8_at(word, pos, &len);
    std::string piece = word.substr(pos, len);
    if (pos != 0 && options_.continuing_subword_prefix) piece = *options_.continuing_subword_prefix + piece;
    if (pos + len == word.size() && options_.end_of_word_suffix) piece += *options_.end_of_word_suffix;

    if (const auto id = token_to_id(piece)) {
      if (unk_pending) add(unk_token_id, unk_len);
      unk_pending = false;
      add(*id, len);
      continue;
    }
    if (options_.byte_fallback) {
      bool all_bytes_known = true;
      for (unsigned char byte : piece) all_bytes_known = all_bytes_known && byte_ids_[byte].has_value();
      if (all_bytes_known) {
        // Like tokenizers, a pending unk is not flushed here.
        for (unsigned char byte : piece) add(*byte_ids_[byte], 1);
        continue;
      }
    }
    if (!options_.unk_token) continue;
    if (unk_pending && options_.fuse_unk) {
      unk_len += len;
    } else {
      if (unk_pending) add(unk_token_id, unk_len);
      unk_pending = true;
      unk_token_id = unk_id();
      unk_len = len;
    }
  }
  if (unk_pending) add(unk_token_id, unk_len);
  return symbols;
}

// Lowest rank first, leftmost on ties (Word::merge_all without dropout).
void BPE::merge_all(std::vector<Symbol>& symbols) const {
  struct Candidate {
    uint32_t rank;
    uint32_t new_id;
    size_t pos;
    bool operator>(const Candidate& other) const { return rank != other.rank ? rank > other.rank : pos > other.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const MergeRule* rule = find_merge(symbols[i].id, symbols[i + 1].id)) {
      queue.push({rule->rank, rule->new_id, i});
    }
  }

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (current.len == 0 || current.next == -1) continue;
    const Symbol right = symbols[current.next];
    const MergeRule* rule = find_merge(current.id, right.id);
    if (rule == nullptr || rule->new_id != top.new_id) continue;  // stale entry

    symbols[current.next].len = 0;
    current.id = top.new_id;
    current.len += right.len;
    current.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = static_cast<int64_t>(top.pos);

    if (current.prev >= 0) {
      if (const MergeRule* with_prev = find_merge(symbols[current.prev].id, current.id)) {
        queue.push({with_prev->rank, with_prev->new_id, static_cast<size_t>(current.prev)});
      }
    }
    if (current.next >= 0) {
      if (const MergeRule* with_next = find_merge(current.id, symbols[current.next].id)) {
        queue.push({with_next->rank, with_next->new_id, top.pos});
      }
    }
  }
}

std::vector<Token> BPE::tokenize(const std::string& word) const {
  if (word.empty()) return {};
  if (options_.ignore_merges) {
    if (const auto id = token_to_id(word)) return {Token{*id, word, {0, word.size()}}};
  }
  constexpr size_t kCacheCapacity = 10000;
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (const auto it = cache_.find(word); it != cache_.end()) return it->second;
  }
  std::vector<Symbol> symbols = split_into_symbols(word);
  merge_all(symbols);

  std::vector<Token> tokens;
  size_t pos = 0;
  for (const Symbol& symbol : symbols) {
    if (symbol.len == 0) continue;
    tokens.push_back({symbol.id, vocab_r_.at(symbol.id), {pos, pos + symbol.len}});
    pos += symbol.len;
  }
  if (word.size() < 256) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(word, tokens);
  }
  return tokens;
}

std::unique_ptr<Model> build_bpe(const json& config) {
  if (!config.contains("vocab") || !config.contains("merges")) throw TokenizerError("BPE model: missing vocab/merges");
  const json& dropout = config.value("dropout", json());
  if (!dropout.is_null()) {
    const double p = dropout.get<double>();
    if (p < 0.0 || p > 1.0) throw TokenizerError("BPE model: dropout must be in [0, 1], got " + dropout.dump());
    if (p != 0.0) throw TokenizerError("BPE model: dropout " + dropout.dump() + " is random and not supported");
  }
  BPE::Vocab vocab;
  for (const auto& [token, id] : config.at("vocab").items()) vocab.emplace(token, json_uint<uint32_t>(id, "vocab id of '" + token + "'"));

  BpeOptions options;
  options.unk_token = optional_string(config, "unk_token");
  options.continuing_subword_prefix = optional_string(config, "continuing_subword_prefix");
  options.end_of_word_suffix = optional_string(config, "end_of_word_suffix");
  options.fuse_unk = bool_or(config, "fuse_unk", false);
  options.byte_fallback = bool_or(config, "byte_fallback", false);
  options.ignore_merges = bool_or(config, "ignore_merges", false);
  return std::make_unique<BPE>(std::move(vocab), read_merges(config.at("merges")), std::move(options));
}

}  // namespace transformers::tokenizers
