// UTF-8 and the few Unicode properties the tokenizer stages need.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
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
// Regex `\w`: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control (from ICU).
bool is_word_char(char32_t c);
// tokenizers' is_bert_punc: char::is_ascii_punctuation or a P* general category.
bool is_punctuation(char32_t c);
// Rust `char::is_numeric`: general categories Nd, Nl, No.
bool is_numeric(char32_t c);
// unicode_categories' is_other: Cc, Cf, Cn, Co, Cs.
bool is_other(char32_t c);
bool is_mark_nonspacing(char32_t c);  // Mn
bool is_combining_mark(char32_t c);   // Mn, Mc, Me
// Rust `char::to_lowercase` / `to_uppercase` (full, context-free mappings).
std::u32string to_lowercase(char32_t c);
// ICU script code (UScriptCode) of `c`.
int script_of(char32_t c);

// GPT-2's byte <-> printable character table (tokenizers/src/pre_tokenizers/byte_level.rs, bytes_char).
char32_t byte_to_char(unsigned char byte);
int char_to_byte(char32_t c);  // -1 when `c` is not in the table
// Rust String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string utf8_lossy(const std::string& bytes);

enum class NormalizationForm { NFC, NFD, NFKC, NFKD };
// Normalizes `text` and says, for each output character, how it relates to the input, in the (char, change)
// form of NormalizedString::transform: 0 replaces one input character, +1 inserts, -n also removes n more.
std::vector<std::pair<char32_t, int>> normalize_with_changes(const std::string& text, NormalizationForm form);
std::string normalize_utf8(const std::string& text, NormalizationForm form);
// Byte offsets where extended grapheme clusters start, plus text.size().
std::vector<size_t> grapheme_boundaries(const std::string& text);

}  // namespace transformers::tokenizers
