// sentencepiece_model.proto (ModelProto), normalizer.cc, bpe_model.cc, unigram_model.cc, sentencepiece_processor.cc.
#include "tokenizers/sentencepiece.h"

#include <cstring>
#include <fstream>
#include <optional>
#include <queue>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "tokenizers/decoders.h"
#include "tokenizers/normalizers.h"
#include "tokenizers/precompiled.h"
#include "tokenizers/tokenizer_impl.h"
#include "tokenizers/unicode.h"
#include "tokenizers/unigram.h"

namespace transformers::tokenizers {

namespace {

constexpr char kSpaceSymbol[] = "\xE2\x96\x81";  // U+2581
constexpr char kUnkSurface[] = " \xE2\x81\x87 ";  // " ⁇ "

// Protobuf wire format: (field number, wire type, value).
class WireReader {
 public:
  WireReader(const char* data, size_t size, const std::string& path) : p_(data), end_(data + size), path_(path) {}
  bool done() const { return p_ >= end_; }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) fail("truncated varint");
      const auto byte = static_cast<unsigned char>(*p_++);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    fail("varint longer than 10 bytes");
    return 0;
  }
  std::string_view bytes(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) fail("length-delimited field past the end");
    std::string_view view(p_, n);
    p_ += n;
    return view;
  }
  // Reads one field header and calls back; skips what `fn` does not consume.
  template <typename Fn>
  void for_each_field(Fn&& fn) {
    while (!done()) {
      const uint64_t key = varint();
      const auto field = static_cast<uint32_t>(key >> 3);
      const auto wire = static_cast<int>(key & 7);
      switch (wire) {
        case 0: fn(field, wire, varint(), std::string_view()); break;
        case 1: fn(field, wire, fixed(8), std::string_view()); break;
        case 2: {
          const uint64_t n = varint();
          fn(field, wire, 0, bytes(n));
          break;
        }
        case 5: fn(field, wire, fixed(4), std::string_view()); break;
        default: fail("unsupported wire type " + std::to_string(wire));
      }
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw TokenizerError(path_ + ": not a SentencePiece model (" + what + ")");
  }

 private:
  uint64_t fixed(int n) {
    const std::string_view b = bytes(static_cast<size_t>(n));
    uint64_t value = 0;
    for (int i = n - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(b[static_cast<size_t>(i)]);
    return value;
  }
  const char* p_;
  const char* end_;
  const std::string& path_;
};

float as_float(uint64_t bits) {
  const auto b = static_cast<uint32_t>(bits);
  float f;
  std::memcpy(&f, &b, sizeof(f));
  return f;
}

}  // namespace

