#include "tokenizers/unicode.h"

#include <unicode/brkiter.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/uniset.h>
#include <unicode/unistr.h>
#include <unicode/uscript.h>
#include <unicode/utext.h>

#include <memory>
#include <stdexcept>

namespace transformers::tokenizers {

size_t utf8_char_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string to_utf8(char32_t c) {
  std::string out;
  append_utf8(out, c);
  return out;
}

char32_t decode_utf8_at(const std::string& s, size_t pos, size_t* len) {
  const auto lead = static_cast<unsigned char>(s[pos]);
  size_t n = utf8_char_len(lead);
  if (n == 1 || pos + n > s.size()) {
    *len = 1;
    return lead < 0x80 ? lead : 0xFFFD;
  }
  char32_t c = lead & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) {
    const auto byte = static_cast<unsigned char>(s[pos + i]);
    if ((byte & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFD;
    }
    c = (c << 6) | (byte & 0x3F);
  }
  *len = n;
  return c;
}

std::vector<char32_t> decode_utf8(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) out.push_back(decode_utf8_at(s, pos, &len));
  return out;
}

size_t find_invalid_utf8(const std::string& s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const auto lead = static_cast<unsigned char>(s[pos]);
    size_t n = utf8_char_len(lead);
    if (lead >= 0x80 && n == 1) return pos;
    if (lead == 0xC0 || lead == 0xC1 || lead > 0xF4 || pos + n > s.size()) return pos;
    for (size_t i = 1; i < n; ++i) {
      if ((static_cast<unsigned char>(s[pos + i]) & 0xC0) != 0x80) return pos;
    }
    if (n > 1) {
      const auto second = static_cast<unsigned char>(s[pos + 1]);
      if (lead == 0xE0 && second < 0xA0) return pos;  // overlong
      if (lead == 0xED && second > 0x9F) return pos;  // surrogate
      if (lead == 0xF0 && second < 0x90) return pos;  // overlong
      if (lead == 0xF4 && second > 0x8F) return pos;  // > U+10FFFF
    }
    pos += n;
  }
  return std::string::npos;
}

bool is_valid_utf8(const std::string& s) { return find_invalid_utf8(s) == std::string::npos; }

std::vector<size_t> char_starts(const std::string& s) {
  std::vector<size_t> starts;
  starts.reserve(s.size() + 1);
  for (size_t pos = 0, len = 0; pos < s.size(); pos += len) {
    starts.push_back(pos);
    decode_utf8_at(s, pos, &len);
  }
  starts.push_back(s.size());
  return starts;
}

bool is_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

namespace {

const icu::UnicodeSet& word_chars() {
  static const icu::UnicodeSet* set = [] {
    UErrorCode status = U_ZERO_ERROR;
    auto* words = new icu::UnicodeSet(
        icu::UnicodeString::fromUTF8("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]"), status);
    words->freeze();
    return words;
  }();
  return *set;
}

const icu::Normalizer2& normalizer_for(NormalizationForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = nullptr;
  switch (form) {
    case NormalizationForm::NFC: normalizer = icu::Normalizer2::getNFCInstance(status); break;
    case NormalizationForm::NFD: normalizer = icu::Normalizer2::getNFDInstance(status); break;
    case NormalizationForm::NFKC: normalizer = icu::Normalizer2::getNFKCInstance(status); break;
    case NormalizationForm::NFKD: normalizer = icu::Normalizer2::getNFKDInstance(status); break;
  }
  if (U_FAILURE(status) || normalizer == nullptr) throw std::runtime_error("ICU normalizer unavailable");
  return *normalizer;
}

std::vector<char32_t> to_chars(const icu::UnicodeString& text) {
  std::vector<char32_t> chars;
  for (int32_t i = 0; i < text.length();) {
    const UChar32 c = text.char32At(i);
    chars.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return chars;
}

}  // namespace

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
  return word_chars().contains(static_cast<UChar32>(c));
}

namespace {

struct ByteTable {
  char32_t to_char[256];
  std::vector<int> to_byte;
  ByteTable() : to_byte(512, -1) {
    bool direct[256] = {};
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    char32_t n = 0;
    for (int b = 0; b < 256; ++b) to_char[b] = direct[b] ? static_cast<char32_t>(b) : 256 + n++;
    for (int b = 0; b < 256; ++b) to_byte[to_char[b]] = b;
  }
};

const ByteTable& byte_table() {
  static const ByteTable table;
  return table;
}

}  // namespace

char32_t byte_to_char(unsigned char byte) { return byte_table().to_char[byte]; }

int char_to_byte(char32_t c) { return c < 512 ? byte_table().to_byte[c] : -1; }

