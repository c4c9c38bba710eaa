// Unigram model (tokenizers/src/models/unigram/model.rs): Viterbi over the pieces' log probabilities.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tokenizers/models.h"

namespace transformers::tokenizers {

class Unigram : public Model {
 public:
  // `vocab` = (piece, score) by id. `not_in_lattice`: ids the Viterbi search never picks (SentencePiece's control
  // and unused pieces); tokenizer.json models pass none.
  Unigram(std::vector<std::pair<std::string, double>> vocab, std::optional<uint32_t> unk_id, bool byte_fallback,
          const std::unordered_set<uint32_t>& not_in_lattice = {});

  std::vector<Token> tokenize(const std::string& word) const override;
  std::optional<uint32_t> token_to_id(const std::string& token) const override;
  std::optional<std::string> id_to_token(uint32_t id) const override;
  size_t vocab_size() const override { return vocab_.size(); }

  // The best segmentation of `text`: (piece text, id) in order; unknown runs fused.
  std::vector<std::pair<std::string, uint32_t>> encode(const std::string& text) const;
  double score(uint32_t id) const { return vocab_[id].second; }
  bool fuse_unk = true;
  bool float_scores = false;  // SentencePiece sums path scores in float (ties then break as it does)

 private:
  std::vector<std::pair<std::string, double>> vocab_;
  std::unordered_map<std::string, uint32_t> token_to_ids_;
  std::unordered_map<std::string_view, uint32_t> lattice_pieces_;
  size_t max_piece_bytes_ = 0;
  std::optional<uint32_t> unk_id_;
  bool byte_fallback_;
  double min_score_;
};

std::unique_ptr<Model> build_unigram(const json& config);
std::unique_ptr<Model> build_wordpiece(const json& config);
std::unique_ptr<Model> build_wordlevel(const json& config);

}  // namespace transformers::tokenizers