SentencePieceModel read_sentencepiece_model(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw TokenizerError(path + ": cannot open the file");
  std::ostringstream buffer;
  buffer << file.rdbuf();
  const std::string data = buffer.str();
  SentencePieceModel model;
  WireReader reader(data.data(), data.size(), path);
  reader.for_each_field([&](uint32_t field, int wire, uint64_t value, std::string_view bytes) {
    if (field == 1 && wire == 2) {
      SentencePieceModel::Piece piece;
      WireReader sub(bytes.data(), bytes.size(), path);
      sub.for_each_field([&](uint32_t f, int w, uint64_t v, std::string_view b) {
        if (f == 1 && w == 2) piece.piece = std::string(b);
        if (f == 2 && w == 5) piece.score = as_float(v);
        if (f == 3 && w == 0) {
          if (v < 1 || v > 6) sub.fail("piece type " + std::to_string(v));
          piece.type = static_cast<PieceType>(v);
        }
      });
      model.pieces.push_back(std::move(piece));
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      WireReader sub(bytes.data(), bytes.size(), path);
      sub.for_each_field([&](uint32_t f, int w, uint64_t v, std::string_view) {
        if (w != 0) return;
        const auto i = static_cast<int>(static_cast<int32_t>(v));
        if (f == 3) model.model_type = i;
        if (f == 24) model.treat_whitespace_as_suffix = v != 0;
        if (f == 35) model.byte_fallback = v != 0;
        if (f == 40) model.unk_id = i;
        if (f == 41) model.bos_id = i;
        if (f == 42) model.eos_id = i;
        if (f == 43) model.pad_id = i;
      });
    } else if (field == 3 && wire == 2) {  // NormalizerSpec
      WireReader sub(bytes.data(), bytes.size(), path);
      sub.for_each_field([&](uint32_t f, int w, uint64_t v, std::string_view b) {
        if (f == 2 && w == 2) model.precompiled_charsmap = std::string(b);
        if (f == 3 && w == 0) model.add_dummy_prefix = v != 0;
        if (f == 4 && w == 0) model.remove_extra_whitespaces = v != 0;
        if (f == 5 && w == 0) model.escape_whitespaces = v != 0;
      });
    }
  });
  if (model.pieces.empty()) reader.fail("no pieces");
  if (model.model_type != 1 && model.model_type != 2) {
    throw TokenizerError(path + ": SentencePiece model_type " + std::to_string(model.model_type) +
                         " is not supported (UNIGRAM = 1 and BPE = 2 are)");
  }
  if (model.unk_id < 0 || static_cast<size_t>(model.unk_id) >= model.pieces.size()) {
    throw TokenizerError(path + ": unk_id " + std::to_string(model.unk_id) + " is not a piece");
  }
  return model;
}

struct SentencePieceProcessor::Impl {
  std::optional<PrecompiledCharsmap> charsmap;
  std::unordered_map<std::string, int> ids;          // every piece
  std::unordered_map<std::string, int> mergeable;    // BPE: normal and user-defined pieces
  std::vector<std::string> user_defined;
  std::unique_ptr<Unigram> unigram;
  int byte_ids[256];

  // NormalizePrefix: the replacement and the bytes consumed.
  std::pair<std::string, size_t> normalize_prefix(std::string_view input) const {
    size_t user_len = 0;
    for (const auto& piece : user_defined) {
      if (piece.size() > user_len && input.substr(0, piece.size()) == piece) user_len = piece.size();
    }
    if (user_len > 0) return {std::string(input.substr(0, user_len)), user_len};
    if (charsmap) {
      if (const auto found = charsmap->longest_prefix(input)) return {std::string(found->first), found->second};
    }
    const std::string s(input.substr(0, 4));
    size_t len = 0;
    const char32_t c = decode_utf8_at(s, 0, &len);
    if (c == 0xFFFD && !(len == 3 && s.compare(0, 3, "\xEF\xBF\xBD") == 0)) return {"\xEF\xBF\xBD", 1};
    if (len > 1 && !is_valid_utf8(s.substr(0, len))) return {"\xEF\xBF\xBD", 1};
    return {s.substr(0, len), len};
  }
};

SentencePieceProcessor::SentencePieceProcessor(SentencePieceModel model)
    : model_(std::move(model)), impl_(std::make_unique<Impl>()) {
  if (!model_.precompiled_charsmap.empty()) impl_->charsmap.emplace(model_.precompiled_charsmap);
  std::fill(std::begin(impl_->byte_ids), std::end(impl_->byte_ids), -1);
  std::vector<std::pair<std::string, double>> vocab;
  std::unordered_set<uint32_t> not_in_lattice;
  for (size_t i = 0; i < model_.pieces.size(); ++i) {
    const auto& p = model_.pieces[i];
    const int id = static_cast<int>(i);
    impl_->ids.emplace(p.piece, id);
    if (p.type == PieceType::Normal || p.type == PieceType::UserDefined) impl_->mergeable.emplace(p.piece, id);
    if (p.type == PieceType::UserDefined) impl_->user_defined.push_back(p.piece);
    if (p.type != PieceType::Normal && p.type != PieceType::UserDefined) not_in_lattice.insert(static_cast<uint32_t>(i));
    if (p.type == PieceType::Byte && p.piece.size() == 6) {
      impl_->byte_ids[std::stoi(p.piece.substr(3, 2), nullptr, 16)] = id;
    }
    vocab.emplace_back(p.piece, p.type == PieceType::Normal || p.type == PieceType::UserDefined ? p.score : 0.0);
  }
  if (model_.model_type == 1) {
    impl_->unigram = std::make_unique<Unigram>(std::move(vocab), static_cast<uint32_t>(model_.unk_id), false,
                                               not_in_lattice);
    impl_->unigram->float_scores = true;
  }
}

