#include "tokenizers/post_processors.h"

#include <algorithm>
#include <map>
#include <utility>

#include "tokenizers/component_config.h"
#include "tokenizers/unicode.h"

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

void Encoding::merge_with(Encoding pair, bool growing_offsets) {
  std::vector<Encoding> overflowings;
  for (const Encoding& self_o : overflowing) {
    Encoding merged = self_o;
    merged.merge_with(pair, growing_offsets);
    overflowings.push_back(std::move(merged));
    for (const Encoding& other_o : pair.overflowing) {
      Encoding n = self_o;
      n.merge_with(other_o, growing_offsets);
      overflowings.push_back(std::move(n));
    }
  }
  for (const Encoding& other_o : pair.overflowing) {
    Encoding n = *this;
    n.merge_with(other_o, growing_offsets);
    overflowings.push_back(std::move(n));
  }
  const size_t original_len = size();
  for (const auto& [seq, range] : pair.sequence_ranges) {
    sequence_ranges[seq] = {original_len + range.first, original_len + range.second};
  }
  ids.insert(ids.end(), pair.ids.begin(), pair.ids.end());
  type_ids.insert(type_ids.end(), pair.type_ids.begin(), pair.type_ids.end());
  tokens.insert(tokens.end(), std::make_move_iterator(pair.tokens.begin()), std::make_move_iterator(pair.tokens.end()));
  word_ids.insert(word_ids.end(), pair.word_ids.begin(), pair.word_ids.end());
  sequence_ids.insert(sequence_ids.end(), pair.sequence_ids.begin(), pair.sequence_ids.end());
  const size_t starting = growing_offsets && !offsets.empty() ? offsets.back().second : 0;
  for (const auto& [start, end] : pair.offsets) offsets.push_back({start + starting, end + starting});
  special_tokens_mask.insert(special_tokens_mask.end(), pair.special_tokens_mask.begin(),
                             pair.special_tokens_mask.end());
  attention_mask.insert(attention_mask.end(), pair.attention_mask.begin(), pair.attention_mask.end());
  overflowing = std::move(overflowings);
}

void Encoding::set_sequence_id(uint32_t sequence) {
  sequence_ranges.clear();
  sequence_ranges[sequence] = {0, size()};
}

void Encoding::set_type_id(uint32_t type_id) { type_ids.assign(size(), type_id); }

void Encoding::truncate(size_t max_len, size_t stride, TruncationDirection direction) {
  const size_t len = size();
  if (max_len >= len) return;
  if (max_len == 0) {
    Encoding whole = std::move(*this);
    *this = Encoding();
    overflowing.push_back(std::move(whole));
    return;
  }
  if (stride >= max_len) {
    throw TokenizerError("truncation: stride (" + std::to_string(stride) + ") must be smaller than max_length (" +
                         std::to_string(max_len) + ", after removing the special tokens)");
  }
  sequence_ranges.clear();
  const size_t step = max_len - stride;
  std::vector<std::pair<size_t, size_t>> parts;
  if (direction == TruncationDirection::Right) {
    for (size_t start = 0; start < len; start += step) {
      const size_t stop = std::min(start + max_len, len);
      parts.push_back({start, stop});
      if (stop == len) break;
    }
  } else {
    for (size_t i = 0; i < len; i += step) {
      const size_t stop = len - i;
      const size_t start = stop > max_len ? stop - max_len : 0;
      parts.push_back({start, stop});
      if (start == 0) break;
    }
  }
  auto slice = [this](size_t start, size_t stop) {
    Encoding e;
    e.ids.assign(ids.begin() + start, ids.begin() + stop);
    e.type_ids.assign(type_ids.begin() + start, type_ids.begin() + stop);
    e.tokens.assign(tokens.begin() + start, tokens.begin() + stop);
    e.word_ids.assign(word_ids.begin() + start, word_ids.begin() + stop);
    e.sequence_ids.assign(sequence_ids.begin() + start, sequence_ids.begin() + stop);
    e.offsets.assign(offsets.begin() + start, offsets.begin() + stop);
    e.special_tokens_mask.assign(special_tokens_mask.begin() + start, special_tokens_mask.begin() + stop);
    e.attention_mask.assign(attention_mask.begin() + start, attention_mask.begin() + stop);
    return e;
  };
  Encoding result = slice(parts[0].first, parts[0].second);
  for (size_t i = 1; i < parts.size(); ++i) result.overflowing.push_back(slice(parts[i].first, parts[i].second));
  *this = std::move(result);
}

