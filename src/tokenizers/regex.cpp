#include "tokenizers/regex.h"

#include <unicode/regex.h>
#include <unicode/unistr.h>
#include <unicode/utext.h>

#include "transformers/errors.h"

namespace transformers::tokenizers {

namespace {

std::string onig_to_icu(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 16);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[i + 1];
      if (next == 's') {
        out += "\\p{White_Space}";
      } else if (next == 'S') {
        out += "\\P{White_Space}";
      } else {
        out += pattern[i];
        out += next;
      }
      ++i;
      continue;
    }
    out += pattern[i];
  }
  return out;
}

}  // namespace

struct Regex::Impl {
  std::unique_ptr<icu::RegexPattern> pattern;
};

Regex::Regex(const std::string& pattern, const std::string& what) : impl_(std::make_unique<Impl>()) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError error;
  impl_->pattern.reset(icu::RegexPattern::compile(icu::UnicodeString::fromUTF8(onig_to_icu(pattern)), 0, error, status));
  if (U_FAILURE(status)) {
    throw TokenizerError(what + ": invalid regex " + ("\"" + pattern + "\"") + " (" + u_errorName(status) +
                         " at offset " + std::to_string(error.offset) + ")");
  }
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

std::vector<Offsets> Regex::find_all(const std::string& text) const {
  std::vector<Offsets> found;
  if (text.empty()) return found;
  UErrorCode status = U_ZERO_ERROR;
  UText* utext = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  std::unique_ptr<icu::RegexMatcher> matcher(impl_->pattern->matcher(status));
  matcher->reset(utext);
  while (matcher->find(status) && U_SUCCESS(status)) {
    const auto start = static_cast<size_t>(matcher->start64(status));
    const auto end = static_cast<size_t>(matcher->end64(status));
    found.push_back({start, end});
  }
  utext_close(utext);
  return found;
}

std::vector<PatternMatch> Regex::find_matches(const std::string& text) const {
  if (text.empty()) return {{{0, 0}, false}};
  std::vector<PatternMatch> matches;
  size_t prev = 0;
  for (const auto& [start, end] : find_all(text)) {
    if (prev != start) matches.push_back({{prev, start}, false});
    matches.push_back({{start, end}, true});
    prev = end;
  }
  if (prev != text.size()) matches.push_back({{prev, text.size()}, false});
  return matches;
}

std::string Regex::escape(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    if (std::string("\\.+*?()|[]{}^$#&-~ ").find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace transformers::tokenizers