SentencePieceProcessor::~SentencePieceProcessor() = default;

std::string SentencePieceProcessor::normalize(const std::string& text) const {
  std::string_view input(text);
  const std::string space = model_.escape_whitespaces ? kSpaceSymbol : " ";
  if (model_.remove_extra_whitespaces) {
    while (!input.empty()) {
      const auto p = impl_->normalize_prefix(input);
      if (p.first != " ") break;
      input.remove_prefix(p.second);
    }
  }
  std::string normalized;
  if (input.empty()) return normalized;
  if (!model_.treat_whitespace_as_suffix && model_.add_dummy_prefix) normalized += space;
  bool is_prev_space = model_.remove_extra_whitespaces;
  while (!input.empty()) {
    const auto p = impl_->normalize_prefix(input);
    std::string_view sp(p.first);
    if (is_prev_space) {
      while (!sp.empty() && sp[0] == ' ') sp.remove_prefix(1);
    }
    if (!sp.empty()) {
      for (char c : sp) {
        if (model_.escape_whitespaces && c == ' ') {
          normalized += kSpaceSymbol;
        } else {
          normalized += c;
        }
      }
      is_prev_space = sp.back() == ' ';
    }
    input.remove_prefix(p.second);
    if (!model_.remove_extra_whitespaces) is_prev_space = false;
  }
  if (model_.treat_whitespace_as_suffix && model_.add_dummy_prefix) normalized += space;
  if (model_.remove_extra_whitespaces) {
    while (normalized.size() >= space.size() &&
           normalized.compare(normalized.size() - space.size(), space.size(), space) == 0) {
      normalized.resize(normalized.size() - space.size());
    }
  }
  return normalized;
}

