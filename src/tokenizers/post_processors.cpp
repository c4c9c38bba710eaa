#include "tokenizers/post_processors.h"

#include <map>
#include <utility>

namespace transformers::tokenizers {

void Encoding::push_back(uint32_t id, std::string token, Offsets offset, uint32_t type_id, std::optional<uint32_t> word,
                         std::optional<uint32_t> sequence, bool special) {
  ids.push_back(id);
  tokens.push_back(std::move(token));
  offsets.push_back(offset);
  type_ids.push_back(type_id);
  word_ids.push_back(word);
  sequence_ids.push_back(sequence);
  special_tokens_mask.push_back(special ? 1 : 0);
  attention_mask.push_back(1);
}

void Encoding::append(const Encoding& other) {
  ids.insert(ids.end(), other.ids.begin(), other.ids.end());
  tokens.insert(tokens.end(), other.tokens.begin(), other.tokens.end());
  offsets.insert(offsets.end(), other.offsets.begin(), other.offsets.end());
  type_ids.insert(type_ids.end(), other.type_ids.begin(), other.type_ids.end());
  word_ids.insert(word_ids.end(), other.word_ids.begin(), other.word_ids.end());
  sequence_ids.insert(sequence_ids.end(), other.sequence_ids.begin(), other.sequence_ids.end());
  special_tokens_mask.insert(special_tokens_mask.end(), other.special_tokens_mask.begin(),
                             other.special_tokens_mask.end());
  attention_mask.insert(attention_mask.end(), other.attention_mask.begin(), other.attention_mask.end());
}

void Encoding::set_sequence_id(uint32_t sequence) { sequence_ids.assign(size(), sequence); }

void Encoding::set_type_id(uint32_t type_id) { type_ids.assign(size(), type_id); }

Encoding default_post_process(Encoding first, std::optional<Encoding> second) {
  if (!second) return first;
  first.set_sequence_id(0);
  second->set_sequence_id(1);
  first.append(*second);
  return first;
}

namespace {

// tokenizers/src/processors/template.rs
class TemplateProcessing : public PostProcessor {
 public:
  struct Piece {
    bool is_sequence;
    uint32_t sequence;  // 0 = $A, 1 = $B
    std::string special_token;
    uint32_t type_id;
  };
  struct SpecialToken {
    std::vector<uint32_t> ids;
    std::vector<std::string> tokens;
  };

  TemplateProcessing(std::vector<Piece> single, std::vector<Piece> pair, std::map<std::string, SpecialToken> specials)
      : single_(std::move(single)), pair_(std::move(pair)), special_tokens_(std::move(specials)) {
    for (const auto* pieces : {&single_, &pair_}) {
      for (const Piece& piece : *pieces) {
        if (!piece.is_sequence && special_tokens_.count(piece.special_token) == 0) {
          throw TokenizerError("TemplateProcessing: the template uses '" + piece.special_token +
                               "', which is missing from special_tokens");
        }
      }
    }
  }

  Encoding process(Encoding first, std::optional<Encoding> second, bool add_special_tokens) const override {
    const Encoding* sequences[2] = {&first, second ? &*second : nullptr};
    Encoding result;
    for (const Piece& piece : second ? pair_ : single_) {
      if (piece.is_sequence) {
        if (sequences[piece.sequence] == nullptr) continue;
        Encoding sequence = *sequences[piece.sequence];
        sequence.set_type_id(piece.type_id);
        sequence.set_sequence_id(piece.sequence);
        result.append(sequence);
      } else if (add_special_tokens) {
        const SpecialToken& special = special_tokens_.at(piece.special_token);
        for (size_t i = 0; i < special.ids.size(); ++i) {
          result.push_back(special.ids[i], special.tokens[i], {0, 0}, piece.type_id, std::nullopt, std::nullopt, true);
        }
      }
    }
    return result;
  }

