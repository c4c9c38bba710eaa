// Unigram (models/unigram/model.rs), WordPiece (models/wordpiece/mod.rs), WordLevel (models/wordlevel/mod.rs).
#include "tokenizers/unigram.h"

#include <cstdio>
#include <limits>

#include "tokenizers/component_config.h"
#include "tokenizers/unicode.h"

namespace transformers::tokenizers {

namespace {
constexpr double kUnkPenalty = 10.0;
}

Unigram::Unigram(std::vector<std::pair<std::string, double>> vocab, std::optional<uint32_t> unk_id, bool byte_fallback,
                 const std::unordered_set<uint32_t>& not_in_lattice)
    : vocab_(std::move(vocab)), unk_id_(unk_id), byte_fallback_(byte_fallback) {
  if (unk_id_ && *unk_id_ >= vocab_.size()) {
    throw TokenizerError("Unigram model: unk_id " + std::to_string(*unk_id_) + " is past the vocabulary (" +
                         std::to_string(vocab_.size()) + " pieces)");
  }
  min_score_ = std::numeric_limits<double>::infinity();
  for (uint32_t id = 0; id < vocab_.size(); ++id) {
    token_to_ids_.emplace(vocab_[id].first, id);
    if (vocab_[id].second < min_score_) min_score_ = vocab_[id].second;
  }
  for (uint32_t id = 0; id < vocab_.size(); ++id) {
    if (not_in_lattice.count(id) || vocab_[id].first.empty()) continue;
    lattice_pieces_.emplace(std::string_view(vocab_[id].first), id);
    max_piece_bytes_ = std::max(max_piece_bytes_, vocab_[id].first.size());
  }
}

std::optional<uint32_t> Unigram::token_to_id(const std::string& token) const {
  const auto it = token_to_ids_.find(token);
  if (it == token_to_ids_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> Unigram::id_to_token(uint32_t id) const {
  if (id >= vocab_.size()) return std::nullopt;
  return vocab_[id].first;
}

// Unigram::encode_optimized
std::vector<std::pair<std::string, uint32_t>> Unigram::encode(const std::string& text) const {
  struct Node {
    uint32_t id = 0;
    double score = 0.0;
    std::optional<size_t> starts_at;
  };
  const size_t size = text.size();
  const double unk_score = min_score_ - kUnkPenalty;
  std::vector<Node> best(size + 1);
  const std::string_view view(text);
  for (size_t starts_at = 0; starts_at < size;) {
    const double score_till_here = best[starts_at].score;
    bool has_single_node = false;
    size_t mblen = 0;
    decode_utf8_at(text, starts_at, &mblen);
    const size_t longest = std::min(max_piece_bytes_, size - starts_at);
    for (size_t length = 1; length <= longest; ++length) {
      const auto it = lattice_pieces_.find(view.substr(starts_at, length));
      if (it == lattice_pieces_.end()) continue;
      Node& target = best[starts_at + length];
      const double candidate = vocab_[it->second].second + score_till_here;
      if (!target.starts_at || candidate > target.score) {
        // SentencePiece compares in double but keeps the best score as a float.
        target = {it->second, float_scores ? static_cast<float>(candidate) : candidate, starts_at};
      }
      if (length == mblen) has_single_node = true;
    }
    if (!has_single_node) {
      if (!unk_id_) throw TokenizerError("Unigram model: text needs the unknown token but the model has no unk_id");
      Node& target = best[starts_at + mblen];
      const double candidate = unk_score + score_till_here;
      if (!target.starts_at || candidate > target.score) {
        target = {*unk_id_, float_scores ? static_cast<float>(candidate) : candidate, starts_at};
      }
    }
    starts_at += mblen;
  }

  std::vector<std::pair<std::string, uint32_t>> results;
  std::string unk_run;
  for (size_t ends_at = size; ends_at > 0;) {
    const Node& node = best[ends_at];
    const size_t starts_at = *node.starts_at;
    if (fuse_unk && unk_id_ && node.id == *unk_id_) {
      unk_run.insert(0, text, starts_at, ends_at - starts_at);
    } else {
      if (!unk_run.empty()) {
        results.push_back({std::move(unk_run), *unk_id_});
        unk_run.clear();
      }
      results.push_back({text.substr(starts_at, ends_at - starts_at), node.id});
    }
    ends_at = starts_at;
  }
  if (!unk_run.empty()) results.push_back({std::move(unk_run), *unk_id_});
  return {results.rbegin(), results.rend()};
}

std::vector<Token> Unigram::tokenize(const std::string& word) const {
  std::vector<Token> tokens;
  size_t offset = 0;
  for (auto& [piece, piece_id] : encode(word)) {
    const size_t len = piece.size();
    const Offsets offsets{offset, offset + len};
    std::optional<uint32_t> id = token_to_id(piece);
    if (!id) {
      if (byte_fallback_) {
        std::vector<Token> bytes;
        for (unsigned char byte : piece) {
          char name[8];
          std::snprintf(name, sizeof(name), "<0x%02X>", byte);
          const auto byte_id = token_to_id(name);
          if (!byte_id) break;
          bytes.push_back({*byte_id, name, offsets});
        }
        if (bytes.size() == piece.size()) {
          tokens.insert(tokens.end(), bytes.begin(), bytes.end());
          offset += len;
          continue;
        }
      }
      id = unk_id_;
    }
    offset += len;
    tokens.push_back({*id, std::move(piece), offsets});
  }
  return tokens;
}

std::unique_ptr<Model> build_unigram(const json& config) {
  if (!config.contains("vocab") || !config.at("vocab").is_array()) {
    throw TokenizerError("Unigram model: missing \"vocab\" (a list of [piece, score])");
  }
  std::vector<std::pair<std::string, double>> vocab;
  for (const auto& entry : config.at("vocab")) {
    vocab.emplace_back(entry.at(0).get<std::string>(), entry.at(1).get<double>());
  }
  std::optional<uint32_t> unk_id;
  if (config.contains("unk_id") && !config.at("unk_id").is_null()) unk_id = json_uint<uint32_t>(config.at("unk_id"), "unk_id");
  return std::make_unique<Unigram>(std::move(vocab), unk_id, bool_or(config, "byte_fallback", false));
}

namespace {

std::unordered_map<std::string, uint32_t> read_vocab(const json& config, const std::string& model) {
  if (!config.contains("vocab") || !config.at("vocab").is_object()) {
    throw TokenizerError(model + " model: missing \"vocab\" (an object token -> id)");
  }
  std::unordered_map<std::string, uint32_t> vocab;
  for (const auto& [token, id] : config.at("vocab").items()) vocab.emplace(token, json_uint<uint32_t>(id, "vocab id of '" + token + "'"));
  return vocab;
}

class VocabModel : public Model {
 public:
  VocabModel(std::unordered_map<std::string, uint32_t> vocab, std::string unk_token)
      : vocab_(std::move(vocab)), unk_token_(std::move(unk_token)) {
    for (const auto& [token, id] : vocab_) vocab_r_.emplace(id, token);
  }
  std::optional<uint32_t> token_to_id(const std::string& token) const override {
    const auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> id_to_token(uint32_t id) const override {
    const auto it = vocab_r_.find(id);
    if (it == vocab_r_.end()) return std::nullopt;
    return it->second;
  }
  size_t vocab_size() const override { return vocab_.size(); }

 protected:
  Token unk(size_t len) const {
    const auto id = token_to_id(unk_token_);
    if (!id) throw TokenizerError("the unknown token '" + unk_token_ + "' is not in the vocabulary");
    return {*id, unk_token_, {0, len}};
  }
  std::unordered_map<std::string, uint32_t> vocab_;
  std::unordered_map<uint32_t, std::string> vocab_r_;
  std::string unk_token_;
};

class WordPiece : public VocabModel {
 public:
  WordPiece(std::unordered_map<std::string, uint32_t> vocab, std::string unk_token, std::string prefix,
            size_t max_input_chars_per_word)
      : VocabModel(std::move(vocab), std::move(unk_token)),
        prefix_(std::move(prefix)),
        max_input_chars_per_word_(max_input_chars_per_word) {}

  std::vector<Token> tokenize(const std::string& sequence) const override {
    if (decode_utf8(sequence).size() > max_input_chars_per_word_) return {unk(sequence.size())};
    std::vector<Token> sub_tokens;
    size_t start = 0;
    while (start < sequence.size()) {
      size_t end = sequence.size();
      std::optional<Token> current;
      while (start < end) {
        std::string substr = sequence.substr(start, end - start);
        if (start > 0) substr = prefix_ + substr;
        if (const auto id = token_to_id(substr)) {
          current = Token{*id, std::move(substr), {start, end}};
          break;
        }
        // Step back one character.
        do {
          --end;
        } while (end > start && (static_cast<unsigned char>(sequence[end]) & 0xC0) == 0x80);
      }
      if (!current) return {unk(sequence.size())};
      sub_tokens.push_back(std::move(*current));
      start = end;
    }
    return sub_tokens;
  }

 private:
  std::string prefix_;
  size_t max_input_chars_per_word_;
};

class WordLevel : public VocabModel {
 public:
  using VocabModel::VocabModel;
  std::vector<Token> tokenize(const std::string& token) const override {
    if (const auto id = token_to_id(token)) return {{*id, token, {0, token.size()}}};
    return {unk(token.size())};
  }
};

}  // namespace

std::unique_ptr<Model> build_wordpiece(const json& config) {
  return std::make_unique<WordPiece>(read_vocab(config, "WordPiece"), string_or(config, "unk_token", "[UNK]"),
                                     string_or(config, "continuing_subword_prefix", "##"),
                                     json_uint<size_t>(config.value("max_input_chars_per_word", json(100)), "max_input_chars_per_word"));
}

std::unique_ptr<Model> build_wordlevel(const json& config) {
  return std::make_unique<WordLevel>(read_vocab(config, "WordLevel"), string_or(config, "unk_token", "<unk>"));
}

}  // namespace transformers::tokenizers
