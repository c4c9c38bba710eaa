// BPE model (tokenizers/src/models/bpe/model.rs and word.rs).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizers/models.h"

namespace transformers::tokenizers {

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::optional<std::string> continuing_subword_prefix;
  std::optional<std::string> end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BPE : public Model {
 public:
  using Vocab = std::unordered_map<std::string, uint32_t>;
  using Merges = std::vector<std::pair<std::string, std::string>>;

  BPE(Vocab vocab, const Merges& merges, BpeOptions options);

  std::vector<Token> tokenize(const std::string& word) const override;
  std::optional<uint32_t> token_to_id(const std::string& token) const override;
  std::optional<std::string> id_to_token(uint32_t id) const override;
  size_t vocab_size() const override { return vocab_.size(); }

 private:
  struct Symbol {
    uint32_t id;
    int64_t prev;
    int64_t next;
    size_t len;  // bytes of the word; 0 once merged into its left neighbour
  };
  struct MergeRule {
    uint32_t rank;
    uint32_t new_id;
  };

  std::vector<Symbol> split_into_symbols(const std::string& word) const;
  void merge_all(std::vector<Symbol>& symbols) const;
  const MergeRule* find_merge(uint32_t left, uint32_t right) const;
  uint32_t unk_id() const;

  Vocab vocab_;
  std::unordered_map<uint32_t, std::string> vocab_r_;
  std::unordered_map<uint64_t, MergeRule> merges_;     // key: left id << 32 | right id
  std::array<std::optional<uint32_t>, 256> byte_ids_;  // <0xXX> tokens for byte_fallback
  BpeOptions options_;
  // bpe/model.rs keeps a cache of words already merged (10000 entries there too).
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<Token>> cache_;
};

std::unique_ptr<Model> build_bpe(const json& config);

}  // namespace transformers::tokenizers
