#include "tokenizers/pre_tokenizers.h"

#include <utility>

#include <unicode/uscript.h>

#include <functional>
#include <map>
#include <optional>

#include "tokenizers/normalizers.h"
#include "tokenizers/regex.h"
#include "tokenizers/unicode.h"

namespace transformers::tokenizers {

namespace {

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> pre_tokenizers)
      : pre_tokenizers_(std::move(pre_tokenizers)) {}
  void pre_tokenize(PreTokenizedString& text) const override {
    for (const auto& pre_tokenizer : pre_tokenizers_) pre_tokenizer->pre_tokenize(text);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> pre_tokenizers_;
};

// tokenizers/src/pre_tokenizers/metaspace.rs
class Metaspace : public PreTokenizer {
 public:
  explicit Metaspace(MetaspaceConfig config) : config_(config), replacement_(to_utf8(config.replacement)) {}

  void pre_tokenize(PreTokenizedString& text) const override {
    text.split([this](NormalizedString piece) {
      piece.replace(find_literal(piece.get(), " "), replacement_);
      const bool starts_with_replacement = piece.get().compare(0, replacement_.size(), replacement_) == 0;
      const bool prepend = config_.prepend_scheme == PrependScheme::Always ||
                           (config_.prepend_scheme == PrependScheme::First && piece.offsets_original().first == 0);
      if (prepend && !starts_with_replacement) piece.prepend(replacement_);

      std::vector<Split> pieces;
      if (config_.split) {
        const char32_t replacement = config_.replacement;
        auto matches = find_chars(piece.get(), [replacement](char32_t c) { return c == replacement; });
        for (auto& word : piece.split(matches, SplitDelimiterBehavior::MergedWithNext)) {
          pieces.push_back({std::move(word), std::nullopt});
        }
      } else {
        pieces.push_back({std::move(piece), std::nullopt});
      }
      return pieces;
    });
  }

 private:
  MetaspaceConfig config_;
  std::string replacement_;
};

std::vector<Split> to_splits(std::vector<NormalizedString> pieces) {
  std::vector<Split> splits;
  splits.reserve(pieces.size());
  for (auto& piece : pieces) splits.push_back({std::move(piece), std::nullopt});
  return splits;
}

std::vector<PatternMatch> invert(std::vector<PatternMatch> matches) {
  for (auto& m : matches) m.is_match = !m.is_match;
  return matches;
}

// byte_level.rs
const char kGpt2Pattern[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex) : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}

  void pre_tokenize(PreTokenizedString& text) const override {
    static const Regex regex(kGpt2Pattern, "pre_tokenizer ByteLevel");
    text.split([this](NormalizedString piece) {
      if (add_prefix_space_ && piece.get().compare(0, 1, " ") != 0) piece.prepend(" ");
      if (!use_regex_) return to_splits({std::move(piece)});
      return to_splits(piece.split(regex.find_matches(piece.get()), SplitDelimiterBehavior::Isolated));
    });
    for (auto& split : text.splits()) {
      if (split.tokens) continue;
      const std::string& s = split.normalized.get();
      std::vector<std::pair<char32_t, int>> dest;
      dest.reserve(s.size());
      for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
        decode_utf8_at(s, pos, &len);
        for (size_t i = 0; i < len; ++i) {
          dest.push_back({byte_to_char(static_cast<unsigned char>(s[pos + i])), i > 0 ? 1 : 0});
        }
      }
      split.normalized.transform(dest, 0);
    }
  }

 private:
  bool add_prefix_space_;
  bool use_regex_;
};

// A pre-tokenizer that splits every piece on the characters `predicate` selects.
class CharSplit : public PreTokenizer {
 public:
  CharSplit(std::function<bool(char32_t)> predicate, SplitDelimiterBehavior behavior)
      : predicate_(std::move(predicate)), behavior_(behavior) {}
  void pre_tokenize(PreTokenizedString& text) const override {
    text.split([this](NormalizedString piece) {
      return to_splits(piece.split(find_chars(piece.get(), predicate_), behavior_));
    });
  }