void Encoding::pad(size_t target_length, uint32_t pad_id, uint32_t pad_type_id, const std::string& pad_token,
                   PaddingDirection direction) {
  for (auto& o : overflowing) o.pad(target_length, pad_id, pad_type_id, pad_token, direction);
  if (size() >= target_length) return;
  const size_t n = target_length - size();
  auto extend = [n, direction](auto& values, const auto& value) {
    if (direction == PaddingDirection::Left) {
      values.insert(values.begin(), n, value);
    } else {
      values.insert(values.end(), n, value);
    }
  };
  extend(ids, pad_id);
  extend(type_ids, pad_type_id);
  extend(tokens, pad_token);
  extend(word_ids, std::optional<uint32_t>());
  extend(sequence_ids, std::optional<uint32_t>());
  extend(attention_mask, 0u);
  extend(special_tokens_mask, 1u);
  extend(offsets, Offsets{0, 0});
  if (direction == PaddingDirection::Left) {
    for (auto& [seq, range] : sequence_ranges) range = {range.first + n, range.second + n};
  }
}

void Encoding::fill_sequence_ids() {
  if (sequence_ranges.empty()) {
    sequence_ids.assign(size(), 0u);
  } else {
    sequence_ids.assign(size(), std::nullopt);
    for (const auto& [seq, range] : sequence_ranges) {
      for (size_t i = range.first; i < range.second && i < size(); ++i) sequence_ids[i] = seq;
    }
  }
  for (auto& o : overflowing) o.fill_sequence_ids();
}

Encoding PostProcessor::process(Encoding first, std::optional<Encoding> second, bool add_special_tokens) const {
  std::vector<Encoding> encodings;
  encodings.push_back(std::move(first));
  if (second) encodings.push_back(std::move(*second));
  for (uint32_t i = 0; i < encodings.size(); ++i) {
    encodings[i].set_sequence_id(i);
    for (auto& o : encodings[i].overflowing) o.set_sequence_id(i);
    encodings[i].set_type_id(i);
  }
  Encoding merged;
  for (auto& encoding : process_encodings(std::move(encodings), add_special_tokens)) {
    merged.merge_with(std::move(encoding), false);
  }
  return merged;
}

Encoding default_post_process(Encoding first, std::optional<Encoding> second) {
  if (!second) return first;
  Encoding merged;
  first.set_sequence_id(0);
  second->set_sequence_id(1);
  merged.merge_with(std::move(first), false);
  merged.merge_with(std::move(*second), false);
  return merged;
}

namespace {

// byte_level.rs process_offsets: offsets leave out the spaces at the ends of tokens.
void trim_offsets(Encoding& encoding, bool add_prefix_space) {
  const char32_t space_char = byte_to_char(' ');
  auto is_space = [space_char](char32_t c) { return c == space_char || is_whitespace(c); };
  for (size_t i = 0; i < encoding.size(); ++i) {
    const std::vector<char32_t> chars = decode_utf8(encoding.tokens[i]);
    size_t leading = 0;
    while (leading < chars.size() && is_space(chars[leading])) ++leading;
    size_t trailing = 0;
    while (trailing < chars.size() && is_space(chars[chars.size() - 1 - trailing])) ++trailing;
    Offsets& offsets = encoding.offsets[i];
    if (leading > 0) {
      const bool is_first = i == 0 || offsets.first == 0;
      if (is_first && add_prefix_space && leading == 1) leading = 0;
      offsets.first = std::min(offsets.first + leading, offsets.second);
    }
    if (trailing > 0 && offsets.second >= trailing) {
      offsets.second = std::max(offsets.second - trailing, offsets.first);
    }
  }
}

void trim_all_offsets(std::vector<Encoding>& encodings, bool add_prefix_space) {
  for (auto& encoding : encodings) {
    trim_offsets(encoding, add_prefix_space);
    for (auto& o : encoding.overflowing) trim_offsets(o, add_prefix_space);
  }
}

class ByteLevelProcessing : public PostProcessor {
 public:
  ByteLevelProcessing(bool trim, bool add_prefix_space) : trim_(trim), add_prefix_space_(add_prefix_space) {}
  size_t added_tokens(bool) const override { return 0; }
  std::vector<Encoding> process_encodings(std::vector<Encoding> encodings, bool) const override {
    if (trim_) trim_all_offsets(encodings, add_prefix_space_);
    for (uint32_t i = 0; i < encodings.size(); ++i) encodings[i].set_sequence_id(i);
    return encodings;
  }