 private:
  std::vector<Piece> single_;
  std::vector<Piece> pair_;
  std::map<std::string, SpecialToken> special_tokens_;
};

// A piece is {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<s>", "type_id": 0}},
// or the short form "$A", "$B:1", "<s>", "<s>:1".
TemplateProcessing::Piece read_piece(const json& config) {
  TemplateProcessing::Piece piece{false, 0, "", 0};
  if (config.is_string()) {
    std::string text = config.get<std::string>();
    const size_t colon = text.rfind(':');
    if (colon != std::string::npos && colon + 1 < text.size() &&
        text.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
      piece.type_id = static_cast<uint32_t>(std::stoul(text.substr(colon + 1)));
      text = text.substr(0, colon);
    }
    if (text == "$" || text == "$A" || text == "$B") {
      piece.is_sequence = true;
      piece.sequence = text == "$B" ? 1 : 0;
    } else if (!text.empty() && text[0] == '$') {
      throw TokenizerError("TemplateProcessing: cannot read template piece '" + config.get<std::string>() + "'");
    } else {
      piece.special_token = text;
    }
    return piece;
  }
  if (config.contains("Sequence")) {
    const json& sequence = config.at("Sequence");
    const std::string id = sequence.at("id").get<std::string>();
    if (id != "A" && id != "B") throw TokenizerError("TemplateProcessing: unknown sequence id '" + id + "'");
    piece.is_sequence = true;
    piece.sequence = id == "B" ? 1 : 0;
    piece.type_id = sequence.at("type_id").get<uint32_t>();
    return piece;
  }
  if (config.contains("SpecialToken")) {
    const json& special = config.at("SpecialToken");
    piece.special_token = special.at("id").get<std::string>();
    piece.type_id = special.at("type_id").get<uint32_t>();
    return piece;
  }
  throw TokenizerError("TemplateProcessing: cannot read template piece " + config.dump());
}

std::vector<TemplateProcessing::Piece> read_template(const json& config) {
  std::vector<TemplateProcessing::Piece> pieces;
  if (config.is_string()) {
    // "<s> $A" is a space-separated list of pieces.
    const std::string text = config.get<std::string>();
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find(' ', start);
      if (end == std::string::npos) end = text.size();
      if (end > start) pieces.push_back(read_piece(json(text.substr(start, end - start))));
      start = end + 1;
    }
    return pieces;
  }
  for (const auto& piece : config) pieces.push_back(read_piece(piece));
  return pieces;
}

std::unique_ptr<PostProcessor> build_template_processing(const json& config) {
  std::map<std::string, TemplateProcessing::SpecialToken> specials;
  const json special_tokens = config.value("special_tokens", json::object());
  for (const auto& [name, special] : special_tokens.items()) {
    TemplateProcessing::SpecialToken token;
    token.ids = special.at("ids").get<std::vector<uint32_t>>();
    token.tokens = special.at("tokens").get<std::vector<std::string>>();
    if (token.ids.size() != token.tokens.size()) {
      throw TokenizerError("TemplateProcessing: special token '" + name + "' has different numbers of ids and tokens");
    }
    specials.emplace(name, std::move(token));
  }
  return std::make_unique<TemplateProcessing>(read_template(config.at("single")), read_template(config.at("pair")),
                                              std::move(specials));
}

const ComponentRegistry<PostProcessor>& registry() {
  static const ComponentRegistry<PostProcessor> post_processors = {
      {"TemplateProcessing", build_template_processing},
  };
  return post_processors;
}

}  // namespace

std::unique_ptr<PostProcessor> build_post_processor(const json& config) {
  if (config.is_null()) return nullptr;
  return build_component(registry(), config, "post_processor");
}

std::unique_ptr<PostProcessor> make_bos_eos_template(const std::optional<std::pair<std::string, uint32_t>>& bos,
                                                     const std::optional<std::pair<std::string, uint32_t>>& eos) {
  using Piece = TemplateProcessing::Piece;
  std::vector<Piece> single;
  std::vector<Piece> pair;
  std::map<std::string, TemplateProcessing::SpecialToken> specials;
  for (const auto* token : {&bos, &eos}) {
    if (*token) specials[(*token)->first] = {{(*token)->second}, {(*token)->first}};
  }
  // single = "[bos:0] $A:0 [eos:0]", pair = single + " [bos:1] $B:1 [eos:1]"
  for (uint32_t sequence = 0; sequence < 2; ++sequence) {
    std::vector<Piece> pieces;
    if (bos) pieces.push_back({false, 0, bos->first, sequence});
    pieces.push_back({true, sequence, "", sequence});
    if (eos) pieces.push_back({false, 0, eos->first, sequence});
    if (sequence == 0) single = pieces;
    pair.insert(pair.end(), pieces.begin(), pieces.end());
  }
  return std::make_unique<TemplateProcessing>(std::move(single), std::move(pair), std::move(specials));
}

}  // namespace transformers::tokenizers