std::vector<std::pair<std::string, int>> SentencePieceProcessor::encode_normalized(const std::string& text) const {
  std::vector<std::pair<std::string, int>> raw;
  if (text.empty()) return raw;
  if (impl_->unigram) {
    for (auto& [piece, id] : impl_->unigram->encode(text)) raw.emplace_back(std::move(piece), static_cast<int>(id));
  } else {
    // bpe_model.cc: merge the adjacent pair with the highest score, leftmost first.
    struct Symbol {
      int prev, next;
      size_t start, len;
    };
    std::vector<Symbol> symbols;
    for (size_t pos = 0; pos < text.size();) {
      size_t len = 0;
      for (const auto& piece : impl_->user_defined) {
        if (piece.size() > len && text.compare(pos, piece.size(), piece) == 0) len = piece.size();
      }
      if (len == 0) decode_utf8_at(text, pos, &len);
      const int index = static_cast<int>(symbols.size());
      symbols.push_back({index - 1, -1, pos, len});
      if (index > 0) symbols[static_cast<size_t>(index - 1)].next = index;
      pos += len;
    }
    struct Candidate {
      float score;
      int left;
      size_t size;
      bool operator<(const Candidate& o) const { return score < o.score || (score == o.score && left > o.left); }
    };
    std::priority_queue<Candidate> agenda;
    auto maybe_add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const Symbol& l = symbols[static_cast<size_t>(left)];
      const Symbol& r = symbols[static_cast<size_t>(right)];
      const auto it = impl_->mergeable.find(text.substr(l.start, l.len + r.len));
      if (it == impl_->mergeable.end()) return;
      agenda.push({model_.pieces[static_cast<size_t>(it->second)].score, left, l.len + r.len});
    };
    for (size_t i = 1; i < symbols.size(); ++i) maybe_add(static_cast<int>(i - 1), static_cast<int>(i));
    while (!agenda.empty()) {
      const Candidate top = agenda.top();
      agenda.pop();
      Symbol& left = symbols[static_cast<size_t>(top.left)];
      if (left.len == 0 || left.next < 0) continue;
      Symbol& right = symbols[static_cast<size_t>(left.next)];
      if (left.len + right.len != top.size) continue;  // stale
      left.len += right.len;
      right.len = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = top.left;
      maybe_add(left.prev, top.left);
      maybe_add(top.left, left.next);
    }
    for (int i = 0; i >= 0 && !symbols.empty(); i = symbols[static_cast<size_t>(i)].next) {
      const Symbol& s = symbols[static_cast<size_t>(i)];
      std::string piece = text.substr(s.start, s.len);
      const auto it = impl_->ids.find(piece);
      const int id = it == impl_->ids.end() || model_.pieces[static_cast<size_t>(it->second)].type == PieceType::Unused
                         ? model_.unk_id
                         : it->second;
      raw.emplace_back(std::move(piece), id);
    }
  }
  // SentencePieceProcessor::Encode: byte fallback for unknown pieces, else runs of unknowns merged.
  std::vector<std::pair<std::string, int>> result;
  bool prev_unk = false;
  for (auto& [piece, id] : raw) {
    const bool unk = id == model_.unk_id;
    if (unk && model_.byte_fallback) {
      for (unsigned char b : piece) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        result.emplace_back(name, impl_->byte_ids[b] >= 0 ? impl_->byte_ids[b] : model_.unk_id);
      }
      prev_unk = false;
      continue;
    }
    if (unk && prev_unk && !result.empty()) {
      result.back().first += piece;
    } else {
      result.emplace_back(std::move(piece), id);
    }
    prev_unk = unk;
  }
  return result;
}

std::string SentencePieceProcessor::decode(const std::vector<int>& ids) const {
  std::string text;
  std::string bytes;
  bool is_bos_ws = true;
  auto flush = [&]() {
    for (size_t pos = 0; pos < bytes.size();) {
      const auto lead = static_cast<unsigned char>(bytes[pos]);
      const size_t n = utf8_char_len(lead);
      if (pos + n <= bytes.size() && is_valid_utf8(bytes.substr(pos, n)) && !(lead >= 0x80 && n == 1)) {
        text += bytes.substr(pos, n);
        pos += n;
      } else {
        text += "\xEF\xBF\xBD";
        pos += 1;
      }
    }
    if (!bytes.empty()) is_bos_ws = false;
    bytes.clear();
  };
  for (int id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= model_.pieces.size()) continue;
    const auto& p = model_.pieces[static_cast<size_t>(id)];
    if (p.type == PieceType::Byte) {
      bytes += static_cast<char>(std::stoi(p.piece.substr(3, 2), nullptr, 16));
      continue;
    }
    flush();
    if (p.type == PieceType::Control) continue;
    if (p.type == PieceType::Unknown) {
      text += kUnkSurface;
      is_bos_ws = false;
      continue;
    }
    std::string_view piece(p.piece);
    if (is_bos_ws && !model_.treat_whitespace_as_suffix && piece.substr(0, 3) == kSpaceSymbol) piece.remove_prefix(3);
    std::string decoded;
    for (size_t pos = 0; pos < piece.size();) {
      if (piece.substr(pos, 3) == kSpaceSymbol) {
        decoded += ' ';
        pos += 3;
      } else {
        decoded += piece[pos++];
      }
    }
    text += decoded;
    is_bos_ws = false;
  }
  flush();
  return text;
}