 private:
  bool trim_;
  bool add_prefix_space_;
};

using SpecialToken = std::pair<std::string, uint32_t>;

Encoding special(const SpecialToken& token, uint32_t type_id) {
  Encoding e;
  e.push_back(token.second, token.first, {0, 0}, type_id, std::nullopt, std::nullopt, true);
  return e;
}

// bert.rs / roberta.rs: [CLS] A [SEP] (B [SEP] | [SEP] B [SEP]).
class BertLikeProcessing : public PostProcessor {
 public:
  BertLikeProcessing(SpecialToken sep, SpecialToken cls, bool roberta, bool trim, bool add_prefix_space)
      : sep_(std::move(sep)), cls_(std::move(cls)), roberta_(roberta), trim_(trim), add_prefix_space_(add_prefix_space) {}

  size_t added_tokens(bool is_pair) const override { return is_pair ? (roberta_ ? 4 : 3) : 2; }

  std::vector<Encoding> process_encodings(std::vector<Encoding> encodings, bool add_special_tokens) const override {
    if (roberta_) {
      if (trim_) trim_all_offsets(encodings, add_prefix_space_);
      for (auto& encoding : encodings) encoding.set_type_id(0);
    }
    if (!add_special_tokens) return encodings;
    for (size_t i = 0; i < encodings.size(); ++i) {
      std::vector<Encoding> overflowing = std::move(encodings[i].overflowing);
      encodings[i].overflowing.clear();
      encodings[i] = wrap(std::move(encodings[i]), i);
      for (auto& o : overflowing) encodings[i].overflowing.push_back(wrap(std::move(o), i));
    }
    return encodings;
  }

 private:
  Encoding wrap(Encoding encoding, size_t index) const {
    const uint32_t type_id = roberta_ || index == 0 ? 0 : 1;
    Encoding result;
    if (index == 0) {
      result = special(cls_, 0);
    } else if (roberta_) {
      result = special(sep_, 0);
    }
    const size_t start = result.size();
    encoding.sequence_ranges.clear();
    encoding.sequence_ids.assign(encoding.size(), std::nullopt);
    const size_t len = encoding.size();
    result.merge_with(std::move(encoding), false);
    result.merge_with(special(sep_, type_id), false);
    result.sequence_ranges.clear();
    result.sequence_ranges[static_cast<uint32_t>(index)] = {start, start + len};
    return result;
  }

  SpecialToken sep_;
  SpecialToken cls_;
  bool roberta_;
  bool trim_;
  bool add_prefix_space_;
};

// tokenizers/src/processors/template.rs
class TemplateProcessing : public PostProcessor {
 public:
  struct Piece {
    bool is_sequence;
    uint32_t sequence;  // 0 = $A, 1 = $B
    std::string special_token;
    uint32_t type_id;
  };
  struct SpecialTokens {
    std::vector<uint32_t> ids;
    std::vector<std::string> tokens;
  };

  TemplateProcessing(std::vector<Piece> single, std::vector<Piece> pair, std::map<std::string, SpecialTokens> specials)
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

  size_t added_tokens(bool is_pair) const override {
    size_t count = 0;
    for (const Piece& piece : is_pair ? pair_ : single_) {
      if (!piece.is_sequence) count += special_tokens_.at(piece.special_token).ids.size();
    }
    return count;
  }

