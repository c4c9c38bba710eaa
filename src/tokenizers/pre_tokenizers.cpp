#include "tokenizers/pre_tokenizers.h"

#include <utility>

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
