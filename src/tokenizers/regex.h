// Regular expressions of tokenizer.json (Split / Replace patterns, the ByteLevel GPT-2 pattern) on ICU, in place of
// the Oniguruma engine the Rust library uses (tokenizers/src/utils/onig.rs). `\s` / `\S` are rewritten to the
// Unicode White_Space property, as Oniguruma reads them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizers/normalized_string.h"

namespace transformers::tokenizers {

class Regex {
 public:
  // Throws TokenizerError naming `what` when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& what);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Matches and the gaps between them, as tokenizers' Pattern::find_matches.
  std::vector<PatternMatch> find_matches(const std::string& text) const;
  // [start, end) of every non-overlapping match, left to right.
  std::vector<Offsets> find_all(const std::string& text) const;

  static std::string escape(const std::string& literal);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace transformers::tokenizers