  std::vector<Encoding> process_encodings(std::vector<Encoding> encodings, bool add_special_tokens) const override {
    std::vector<Encoding> result;
    for (const Piece& piece : encodings.size() == 2 ? pair_ : single_) {
      if (piece.is_sequence) {
        if (piece.sequence >= encodings.size()) continue;
        Encoding sequence = encodings[piece.sequence];
        sequence.set_type_id(piece.type_id);
        sequence.set_sequence_id(piece.sequence);
        result.push_back(std::move(sequence));
      } else if (add_special_tokens) {
        const SpecialTokens& special = special_tokens_.at(piece.special_token);
        Encoding tokens;
        for (size_t i = 0; i < special.ids.size(); ++i) {
          tokens.push_back(special.ids[i], special.tokens[i], {0, 0}, piece.type_id, std::nullopt, std::nullopt, true);
        }
        result.push_back(std::move(tokens));
      }
    }
    return result;
  }

 private:
  std::vector<Piece> single_;
  std::vector<Piece> pair_;
  std::map<std::string, SpecialTokens> special_tokens_;
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
    piece.type_id = json_uint<uint32_t>(sequence.at("type_id"), "type_id");
    return piece;
  }
  if (config.contains("SpecialToken")) {
    const json& special = config.at("SpecialToken");
    piece.special_token = special.at("id").get<std::string>();
    piece.type_id = json_uint<uint32_t>(special.at("type_id"), "type_id");
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
  std::map<std::string, TemplateProcessing::SpecialTokens> specials;
  const json special_tokens = config.value("special_tokens", json::object());
  for (const auto& [name, special] : special_tokens.items()) {
    TemplateProcessing::SpecialTokens token;
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

class SequenceProcessing : public PostProcessor {
 public:
  explicit SequenceProcessing(std::vector<std::unique_ptr<PostProcessor>> processors)
      : processors_(std::move(processors)) {}
  size_t added_tokens(bool is_pair) const override {
    size_t count = 0;
    for (const auto& p : processors_) count += p->added_tokens(is_pair);
    return count;
  }
  std::vector<Encoding> process_encodings(std::vector<Encoding> encodings, bool add_special_tokens) const override {
    for (const auto& p : processors_) encodings = p->process_encodings(std::move(encodings), add_special_tokens);
    return encodings;
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> processors_;
};

SpecialToken read_special(const json& config, const char* key, const std::string& stage) {
  const json& value = config.at(key);
  if (!value.is_array() || value.size() != 2) {
    throw TokenizerError(stage + ": \"" + key + "\" must be [token, id], got " + value.dump());
  }
  return {value.at(0).get<std::string>(), json_uint<uint32_t>(value.at(1), "special token id")};
}

std::unique_ptr<PostProcessor> build_bert_processing(const json& config) {
  return std::make_unique<BertLikeProcessing>(read_special(config, "sep", "BertProcessing"),
                                              read_special(config, "cls", "BertProcessing"), false, false, false);
}

std::unique_ptr<PostProcessor> build_roberta_processing(const json& config) {
  return std::make_unique<BertLikeProcessing>(read_special(config, "sep", "RobertaProcessing"),
                                              read_special(config, "cls", "RobertaProcessing"), true,
                                              bool_or(config, "trim_offsets", true),
                                              bool_or(config, "add_prefix_space", true));
}

std::unique_ptr<PostProcessor> build_byte_level(const json& config) {
  return std::make_unique<ByteLevelProcessing>(bool_or(config, "trim_offsets", true),
                                               bool_or(config, "add_prefix_space", true));
}

std::unique_ptr<PostProcessor> build_sequence(const json& config) {
  std::vector<std::unique_ptr<PostProcessor>> processors;
  for (const auto& sub : config.at("processors")) {
    if (auto p = build_post_processor(sub)) processors.push_back(std::move(p));
  }
  return std::make_unique<SequenceProcessing>(std::move(processors));
}

const ComponentRegistry<PostProcessor>& registry() {
  static const ComponentRegistry<PostProcessor> post_processors = {
      {"TemplateProcessing", build_template_processing},
      {"BertProcessing", build_bert_processing},
      {"RobertaProcessing", build_roberta_processing},
      {"ByteLevel", build_byte_level},
      {"Sequence", build_sequence},
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
  std::map<std::string, TemplateProcessing::SpecialTokens> specials;
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
