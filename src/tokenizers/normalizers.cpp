// Normalizers (tokenizers/src/normalizers: bert.rs, strip.rs, unicode.rs, replace.rs, prepend.rs, precompiled.rs,
// byte_level.rs, utils.rs).
#include "tokenizers/normalizers.h"

#include <utility>
#include <vector>

#include "tokenizers/precompiled.h"
#include "tokenizers/regex.h"
#include "tokenizers/unicode.h"

namespace transformers::tokenizers {

namespace {

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> normalizers)
      : normalizers_(std::move(normalizers)) {}
  void normalize(NormalizedString& text) const override {
    for (const auto& normalizer : normalizers_) normalizer->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> normalizers_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string prepend) : prepend_(std::move(prepend)) {}
  void normalize(NormalizedString& text) const override {
    if (!text.empty()) text.prepend(prepend_);
  }

 private:
  std::string prepend_;
};

class Replace : public Normalizer {
 public:
  Replace(Pattern pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(NormalizedString& text) const override { text.replace(pattern_.find_matches(text.get()), content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(NormalizedString& text) const override { text.strip(left_, right_); }

 private:
  bool left_;
  bool right_;
};

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalizationForm form) : form_(form) {}
  void normalize(NormalizedString& text) const override {
    if (!text.empty()) text.transform(normalize_with_changes(text.get(), form_), 0);
  }

 private:
  NormalizationForm form_;
};

class Lowercase : public Normalizer {
 public:
  void normalize(NormalizedString& text) const override { text.lowercase(); }
};

class StripAccents : public Normalizer {
 public:
  void normalize(NormalizedString& text) const override {
    text.filter([](char32_t c) { return !is_combining_mark(c); });
  }
};

// bert.rs
bool bert_is_whitespace(char32_t c) { return c == '\t' || c == '\n' || c == '\r' || is_whitespace(c); }
bool bert_is_control(char32_t c) { return c != '\t' && c != '\n' && c != '\r' && is_other(c); }
bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

class BertNormalizer : public Normalizer {
 public:
  BertNormalizer(bool clean_text, bool handle_chinese_chars, bool strip_accents, bool lowercase)
      : clean_text_(clean_text),
        handle_chinese_chars_(handle_chinese_chars),
        strip_accents_(strip_accents),
        lowercase_(lowercase) {}

  void normalize(NormalizedString& text) const override {
    if (clean_text_) {
      text.filter([](char32_t c) { return !(c == 0 || c == 0xFFFD || bert_is_control(c)); });
      text.map([](char32_t c) { return bert_is_whitespace(c) ? U' ' : c; });
    }
    if (handle_chinese_chars_) {
      std::vector<std::pair<char32_t, int>> dest;
      bool any = false;
      for (char32_t c : decode_utf8(text.get())) {
        if (is_chinese_char(c)) {
          dest.insert(dest.end(), {{U' ', 0}, {c, 1}, {U' ', 1}});
          any = true;
        } else {
          dest.push_back({c, 0});
        }
      }
      if (any) text.transform(dest, 0);
    }
    if (strip_accents_) {
      text.transform(normalize_with_changes(text.get(), NormalizationForm::NFD), 0);
      text.filter([](char32_t c) { return !is_mark_nonspacing(c); });
    }
    if (lowercase_) text.lowercase();
  }

 private:
  bool clean_text_;
  bool handle_chinese_chars_;
  bool strip_accents_;
  bool lowercase_;
};

// precompiled.rs: grapheme by grapheme through the SentencePiece charsmap.
class Precompiled : public Normalizer {
 public:
  explicit Precompiled(const std::string& blob) : charsmap_(blob) {}

  void normalize(NormalizedString& text) const override {
    const std::string& s = text.get();
    std::vector<std::pair<char32_t, int>> dest;
    dest.reserve(s.size());
    bool modified = false;
    auto replace = [&dest](std::string_view old_part, std::string_view new_part) {
      const auto old_count = static_cast<int>(decode_utf8(std::string(old_part)).size());
      const std::vector<char32_t> chars = decode_utf8(std::string(new_part));
      const int diff = static_cast<int>(chars.size()) - old_count;
      for (char32_t c : chars) dest.push_back({c, 0});
      if (diff > 0) {
        for (int i = 0; i < diff && i < static_cast<int>(dest.size()); ++i) dest[dest.size() - 1 - i].second = 1;
      } else if (diff < 0 && !dest.empty()) {
        dest.back().second += diff;
      }
    };
    const std::vector<size_t> boundaries = grapheme_boundaries(s);
    for (size_t g = 0; g + 1 < boundaries.size(); ++g) {
      const std::string_view grapheme = std::string_view(s).substr(boundaries[g], boundaries[g + 1] - boundaries[g]);
      if (grapheme.size() < 6) {
        if (const auto norm = charsmap_.transform(grapheme)) {
          modified = true;
          replace(grapheme, *norm);
          continue;
        }
      }
      for (size_t pos = 0, len = 0; pos < grapheme.size(); pos += len) {
        const char32_t c = decode_utf8_at(std::string(grapheme), pos, &len);
        const std::string_view part = grapheme.substr(pos, len);
        if (const auto norm = charsmap_.transform(part)) {
          modified = true;
          replace(part, *norm);
        } else {
          dest.push_back({c, 0});
        }
      }
    }
    if (modified) text.transform(dest, 0);
  }

