#include "tokenizers/normalizers.h"

#include <utility>
#include <vector>

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
  Replace(std::string pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(NormalizedString& text) const override { text.replace(find_literal(text.get(), pattern_), content_); }

 private:
  std::string pattern_;
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
  return std::make_unique<Replace>(literal_pattern(config.at("pattern"), "normalizer Replace"),
                                   config.at("content").get<std::string>());
}

std::unique_ptr<Normalizer> build_strip(const json& config) {
  return std::make_unique<Strip>(config.at("strip_left").get<bool>(), config.at("strip_right").get<bool>());
}

const ComponentRegistry<Normalizer>& registry() {
  static const ComponentRegistry<Normalizer> normalizers = {
      {"Sequence", build_sequence},
      {"Prepend", build_prepend},
      {"Replace", build_replace},
      {"Strip", build_strip},
  };
  return normalizers;
}

}  // namespace

std::string literal_pattern(const json& pattern, const std::string& stage) {
  if (pattern.contains("String")) {
    std::string literal = pattern.at("String").get<std::string>();
    if (literal.empty()) throw TokenizerError(stage + ": an empty String pattern is not supported");
    return literal;
  }
  if (pattern.contains("Regex")) {
    throw TokenizerError(stage + ": Regex patterns are not supported yet (pattern " + pattern.dump() + ")");
  }
  throw TokenizerError(stage + ": unknown pattern " + pattern.dump());
}

std::unique_ptr<Normalizer> build_normalizer(const json& config) {
  if (config.is_null()) return nullptr;
  return build_component(registry(), config, "normalizer");
}

}  // namespace transformers::tokenizers