 private:
  std::function<bool(char32_t)> predicate_;
  SplitDelimiterBehavior behavior_;
};

class BertPreTokenizer : public PreTokenizer {
 public:
  void pre_tokenize(PreTokenizedString& text) const override {
    whitespace_.pre_tokenize(text);
    punctuation_.pre_tokenize(text);
  }

 private:
  CharSplit whitespace_{is_whitespace, SplitDelimiterBehavior::Removed};
  CharSplit punctuation_{is_punctuation, SplitDelimiterBehavior::Isolated};
};

class RegexSplit : public PreTokenizer {
 public:
  RegexSplit(Pattern pattern, SplitDelimiterBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(PreTokenizedString& text) const override {
    text.split([this](NormalizedString piece) {
      auto matches = pattern_.find_matches(piece.get());
      if (invert_) matches = invert(std::move(matches));
      return to_splits(piece.split(matches, behavior_));
    });
  }

 private:
  Pattern pattern_;
  SplitDelimiterBehavior behavior_;
  bool invert_;
};

// unicode_scripts/pre_tokenizer.rs
class UnicodeScripts : public PreTokenizer {
 public:
  void pre_tokenize(PreTokenizedString& text) const override {
    text.split([](NormalizedString piece) {
      constexpr int kAny = -1;
      auto fixed_script = [](char32_t c) {
        if (c == 0x30FC) return static_cast<int>(USCRIPT_HAN);
        if (c == U' ') return kAny;
        const int script = script_of(c);
        if (script == USCRIPT_HIRAGANA || script == USCRIPT_KATAKANA) return static_cast<int>(USCRIPT_HAN);
        return script;
      };
      const std::string& s = piece.get();
      std::vector<size_t> ranges;
      std::optional<int> last;
      for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
        const int script = fixed_script(decode_utf8_at(s, pos, &len));
        if (script != kAny && last != kAny && last != script) ranges.push_back(pos);
        if (script != kAny) last = script;
      }
      ranges.push_back(s.size());
      std::vector<Split> splits;
      for (size_t i = 0; i + 1 < ranges.size(); ++i) {
        splits.push_back({piece.slice({ranges[i], ranges[i + 1]}), std::nullopt});
      }
      return splits;
    });
  }
};

SplitDelimiterBehavior read_behavior(const json& config, const std::string& stage) {
  static const std::map<std::string, SplitDelimiterBehavior> kBehaviors = {
      {"Removed", SplitDelimiterBehavior::Removed},
      {"Isolated", SplitDelimiterBehavior::Isolated},
      {"MergedWithPrevious", SplitDelimiterBehavior::MergedWithPrevious},
      {"MergedWithNext", SplitDelimiterBehavior::MergedWithNext},
      {"Contiguous", SplitDelimiterBehavior::Contiguous},
  };
  const std::string name = string_or(config, "behavior", "Isolated");
  const auto it = kBehaviors.find(name);
  if (it == kBehaviors.end()) throw TokenizerError(stage + ": unknown behavior '" + name + "'");
  return it->second;
}

std::unique_ptr<PreTokenizer> build_split(const json& config) {
  const json& pattern = config.at("pattern");
  json regex = pattern;
  if (pattern.is_object() && pattern.contains("String")) {
    regex = json{{"Regex", Regex::escape(pattern.at("String").get<std::string>())}};
  }
  return std::make_unique<RegexSplit>(Pattern(regex, "pre_tokenizer Split"),
                                      read_behavior(config, "pre_tokenizer Split"), bool_or(config, "invert", false));
}

std::unique_ptr<PreTokenizer> build_sequence(const json& config) {
  std::vector<std::unique_ptr<PreTokenizer>> pre_tokenizers;
  for (const auto& sub : config.at("pretokenizers")) {
    if (auto pre_tokenizer = build_pre_tokenizer(sub)) pre_tokenizers.push_back(std::move(pre_tokenizer));
  }
  return std::make_unique<SequencePreTokenizer>(std::move(pre_tokenizers));
}

