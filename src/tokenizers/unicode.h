// UTF-8 and the few Unicode properties the tokenizer stages need.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace transformers::tokenizers {

// Byte length of the UTF-8 sequence that starts with `lead` (1 for stray continuation bytes).
size_t utf8_char_len(unsigned char lead);
void append_utf8(std::string& out, char32_t c);
std::string to_utf8(char32_t c);
// Decodes valid UTF-8 (the input of every stage); invalid bytes decode to U+FFFD one byte at a time.
char32_t decode_utf8_at(const std::string& s, size_t pos, size_t* len);
std::vector<char32_t> decode_utf8(const std::string& s);
bool is_valid_utf8(const std::string& s);
// Byte offset of the first invalid sequence, std::string::npos when `s` is valid UTF-8.
size_t find_invalid_utf8(const std::string& s);
// Byte offset of the start of each character, plus s.size() at the end.
std::vector<size_t> char_starts(const std::string& s);

// Rust `char::is_whitespace` / regex `\s`: the Unicode White_Space property.
bool is_whitespace(char32_t c);
// Regex `\w`. Exact for ASCII; outside ASCII an approximation: everything that is not whitespace,
// punctuation or a symbol of the common blocks counts as a word character.
bool is_word_char(char32_t c);

}  // namespace transformers::tokenizers