namespace {

// The SentencePiece normalizer as a pipeline stage; alignments follow each normalized prefix.
class SentencePieceNormalizer : public Normalizer {
 public:
  explicit SentencePieceNormalizer(std::shared_ptr<SentencePieceProcessor> processor)
      : processor_(std::move(processor)) {}
  void normalize(NormalizedString& text) const override {
    const std::string normalized = processor_->normalize(text.get());
    if (normalized == text.get()) return;
    // Characters map one to one where possible; the rest is attributed to the last character.
    const std::vector<char32_t> out = decode_utf8(normalized);
    const auto in_count = static_cast<int>(decode_utf8(text.get()).size());
    std::vector<std::pair<char32_t, int>> dest;
    for (size_t i = 0; i < out.size(); ++i) dest.push_back({out[i], static_cast<int>(i) < in_count ? 0 : 1});
    const int diff = static_cast<int>(out.size()) - in_count;
    if (diff < 0 && !dest.empty()) dest.back().second += diff;
    text.transform(dest, 0);
  }

 private:
  std::shared_ptr<SentencePieceProcessor> processor_;
};

class SentencePieceModelAdapter : public Model {
 public:
  explicit SentencePieceModelAdapter(std::shared_ptr<SentencePieceProcessor> processor)
      : processor_(std::move(processor)) {
    const auto& pieces = processor_->model().pieces;
    for (size_t i = 0; i < pieces.size(); ++i) ids_.emplace(pieces[i].piece, static_cast<uint32_t>(i));
  }
  std::vector<Token> tokenize(const std::string& word) const override {
    std::vector<Token> tokens;
    size_t offset = 0;
    for (auto& [piece, id] : processor_->encode_normalized(word)) {
      const bool is_byte = processor_->model().pieces[static_cast<size_t>(id)].type == PieceType::Byte;
      const size_t len = is_byte ? 1 : piece.size();
      tokens.push_back({static_cast<uint32_t>(id), std::move(piece), {offset, std::min(offset + len, word.size())}});
      offset += len;
    }
    return tokens;
  }
  std::optional<uint32_t> token_to_id(const std::string& token) const override {
    const auto it = ids_.find(token);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }
  std::optional<std::string> id_to_token(uint32_t id) const override {
    const auto& pieces = processor_->model().pieces;
    if (id >= pieces.size()) return std::nullopt;
    return pieces[id].piece;
  }
  size_t vocab_size() const override { return processor_->model().pieces.size(); }

 private:
  std::shared_ptr<SentencePieceProcessor> processor_;
  std::unordered_map<std::string, uint32_t> ids_;
};

class SentencePieceDecoder : public Decoder {
 public:
  explicit SentencePieceDecoder(std::shared_ptr<SentencePieceProcessor> processor)
      : processor_(std::move(processor)) {
    const auto& pieces = processor_->model().pieces;
    for (size_t i = 0; i < pieces.size(); ++i) ids_.emplace(pieces[i].piece, static_cast<int>(i));
  }
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<int> ids;
    for (const auto& token : tokens) {
      const auto it = ids_.find(token);
      ids.push_back(it == ids_.end() ? processor_->model().unk_id : it->second);
    }
    return {processor_->decode(ids)};
  }

 private:
  std::shared_ptr<SentencePieceProcessor> processor_;
  std::unordered_map<std::string, int> ids_;
};

}  // namespace

std::unique_ptr<TokenizerImpl> load_sentencepiece(const std::string& path) {
  auto processor = std::make_shared<SentencePieceProcessor>(read_sentencepiece_model(path));
  std::vector<AddedToken> added;
  const auto& pieces = processor->model().pieces;
  for (const auto& p : pieces) {
    if (p.type == PieceType::Control || p.type == PieceType::Unknown) {
      AddedToken token;
      token.content = p.piece;
      token.special = true;
      token.normalized = false;
      added.push_back(token);
    }
  }
  return TokenizerImpl::from_parts(std::make_unique<SentencePieceNormalizer>(processor), nullptr,
                                   std::make_unique<SentencePieceModelAdapter>(processor), nullptr,
                                   std::make_unique<SentencePieceDecoder>(processor), added);
}

}  // namespace transformers::tokenizers