std::unique_ptr<PreTokenizer> build_metaspace(const json& config) {
  return std::make_unique<Metaspace>(read_metaspace_config(config));
}

const ComponentRegistry<PreTokenizer>& registry() {
  static const ComponentRegistry<PreTokenizer> pre_tokenizers = {
      {"Sequence", build_sequence},
      {"Metaspace", build_metaspace},
      {"ByteLevel",
       [](const json& c) -> std::unique_ptr<PreTokenizer> {
         return std::make_unique<ByteLevel>(bool_or(c, "add_prefix_space", true), bool_or(c, "use_regex", true));
       }},
      {"Whitespace",
       [](const json&) -> std::unique_ptr<PreTokenizer> {
         return std::make_unique<RegexSplit>(Pattern(json{{"Regex", "\\w+|[^\\w\\s]+"}}, "pre_tokenizer Whitespace"),
                                             SplitDelimiterBehavior::Removed, true);
       }},
      {"WhitespaceSplit",
       [](const json&) -> std::unique_ptr<PreTokenizer> {
         return std::make_unique<CharSplit>(is_whitespace, SplitDelimiterBehavior::Removed);
       }},
      {"BertPreTokenizer",
       [](const json&) -> std::unique_ptr<PreTokenizer> { return std::make_unique<BertPreTokenizer>(); }},
      {"Punctuation",
       [](const json& c) -> std::unique_ptr<PreTokenizer> {
         return std::make_unique<CharSplit>(is_punctuation, read_behavior(c, "pre_tokenizer Punctuation"));
       }},
      {"Digits",
       [](const json& c) -> std::unique_ptr<PreTokenizer> {
         return std::make_unique<CharSplit>(is_numeric, bool_or(c, "individual_digits", false)
                                                            ? SplitDelimiterBehavior::Isolated
                                                            : SplitDelimiterBehavior::Contiguous);
       }},
      {"CharDelimiterSplit",
       [](const json& c) -> std::unique_ptr<PreTokenizer> {
         const char32_t delimiter = single_char(c, "delimiter", "pre_tokenizer CharDelimiterSplit");
         return std::make_unique<CharSplit>([delimiter](char32_t x) { return x == delimiter; },
                                            SplitDelimiterBehavior::Removed);
       }},
      {"Split", build_split},
      {"UnicodeScripts",
       [](const json&) -> std::unique_ptr<PreTokenizer> { return std::make_unique<UnicodeScripts>(); }},
  };
  return pre_tokenizers;
}

}  // namespace

MetaspaceConfig read_metaspace_config(const json& config) {
  MetaspaceConfig metaspace;
  metaspace.replacement = single_char(config, "replacement", "Metaspace");
  const std::string scheme = string_or(config, "prepend_scheme", "always");
  if (scheme == "always") {
    metaspace.prepend_scheme = PrependScheme::Always;
  } else if (scheme == "first") {
    metaspace.prepend_scheme = PrependScheme::First;
  } else if (scheme == "never") {
    metaspace.prepend_scheme = PrependScheme::Never;
  } else {
    throw TokenizerError("Metaspace: unknown prepend_scheme '" + scheme + "'");
  }
  // Files written before prepend_scheme existed carry add_prefix_space instead.
  if (!bool_or(config, "add_prefix_space", true)) {
    if (metaspace.prepend_scheme != PrependScheme::Never) {
      throw TokenizerError("Metaspace: add_prefix_space false does not match prepend_scheme '" + scheme + "'");
    }
  }
  metaspace.split = bool_or(config, "split", true);
  return metaspace;
}

std::unique_ptr<PreTokenizer> build_pre_tokenizer(const json& config) {
  if (config.is_null()) return nullptr;
  return build_component(registry(), config, "pre_tokenizer");
}

}  // namespace transformers::tokenizers
