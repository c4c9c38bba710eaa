#include "tokenizers/decoders.h"

#include <optional>
#include <utility>

#include "tokenizers/component_config.h"
#include "tokenizers/normalized_string.h"
#include "tokenizers/normalizers.h"
#include "tokenizers/pre_tokenizers.h"
#include "tokenizers/unicode.h"

namespace transformers::tokenizers {

namespace {

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> decoders) : decoders_(std::move(decoders)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& decoder : decoders_) tokens = decoder->decode_chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> decoders_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& token : tokens) {
      std::string replaced;
      for (const auto& match : pattern_.find_matches(token)) {
        const auto [start, end] = match.offsets;
        replaced += match.is_match ? content_ : token.substr(start, end - start);
      }
      token = std::move(replaced);
    }
    return tokens;
  }

 private:
  Pattern pattern_;
  std::string content_;
};

// byte_level.rs: every token's characters back to bytes, joined, then lossy UTF-8.
class ByteLevelDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string bytes;
    for (const auto& token : tokens) {
      std::string token_bytes;
      bool all = true;
      for (size_t pos = 0, len = 0; pos < token.size(); pos += len) {
        const int byte = char_to_byte(decode_utf8_at(token, pos, &len));
        if (byte < 0) {
          all = false;
          break;
        }
        token_bytes += static_cast<char>(byte);
      }
      bytes += all ? token_bytes : token;
    }
    return {utf8_lossy(bytes)};
  }
};

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  if (from.empty()) return text;
  std::string out;
  size_t prev = 0;
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, prev)) {
    out.append(text, prev, pos - prev);
    out += to;
    prev = pos + from.size();
  }
  out.append(text, prev, std::string::npos);
  return out;
}

// wordpiece.rs cleanup()
std::string cleanup(std::string text) {
  static const std::pair<const char*, const char*> kReplacements[] = {
      {" .", "."},   {" ?", "?"},   {" !", "!"},   {" ,", ","},         {" ' ", "'"},  {" n't", "n't"},
      {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kReplacements) text = replace_all(std::move(text), from, to);
  return text;
}

class WordPieceDecoder : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup) : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& token = tokens[i];
      if (i != 0) {
        if (token.compare(0, prefix_.size(), prefix_) == 0) {
          token.erase(0, prefix_.size());
        } else {
          token = " " + token;
        }
      }
      if (cleanup_) token = cleanup(std::move(token));
    }
    return tokens;
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

class BPEDecoder : public Decoder {
 public:
  explicit BPEDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      tokens[i] = replace_all(std::move(tokens[i]), suffix_, i + 1 == tokens.size() ? "" : " ");
    }
    return tokens;
  }

 private:
  std::string suffix_;
};

class CTC : public Decoder {
 public:
  CTC(std::string pad_token, std::string word_delimiter_token, bool cleanup)
      : pad_token_(std::move(pad_token)), word_delimiter_token_(std::move(word_delimiter_token)), cleanup_(cleanup) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> result;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0 && tokens[i] == tokens[i - 1]) continue;  // dedup
      std::string replaced = replace_all(tokens[i], pad_token_, "");
      if (cleanup_) replaced = replace_all(cleanup(std::move(replaced)), word_delimiter_token_, " ");
      if (!replaced.empty()) result.push_back(std::move(replaced));
    }
    return result;
  }

 private:
  std::string pad_token_;
  std::string word_delimiter_token_;
  bool cleanup_;
};

// "<0xAB>" -> 0xAB, as Rust's u8::from_str_radix (which also takes a leading '+').
std::optional<unsigned char> byte_of_token(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return std::nullopt;
  auto hex_digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int high = hex_digit(token[3]);
  const int low = hex_digit(token[4]);
  if (token[3] == '+' && low >= 0) return static_cast<unsigned char>(low);
  if (high < 0 || low < 0) return std::nullopt;
  return static_cast<unsigned char>(high * 16 + low);
}

// Runs of <0xXX> tokens become their UTF-8 text, or one U+FFFD per byte when the run is not valid UTF-8.
class ByteFallback : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> result;
    std::string bytes;
    auto flush = [&]() {
      if (bytes.empty()) return;
      if (is_valid_utf8(bytes)) {
        result.push_back(bytes);
      } else {
        result.insert(result.end(), bytes.size(), "\xEF\xBF\xBD");
      }
      bytes.clear();
    };
    for (auto& token : tokens) {
      if (const auto byte = byte_of_token(token)) {
        bytes += static_cast<char>(*byte);
        continue;
      }
      flush();
      result.push_back(std::move(token));
    }
    flush();
    return result;
  }
};