std::string utf8_lossy(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char lead = s[i];
    if (lead < 0x80) {
      out += static_cast<char>(lead);
      ++i;
      continue;
    }
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      need = 1;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      need = 2;
      if (lead == 0xE0) lo = 0xA0;
      if (lead == 0xED) hi = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      need = 3;
      if (lead == 0xF0) lo = 0x90;
      if (lead == 0xF4) hi = 0x8F;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    size_t j = i + 1;
    size_t got = 0;
    while (got < need && j < n) {
      const unsigned char c = s[j];
      const bool ok = got == 0 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
      if (!ok) break;
      ++j;
      ++got;
    }
    if (got == need) {
      out.append(bytes, i, j - i);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i = j;
  }
  return out;
}

bool is_punctuation(char32_t c) {
  if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
                       (c >= 0x7B && c <= 0x7E);
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_P_MASK) != 0;
}

bool is_numeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}

bool is_other(char32_t c) { return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_C_MASK) != 0; }

bool is_mark_nonspacing(char32_t c) { return u_charType(static_cast<UChar32>(c)) == U_NON_SPACING_MARK; }

bool is_combining_mark(char32_t c) { return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_M_MASK) != 0; }

std::u32string to_lowercase(char32_t c) {
  if (c < 0x80) return std::u32string(1, (c >= 'A' && c <= 'Z') ? c + 32 : c);
  icu::UnicodeString text(static_cast<UChar32>(c));
  text.toLower(icu::Locale::getRoot());
  const auto chars = to_chars(text);
  return {chars.begin(), chars.end()};
}

int script_of(char32_t c) {
  UErrorCode status = U_ZERO_ERROR;
  return static_cast<int>(uscript_getScript(static_cast<UChar32>(c), &status));
}

std::vector<std::pair<char32_t, int>> normalize_with_changes(const std::string& text, NormalizationForm form) {
  const icu::Normalizer2& normalizer = normalizer_for(form);
  const std::vector<char32_t> chars = decode_utf8(text);
  std::vector<std::pair<char32_t, int>> result;
  result.reserve(chars.size());
  UErrorCode quick_status = U_ZERO_ERROR;
  if (normalizer.quickCheck(icu::UnicodeString::fromUTF8(text), quick_status) == UNORM_YES &&
      U_SUCCESS(quick_status)) {
    for (char32_t c : chars) result.push_back({c, 0});
    return result;
  }
  // Segments start at characters with a normalization boundary before them; each is normalized on its own and
  // its n input characters map to its m output characters.
  for (size_t start = 0; start < chars.size();) {
    size_t end = start + 1;
    while (end < chars.size() && !normalizer.hasBoundaryBefore(static_cast<UChar32>(chars[end]))) ++end;
    if (end == start + 1 && chars[start] < 0x80) {
      result.push_back({chars[start], 0});
      start = end;
      continue;
    }
    icu::UnicodeString segment;
    for (size_t i = start; i < end; ++i) segment.append(static_cast<UChar32>(chars[i]));
    UErrorCode status = U_ZERO_ERROR;
    const std::vector<char32_t> out = to_chars(normalizer.normalize(segment, status));
    const auto n = static_cast<int>(end - start);
    const auto m = static_cast<int>(out.size());
    for (int i = 0; i < m; ++i) {
      int change = 0;
      if (i >= n) change = 1;
      if (m < n && i == m - 1) change = m - n;
      result.push_back({out[static_cast<size_t>(i)], change});
    }
    if (m == 0 && !result.empty()) result.back().second -= n;
    start = end;
  }
  return result;
}

std::string normalize_utf8(const std::string& text, NormalizationForm form) {
  UErrorCode status = U_ZERO_ERROR;
  std::string out;
  normalizer_for(form).normalize(icu::UnicodeString::fromUTF8(text), status).toUTF8String(out);
  return out;
}

std::vector<size_t> grapheme_boundaries(const std::string& text) {
  std::vector<size_t> boundaries;
  if (text.empty()) {
    boundaries.push_back(0);
    return boundaries;
  }
  UErrorCode status = U_ZERO_ERROR;
  static thread_local std::unique_ptr<icu::BreakIterator> iterator(
      icu::BreakIterator::createCharacterInstance(icu::Locale::getRoot(), status));
  UText* utext = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  iterator->setText(utext, status);
  for (int32_t pos = iterator->first(); pos != icu::BreakIterator::DONE; pos = iterator->next()) {
    boundaries.push_back(static_cast<size_t>(pos));
  }
  utext_close(utext);
  if (boundaries.empty() || boundaries.back() != text.size()) boundaries.push_back(text.size());
  return boundaries;
}

}  // namespace transformers::tokenizers