 private:
  PrecompiledCharsmap charsmap_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  void normalize(NormalizedString& text) const override {
    if (text.empty()) return;
    std::vector<std::pair<char32_t, int>> dest;
    const std::string& s = text.get();
    for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
      decode_utf8_at(s, pos, &len);
      for (size_t i = 0; i < len; ++i) dest.push_back({byte_to_char(static_cast<unsigned char>(s[pos + i])), i > 0});
    }
    text.transform(dest, 0);
  }
};

std::unique_ptr<Normalizer> build_sequence(const json& config) {
  std::vector<std::unique_ptr<Normalizer>> normalizers;
  for (const auto& sub : config.at("normalizers")) {
    if (auto normalizer = build_normalizer(sub)) normalizers.push_back(std::move(normalizer));
  }
  return std::make_unique<SequenceNormalizer>(std::move(normalizers));
}

std::unique_ptr<Normalizer> build_prepend(const json& config) {
  return std::make_unique<Prepend>(config.at("prepend").get<std::string>());
}

std::unique_ptr<Normalizer> build_replace(const json& config) {
  return std::make_unique<Replace>(Pattern(config.at("pattern"), "normalizer Replace"),
                                   config.at("content").get<std::string>());
}

std::unique_ptr<Normalizer> build_strip(const json& config) {
  return std::make_unique<Strip>(bool_or(config, "strip_left", true), bool_or(config, "strip_right", true));
}

std::unique_ptr<Normalizer> build_bert(const json& config) {
  const bool lowercase = bool_or(config, "lowercase", true);
  return std::make_unique<BertNormalizer>(bool_or(config, "clean_text", true),
                                          bool_or(config, "handle_chinese_chars", true),
                                          bool_or(config, "strip_accents", lowercase), lowercase);
}

std::unique_ptr<Normalizer> build_precompiled(const json& config) {
  const json& charsmap = config.at("precompiled_charsmap");
  if (charsmap.is_null()) return std::make_unique<SequenceNormalizer>(std::vector<std::unique_ptr<Normalizer>>{});
  try {
    return std::make_unique<Precompiled>(base64_decode(charsmap.get<std::string>()));
  } catch (const TokenizerError& e) {
    throw TokenizerError(std::string("normalizer Precompiled: ") + e.what());
  }
}

template <NormalizationForm form>
std::unique_ptr<Normalizer> build_unicode(const json&) {
  return std::make_unique<UnicodeNormalizer>(form);
}

const ComponentRegistry<Normalizer>& registry() {
  static const ComponentRegistry<Normalizer> normalizers = {
      {"Sequence", build_sequence},
      {"Prepend", build_prepend},
      {"Replace", build_replace},
      {"Strip", build_strip},
      {"StripAccents", [](const json&) -> std::unique_ptr<Normalizer> { return std::make_unique<StripAccents>(); }},
      {"Lowercase", [](const json&) -> std::unique_ptr<Normalizer> { return std::make_unique<Lowercase>(); }},
      {"ByteLevel",
       [](const json&) -> std::unique_ptr<Normalizer> { return std::make_unique<ByteLevelNormalizer>(); }},
      {"BertNormalizer", build_bert},
      {"Precompiled", build_precompiled},
      {"NFC", build_unicode<NormalizationForm::NFC>},
      {"NFD", build_unicode<NormalizationForm::NFD>},
      {"NFKC", build_unicode<NormalizationForm::NFKC>},
      {"NFKD", build_unicode<NormalizationForm::NFKD>},
  };
  return normalizers;
}

}  // namespace

Pattern::Pattern(const json& config, const std::string& stage) {
  if (config.is_object() && config.contains("String")) {
    literal_ = config.at("String").get<std::string>();
    if (literal_.empty()) throw TokenizerError(stage + ": an empty String pattern is not supported");
    return;
  }
  if (config.is_object() && config.contains("Regex")) {
    regex_ = std::make_unique<Regex>(config.at("Regex").get<std::string>(), stage);
    return;
  }
  throw TokenizerError(stage + ": unknown pattern " + config.dump() + " (expected {\"String\": ...} or {\"Regex\": ...})");
}

Pattern::~Pattern() = default;
Pattern::Pattern(Pattern&&) noexcept = default;

std::vector<PatternMatch> Pattern::find_matches(const std::string& text) const {
  return regex_ ? regex_->find_matches(text) : find_literal(text, literal_);
}

std::unique_ptr<Normalizer> build_normalizer(const json& config) {
  if (config.is_null()) return nullptr;
  return build_component(registry(), config, "normalizer");
}

}  // namespace transformers::tokenizers