class Fuse : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string joined;
    for (const auto& token : tokens) joined += token;
    return {joined};
  }
};

// Removes up to `start` leading and `stop` trailing `content` characters from every token.
class Strip : public Decoder {
 public:
  Strip(char32_t content, size_t start, size_t stop) : content_(content), start_(start), stop_(stop) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (auto& token : tokens) {
      const std::vector<char32_t> chars = decode_utf8(token);
      size_t start_cut = 0;
      while (start_cut < start_ && start_cut < chars.size() && chars[start_cut] == content_) ++start_cut;
      size_t stop_cut = chars.size();
      while (chars.size() - stop_cut < stop_ && stop_cut > start_cut && chars[stop_cut - 1] == content_) --stop_cut;
      std::string stripped;
      for (size_t i = start_cut; i < stop_cut; ++i) append_utf8(stripped, chars[i]);
      token = std::move(stripped);
    }
    return tokens;
  }

 private:
  char32_t content_;
  size_t start_;
  size_t stop_;
};

// tokenizers/src/pre_tokenizers/metaspace.rs, `impl Decoder for Metaspace`.
class MetaspaceDecoder : public Decoder {
 public:
  explicit MetaspaceDecoder(MetaspaceConfig config) : config_(config) {}
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const bool drop = i == 0 && config_.prepend_scheme != PrependScheme::Never;
      std::string decoded;
      for (char32_t c : decode_utf8(tokens[i])) {
        if (c != config_.replacement) {
          append_utf8(decoded, c);
        } else if (!drop) {
          decoded += ' ';
        }
      }
      tokens[i] = std::move(decoded);
    }
    return tokens;
  }

 private:
  MetaspaceConfig config_;
};

std::unique_ptr<Decoder> build_sequence(const json& config) {
  std::vector<std::unique_ptr<Decoder>> decoders;
  for (const auto& sub : config.at("decoders")) {
    if (auto decoder = build_decoder(sub)) decoders.push_back(std::move(decoder));
  }
  return std::make_unique<SequenceDecoder>(std::move(decoders));
}

std::unique_ptr<Decoder> build_replace(const json& config) {
  return std::make_unique<ReplaceDecoder>(Pattern(config.at("pattern"), "decoder Replace"),
                                          config.at("content").get<std::string>());
}

std::unique_ptr<Decoder> build_byte_fallback(const json&) { return std::make_unique<ByteFallback>(); }

std::unique_ptr<Decoder> build_fuse(const json&) { return std::make_unique<Fuse>(); }

std::unique_ptr<Decoder> build_strip(const json& config) {
  return std::make_unique<Strip>(single_char(config, "content", "decoder Strip"), json_uint<size_t>(config.at("start"), "decoder Strip start"),
                                 json_uint<size_t>(config.at("stop"), "decoder Strip stop"));
}

std::unique_ptr<Decoder> build_metaspace(const json& config) {
  return std::make_unique<MetaspaceDecoder>(read_metaspace_config(config));
}

const ComponentRegistry<Decoder>& registry() {
  static const ComponentRegistry<Decoder> decoders = {
      {"Sequence", build_sequence}, {"Replace", build_replace}, {"ByteFallback", build_byte_fallback},
      {"Fuse", build_fuse},         {"Strip", build_strip},     {"Metaspace", build_metaspace},
      {"ByteLevel", [](const json&) -> std::unique_ptr<Decoder> { return std::make_unique<ByteLevelDecoder>(); }},
      {"WordPiece",
       [](const json& c) -> std::unique_ptr<Decoder> {
         return std::make_unique<WordPieceDecoder>(string_or(c, "prefix", "##"), bool_or(c, "cleanup", true));
       }},
      {"BPEDecoder",
       [](const json& c) -> std::unique_ptr<Decoder> {
         return std::make_unique<BPEDecoder>(string_or(c, "suffix", "</w>"));
       }},
      {"CTC",
       [](const json& c) -> std::unique_ptr<Decoder> {
         return std::make_unique<CTC>(string_or(c, "pad_token", "<pad>"), string_or(c, "word_delimiter_token", "|"),
                                      bool_or(c, "cleanup", true));
       }},
  };
  return decoders;
}

}  // namespace

std::unique_ptr<Decoder> build_decoder(const json& config) {
  if (config.is_null()) return nullptr;
  return build_component(registry(), config, "decoder");
}

}  // namespace transformers::tokenizers
