#include "tokenizers/unicode.h"

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

struct CodeRange {
  char32_t first, last;
};

// Punctuation and symbol blocks; the letters, digits and joiners inside them are cut out.
constexpr CodeRange kNonWordRanges[] = {
    {0xA1, 0xA9},     {0xAB, 0xB1},     {0xB4, 0xB4},     {0xB6, 0xB8},       {0xBB, 0xBB},     {0xBF, 0xBF},
    {0xD7, 0xD7},     {0xF7, 0xF7},     {0x200B, 0x200B}, {0x200E, 0x2027},   {0x2030, 0x205E}, {0x2060, 0x206F},
    {0x20A0, 0x20CF}, {0x2190, 0x245F}, {0x2500, 0x2775}, {0x2794, 0x2BFF},   {0x2E00, 0x2E7F}, {0x3001, 0x3004},
    {0x3008, 0x3020}, {0x3030, 0x3030}, {0xFE10, 0xFE1F}, {0xFE30, 0xFE4F},   {0xFF01, 0xFF0F}, {0xFF1A, 0xFF20},
    {0xFF3B, 0xFF3E}, {0xFF40, 0xFF40}, {0xFF5B, 0xFF65}, {0x1F000, 0x1FAFF},
};

}  // namespace

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
  if (is_whitespace(c)) return false;
  for (const auto& range : kNonWordRanges) {
    if (c >= range.first && c <= range.last) return false;
  }
  return true;
}

}  // namespace transformers::tokenizers
