// Tokenizer tests: parity with the Rust `tokenizers` library on the shared fixtures (ids, tokens, offsets, masks,
// decoding), the embedded stories260K tokenizer, each pipeline stage on small hand-made tokenizers, errors, and
// TextStreamer.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "tokenizers/normalizers.h"
#include "tokenizers/pre_tokenizers.h"
#include "tokenizers/sentencepiece.h"
#include "tokenizers/tokenizer_impl.h"
#include "tokenizers/unicode.h"
#include "transformers/errors.h"
#include "transformers/tokenizer.h"

namespace {

using json = nlohmann::json;
using transformers::TextStreamer;
using transformers::Tokenizer;
using transformers::TokenizerError;
using transformers::TokenizerImpl;
using transformers::tokenizers::OffsetType;
using Offsets = std::pair<size_t, size_t>;

const std::string kSourceDir = TFCPP_SOURCE_DIR;

std::string fixture_dir(const std::string& name) { return kSourceDir + "/../shared/fixtures/tokenizers/" + name; }
std::string stories_dir() { return kSourceDir + "/models/stories260K"; }

// ---------------------------------------------------------------------------------------------------------------
// Comparison with a readable first difference.

std::string show(const std::string& s) { return json(s).dump(); }
std::string show(uint32_t v) { return std::to_string(v); }
std::string show(int64_t v) { return std::to_string(v); }
std::string show(const Offsets& o) { return "[" + std::to_string(o.first) + "," + std::to_string(o.second) + "]"; }
std::string show(const std::optional<uint32_t>& v) { return v ? std::to_string(*v) : "null"; }

template <typename T>
std::string first_difference(const std::vector<T>& got, const std::vector<T>& expected) {
  const size_t common = std::min(got.size(), expected.size());
  for (size_t i = 0; i < common; ++i) {
    if (!(got[i] == expected[i])) {
      return "first difference at position " + std::to_string(i) + ": got " + show(got[i]) + ", expected " +
             show(expected[i]);
    }
  }
  if (got.size() != expected.size()) {
    return "lengths differ: got " + std::to_string(got.size()) + ", expected " + std::to_string(expected.size()) +
           " (equal up to position " + std::to_string(common) + ")";
  }
  return "";
}

std::string first_difference(const std::string& got, const std::string& expected) {
  if (got == expected) return "";
  size_t i = 0;
  while (i < got.size() && i < expected.size() && got[i] == expected[i]) ++i;
  return "first difference at byte " + std::to_string(i) + ": got " + show(got) + ", expected " + show(expected);
}

template <typename T>
void expect_same(const T& got, const T& expected, const std::string& what, const std::string& context) {
  const std::string difference = first_difference(got, expected);
  if (!difference.empty()) ADD_FAILURE() << what << ": " << difference << "\n  " << context;
}

// ---------------------------------------------------------------------------------------------------------------
// Fixture cases (cases.jsonl of the real Rust library).

struct FixtureCase {
  std::string folder;
  json data;
};

void PrintTo(const FixtureCase& fixture, std::ostream* out) {
  *out << fixture.folder << " case " << fixture.data.at("id").get<std::string>();
}

std::vector<FixtureCase> load_cases(const std::string& folder) {
  std::vector<FixtureCase> cases;
  std::ifstream file(fixture_dir(folder) + "/cases.jsonl");
  for (std::string line; std::getline(file, line);) {
    if (!line.empty()) cases.push_back({folder, json::parse(line)});
  }
  return cases;
}

const std::vector<std::string> kFixtureFolders = {
    "gpt2-bpe",          "roberta-bpe", "bert-uncased-wordpiece", "bert-cased-wordpiece", "bert-cased-trunc-pad",
    "llama-spm-bpe",     "llama-metaspace-bpe", "t5-unigram",     "camembert-unigram"};

std::vector<FixtureCase> all_fixture_cases() {
  std::vector<FixtureCase> cases;
  for (const auto& folder : kFixtureFolders) {
    auto more = load_cases(folder);
    cases.insert(cases.end(), more.begin(), more.end());
  }
  return cases;
}

std::string case_name(const testing::TestParamInfo<FixtureCase>& info) {
  std::string name = info.param.folder + "_" + info.param.data.at("id").get<std::string>();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

const TokenizerImpl& fixture_tokenizer(const std::string& folder) {
  static std::map<std::string, std::unique_ptr<TokenizerImpl>> cache;
  auto& tokenizer = cache[folder];
  if (!tokenizer) tokenizer = TokenizerImpl::from_file(fixture_dir(folder) + "/tokenizer.json");
  return *tokenizer;
}

const Tokenizer& fixture_public_tokenizer(const std::string& folder) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& tokenizer = cache[folder];
  if (!tokenizer) tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_pretrained(fixture_dir(folder)));
  return *tokenizer;
}

std::vector<Offsets> read_offsets(const json& values) {
  std::vector<Offsets> offsets;
  for (const auto& pair : values) offsets.emplace_back(pair.at(0).get<size_t>(), pair.at(1).get<size_t>());
  return offsets;
}

std::vector<std::optional<uint32_t>> read_nullable(const json& values) {
  std::vector<std::optional<uint32_t>> result;
  for (const auto& value : values) {
    result.push_back(value.is_null() ? std::nullopt : std::optional<uint32_t>(value.get<uint32_t>()));
  }
  return result;
}

std::vector<int64_t> to_int64(const std::vector<uint32_t>& ids) { return {ids.begin(), ids.end()}; }

class TokenizerFixtureTest : public testing::TestWithParam<FixtureCase> {};

json offsets_json(const std::vector<Offsets>& offsets) {
  json out = json::array();
  for (const auto& [start, end] : offsets) out.push_back({start, end});
  return out;
}

// For the fields the README lists as version_dependent, the value of either Rust version is accepted.
void expect_field(const json& got, const json& data, const std::string& field, const std::string& context) {
  const json& expected = data.at("expected");
  if (!expected.contains(field)) {
    EXPECT_FALSE(got.contains(field) && !(data.contains("version_dependent") &&
                                          data.at("version_dependent").at("alt_expected").contains(field)))
        << field << ": got " << got.value(field, json()).dump() << " where none was expected\n  " << context;
    return;
  }
  if (got.contains(field) && got.at(field) == expected.at(field)) return;
  if (data.contains("version_dependent")) {
    const json& alt = data.at("version_dependent").at("alt_expected");
    if (alt.contains(field) && got.contains(field) && got.at(field) == alt.at(field)) return;
  }
  ADD_FAILURE() << field << ": got " << got.value(field, json()).dump() << "\n  expected " << expected.at(field).dump()
                << "\n  " << context;
}

void check_encode_case(const TokenizerImpl& tokenizer, const Tokenizer& public_tokenizer, const json& data,
                       const std::string& context) {
  const std::string input = data.at("input").get<std::string>();
  const bool add_special_tokens = data.at("options").at("add_special_tokens").get<bool>();
  std::optional<std::string> pair;
  if (data.contains("input_pair")) pair = data.at("input_pair").get<std::string>();
  const json& expected = data.at("expected");

  const auto encoding = tokenizer.encode(input, pair, add_special_tokens, OffsetType::Char);
  const auto byte_encoding = tokenizer.encode(input, pair, add_special_tokens, OffsetType::Byte);
  const auto expected_ids = expected.at("ids").get<std::vector<uint32_t>>();
  expect_same(encoding.ids, expected_ids, "ids", context);
  expect_same(encoding.tokens, expected.at("tokens").get<std::vector<std::string>>(), "tokens", context);
  expect_same(encoding.offsets, read_offsets(expected.at("offsets")), "offsets (characters)", context);
  expect_same(byte_encoding.offsets, read_offsets(expected.at("offsets_utf8")), "offsets (bytes)", context);
  expect_same(encoding.type_ids, expected.at("type_ids").get<std::vector<uint32_t>>(), "type_ids", context);
  expect_same(encoding.special_tokens_mask, expected.at("special_tokens_mask").get<std::vector<uint32_t>>(),
              "special_tokens_mask", context);
  expect_same(encoding.attention_mask, expected.at("attention_mask").get<std::vector<uint32_t>>(), "attention_mask",
              context);
  expect_same(encoding.sequence_ids, read_nullable(expected.at("sequence_ids")), "sequence_ids", context);
  json got;
  json words = json::array();
  for (const auto& w : encoding.word_ids) words.push_back(w ? json(*w) : json());
  got["word_ids"] = words;
  if (!encoding.overflowing.empty()) {
    json overflowing = json::array();
    for (const auto& o : encoding.overflowing) {
      overflowing.push_back({{"ids", o.ids}, {"tokens", o.tokens}, {"offsets", offsets_json(o.offsets)}});
    }
    got["overflowing"] = overflowing;
  }
  expect_field(got, data, "word_ids", context);
  expect_field(got, data, "overflowing", context);

  const auto ids = to_int64(expected_ids);
  expect_same(tokenizer.decode(ids, false), expected.at("decoded").get<std::string>(), "decoded", context);
  expect_same(tokenizer.decode(ids, true), expected.at("decoded_skip_special").get<std::string>(),
              "decoded_skip_special", context);

  // The public API: Tokenizer::from_pretrained (tokenizer_config.json applied) and encode_plus.
  transformers::EncodeOptions options;
  options.add_special_tokens = add_special_tokens;
  const transformers::Encoding plus =
      pair ? public_tokenizer.encode_plus(input, *pair, options) : public_tokenizer.encode_plus(input, options);
  expect_same(plus.ids, ids, "Tokenizer::encode_plus ids", context);
  expect_same(plus.offsets, read_offsets(expected.at("offsets")), "Tokenizer::encode_plus offsets", context);
  expect_same(plus.type_ids, to_int64(expected.at("type_ids").get<std::vector<uint32_t>>()),
              "Tokenizer::encode_plus type_ids", context);
  if (!pair) {
    expect_same(public_tokenizer.encode(input, add_special_tokens), ids, "Tokenizer::encode ids", context);
    if (!add_special_tokens && !tokenizer.padding()) {
      expect_same(public_tokenizer.tokenize(input), expected.at("tokens").get<std::vector<std::string>>(),
                  "Tokenizer::tokenize", context);
    }
  }
}

TEST_P(TokenizerFixtureTest, MatchesRustTokenizers) {
  const FixtureCase& fixture = GetParam();
  const json& data = fixture.data;
  const TokenizerImpl& tokenizer = fixture_tokenizer(fixture.folder);
  const std::string kind = data.at("kind").get<std::string>();
  std::string context = fixture.folder + " case " + data.at("id").get<std::string>();
  if (data.contains("input")) context += ", input " + show(data.at("input").get<std::string>());
  if (data.contains("input_pair")) context += ", pair " + show(data.at("input_pair").get<std::string>());

  if (kind == "encode" || kind == "encode_pair") {
    check_encode_case(tokenizer, fixture_public_tokenizer(fixture.folder), data, context);
  } else if (kind == "decode") {
    const auto ids = data.at("ids").get<std::vector<int64_t>>();
    expect_same(tokenizer.decode(ids, false), data.at("expected").at("decoded").get<std::string>(), "decoded", context);
    expect_same(tokenizer.decode(ids, true), data.at("expected").at("decoded_skip_special").get<std::string>(),
                "decoded_skip_special", context);
  } else if (kind == "decode_each") {
    const auto ids = data.at("ids").get<std::vector<int64_t>>();
    const json& expected = data.at("expected");
    std::vector<std::string> tokens, decoded, decoded_skip;
    for (int64_t id : ids) {
      tokens.push_back(tokenizer.id_to_token(id).value_or(""));
      decoded.push_back(tokenizer.decode({id}, false));
      decoded_skip.push_back(tokenizer.decode({id}, true));
    }
    expect_same(tokens, expected.at("tokens").get<std::vector<std::string>>(), "id_to_token", context);
    expect_same(decoded, expected.at("decoded").get<std::vector<std::string>>(), "decode of each id", context);
    expect_same(decoded_skip, expected.at("decoded_skip_special").get<std::vector<std::string>>(),
                "decode of each id, skip_special_tokens", context);
  } else {
    FAIL() << "unknown case kind " << kind << " in " << context;
  }
}

INSTANTIATE_TEST_SUITE_P(AllFolders, TokenizerFixtureTest, testing::ValuesIn(all_fixture_cases()), case_name);

TEST(TokenizerFixtures, AllCasesAreLoaded) {
  for (const auto& folder : kFixtureFolders) EXPECT_EQ(load_cases(folder).size(), 344u) << folder;
}

TEST(TokenizerFixtures, VocabularyQueries) {
  const Tokenizer tokenizer = Tokenizer::from_pretrained(fixture_dir("llama-spm-bpe"));
  EXPECT_EQ(tokenizer.vocab_size(), 2000);
  EXPECT_EQ(tokenizer.token_to_id("<s>"), 1);
  EXPECT_EQ(tokenizer.token_to_id("<0x0A>"), 13);
  EXPECT_EQ(tokenizer.token_to_id("not a token"), -1);
  EXPECT_EQ(tokenizer.id_to_token(2), "</s>");
  EXPECT_EQ(tokenizer.id_to_token(2000), "");
  EXPECT_EQ(tokenizer.id_to_token(-1), "");
  EXPECT_TRUE(tokenizer.is_special(0));
  EXPECT_TRUE(tokenizer.is_special(2));
  EXPECT_FALSE(tokenizer.is_special(3));
}

// ---------------------------------------------------------------------------------------------------------------
// stories260K (models/stories260K): reference ids from its SentencePiece model (legacy Llama: "▁" + text with
// spaces as "▁", BPE by merge rank).

TEST(TokenizerStories260K, OnceUponATime) {
  const Tokenizer tokenizer = Tokenizer::from_pretrained(stories_dir());
  EXPECT_EQ(tokenizer.encode("Once upon a time"), (std::vector<int64_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tokenizer.encode("Once upon a time", false), (std::vector<int64_t>{403, 407, 261, 378}));
  EXPECT_EQ(tokenizer.tokenize("Once upon a time"), (std::vector<std::string>{"▁Once", "▁upon", "▁a", "▁time"}));
  EXPECT_EQ(tokenizer.decode({1, 403, 407, 261, 378}), "<s> Once upon a time");
  EXPECT_EQ(tokenizer.decode({1, 403, 407, 261, 378}, true), "Once upon a time");
  EXPECT_EQ(tokenizer.vocab_size(), 512);
}

TEST(TokenizerStories260K, ByteFallbackIds) {
  const Tokenizer tokenizer = Tokenizer::from_file(stories_dir() + "/tokenizer.json");
  // "▁h" "é" "ll" "o" "▁" then bytes: "世" = E4 B8 96, "界" = E7 95 8C, "🙂" = F0 9F 99 82 (<0xXX> is id 3 +
  // XX).
  EXPECT_EQ(tokenizer.encode("héllo 世界 🙂"),
            (std::vector<int64_t>{1, 270, 485, 306, 414, 410, 231, 187, 153, 234, 152, 143, 410, 243, 162, 156, 133}));
}

TEST(TokenizerStories260K, DecodeEncodeRoundTrip) {
  const Tokenizer tokenizer = Tokenizer::from_pretrained(stories_dir());
  const std::vector<std::string> texts = {
      "Once upon a time, there was a little girl named Lily.",
      "two  spaces,   three   spaces",
      " leading space",
      "trailing space ",
      "digits 0123456789 and 3.14159",
      "line one\nline two\n\nline four\n",
      "tabs\tand\r\nwindows newlines",
      "héllo 世界 🙂",
      "Ça va? Grüße, Ελληνικά, Русский, 日本語, 한국어, عربى",
      "",
  };
  for (const auto& text : texts) {
    EXPECT_EQ(tokenizer.decode(tokenizer.encode(text), true), text) << "input " << show(text);
    EXPECT_EQ(tokenizer.decode(tokenizer.encode(text, false)), text) << "input " << show(text);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Stages on small hand-made tokenizers. Expected values follow the Rust sources the stages port.

json tiny_tokenizer(const std::vector<std::string>& vocab, const json& merges) {
  json model = {{"type", "BPE"},          {"dropout", nullptr},     {"unk_token", nullptr},    {"fuse_unk", false},
                {"byte_fallback", false}, {"ignore_merges", false}, {"vocab", json::object()}, {"merges", merges}};
  for (size_t i = 0; i < vocab.size(); ++i) model["vocab"][vocab[i]] = i;
  return {
      {"version", "1.0"},      {"truncation", nullptr},    {"padding", nullptr},        {"added_tokens", json::array()},
      {"normalizer", nullptr}, {"pre_tokenizer", nullptr}, {"post_processor", nullptr}, {"decoder", nullptr},
      {"model", model}};
}

std::vector<std::string> tokens_of(const TokenizerImpl& tokenizer, const std::string& text) {
  return tokenizer.encode(text, std::nullopt, false).tokens;
}

TEST(TokenizerBpe, MergesInBothFormats) {
  const std::vector<std::string> vocab = {"a", "b", "c", "ab", "abc"};
  const auto legacy = TokenizerImpl::from_json(tiny_tokenizer(vocab, {"a b", "ab c"}));
  const auto pairs =
      TokenizerImpl::from_json(tiny_tokenizer(vocab, json::array({json::array({"a", "b"}), json::array({"ab", "c"})})));
  EXPECT_EQ(tokens_of(*legacy, "abcab"), (std::vector<std::string>{"abc", "ab"}));
  EXPECT_EQ(tokens_of(*pairs, "abcab"), (std::vector<std::string>{"abc", "ab"}));
}

TEST(TokenizerBpe, LowestRankFirstThenLeftmost) {
  const std::vector<std::string> vocab = {"a", "b", "c", "ab", "bc", "aa"};
  EXPECT_EQ(tokens_of(*TokenizerImpl::from_json(tiny_tokenizer(vocab, {"b c", "a b"})), "abc"),
            (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(tokens_of(*TokenizerImpl::from_json(tiny_tokenizer(vocab, {"a b", "b c"})), "abc"),
            (std::vector<std::string>{"ab", "c"}));
  EXPECT_EQ(tokens_of(*TokenizerImpl::from_json(tiny_tokenizer(vocab, {"a a"})), "aaa"),
            (std::vector<std::string>{"aa", "a"}));
}

TEST(TokenizerBpe, IgnoreMerges) {
  json config = tiny_tokenizer({"a", "b", "c", "abc"}, json::array());
  EXPECT_EQ(tokens_of(*TokenizerImpl::from_json(config), "abc"), (std::vector<std::string>{"a", "b", "c"}));
  config["model"]["ignore_merges"] = true;
  EXPECT_EQ(tokens_of(*TokenizerImpl::from_json(config), "abc"), (std::vector<std::string>{"abc"}));
}

TEST(TokenizerBpe, UnknownCharacters) {
  json config = tiny_tokenizer({"<unk>", "a"}, json::array());
  config["model"]["unk_token"] = "<unk>";
  config["model"]["fuse_unk"] = true;
  auto fused = TokenizerImpl::from_json(config)->encode("axya", std::nullopt, false);
  EXPECT_EQ(fused.tokens, (std::vector<std::string>{"a", "<unk>", "a"}));
  EXPECT_EQ(fused.offsets, (std::vector<Offsets>{{0, 1}, {1, 3}, {3, 4}}));
  config["model"]["fuse_unk"] = false;
  EXPECT_EQ(tokens_of(*TokenizerImpl::from_json(config), "axya"),
            (std::vector<std::string>{"a", "<unk>", "<unk>", "a"}));
  config["model"]["unk_token"] = nullptr;  // no unk token: unknown characters are dropped
  EXPECT_EQ(tokens_of(*TokenizerImpl::from_json(config), "axya"), (std::vector<std::string>{"a", "a"}));
}

TEST(TokenizerBpe, ByteFallback) {
  json config = tiny_tokenizer({"<unk>", "a", "<0xC3>", "<0xA9>"}, json::array());
  config["model"]["unk_token"] = "<unk>";
  config["model"]["byte_fallback"] = true;
  const auto tokenizer = TokenizerImpl::from_json(config);
  const auto encoding = tokenizer->encode("aé", std::nullopt, false);
  EXPECT_EQ(encoding.tokens, (std::vector<std::string>{"a", "<0xC3>", "<0xA9>"}));
  EXPECT_EQ(encoding.offsets, (std::vector<Offsets>{{0, 1}, {1, 3}, {1, 3}}));
  // Bytes of "ü" (C3 BC) are not all in the vocabulary: unk.
  EXPECT_EQ(tokens_of(*tokenizer, "aü"), (std::vector<std::string>{"a", "<unk>"}));
}

TEST(TokenizerBpe, RejectsWhatItCannotReproduce) {
  json config = tiny_tokenizer({"a", "b"}, json::array());
  config["model"]["dropout"] = 0.0;
  EXPECT_NO_THROW(TokenizerImpl::from_json(config));
  config["model"]["dropout"] = 0.1;
  EXPECT_THROW(TokenizerImpl::from_json(config), TokenizerError);
  EXPECT_THROW(TokenizerImpl::from_json(tiny_tokenizer({"a", "b"}, {"a b"})), TokenizerError);  // "ab" missing
  EXPECT_THROW(TokenizerImpl::from_json(tiny_tokenizer({"a", "b"}, {"a b c"})), TokenizerError);
}

TEST(TokenizerMetaspace, PrependSchemes) {
  json config = tiny_tokenizer({"▁", "h", "i", "<x>"}, json::array());
  config["added_tokens"] = {{{"id", 3},
                             {"content", "<x>"},
                             {"single_word", false},
                             {"lstrip", false},
                             {"rstrip", false},
                             {"normalized", false},
                             {"special", true}}};
  config["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}, {"split", true}};
  auto always = TokenizerImpl::from_json(config);
  const auto words = always->encode("hi hi", std::nullopt, false);
  EXPECT_EQ(words.tokens, (std::vector<std::string>{"▁", "h", "i", "▁", "h", "i"}));
  EXPECT_EQ(words.word_ids, (std::vector<std::optional<uint32_t>>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(tokens_of(*always, "<x>hi"), (std::vector<std::string>{"<x>", "▁", "h", "i"}));

  config["pre_tokenizer"]["prepend_scheme"] = "first";  // only the piece at the start of the input
  auto first = TokenizerImpl::from_json(config);
  EXPECT_EQ(tokens_of(*first, "<x>hi"), (std::vector<std::string>{"<x>", "h", "i"}));
  EXPECT_EQ(tokens_of(*first, "hi<x>hi"), (std::vector<std::string>{"▁", "h", "i", "<x>", "h", "i"}));

  config["pre_tokenizer"]["prepend_scheme"] = "never";
  EXPECT_EQ(tokens_of(*TokenizerImpl::from_json(config), "hi hi"), (std::vector<std::string>{"h", "i", "▁", "h", "i"}));

  config["pre_tokenizer"]["split"] = false;
  const auto unsplit = TokenizerImpl::from_json(config)->encode("hi hi", std::nullopt, false);
  EXPECT_EQ(unsplit.word_ids, (std::vector<std::optional<uint32_t>>{0, 0, 0, 0, 0}));

  config["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"add_prefix_space", false}};
  EXPECT_THROW(TokenizerImpl::from_json(config), TokenizerError);  // as tokenizers: contradicts "always"
}

TEST(TokenizerNormalizer, StripKeepsOffsets) {
  json config = tiny_tokenizer({"h", "i"}, json::array());
  config["normalizer"] = {{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}};
  const auto encoding = TokenizerImpl::from_json(config)->encode("  hi  ", std::nullopt, false);
  EXPECT_EQ(encoding.tokens, (std::vector<std::string>{"h", "i"}));
  EXPECT_EQ(encoding.offsets, (std::vector<Offsets>{{2, 3}, {3, 4}}));
}

TEST(TokenizerDecoder, Stages) {
  json config = tiny_tokenizer({"▁h", "i", "▁▁x", "<0xC3>", "<0xA9>", "a", "<0x41>"}, json::array());
  auto decode = [&](const json& decoder, const std::vector<int64_t>& ids) {
    config["decoder"] = decoder;
    return TokenizerImpl::from_json(config)->decode(ids, false);
  };
  const json metaspace = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "always"}};
  EXPECT_EQ(decode(metaspace, {0, 1, 2}), "hi  x");
  json never = metaspace;
  never["prepend_scheme"] = "never";
  EXPECT_EQ(decode(never, {0, 1, 2}), " hi  x");
  const json strip = {{"type", "Sequence"},
                      {"decoders",
                       {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                        {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 1}}}}};
  EXPECT_EQ(decode(strip, {0, 2}), "h x");
  const json byte_fallback = {{"type", "ByteFallback"}};
  EXPECT_EQ(decode(byte_fallback, {3, 4}), "é");
  EXPECT_EQ(decode(byte_fallback, {3, 5, 4}),
            "\xEF\xBF\xBD"
            "a"
            "\xEF\xBF\xBD");
  EXPECT_EQ(decode(byte_fallback, {6, 3}), "\xEF\xBF\xBD\xEF\xBF\xBD");  // ASCII byte in an invalid run too
  EXPECT_EQ(decode(nullptr, {0, 1}), "▁h i");                            // no decoder: joined with spaces
}

TEST(TokenizerPostProcessor, TemplateWithPairAndShortForm) {
  json config = tiny_tokenizer({"<s>", "</s>", "a", "b"}, json::array());
  config["post_processor"] = {{"type", "TemplateProcessing"},
                              {"single", "<s> $A </s>"},
                              {"pair", "<s> $A </s> $B:1 </s>:1"},
                              {"special_tokens",
                               {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
                                {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}};
  const auto tokenizer = TokenizerImpl::from_json(config);
  const auto single = tokenizer->encode("ab", std::nullopt, true);
  EXPECT_EQ(single.ids, (std::vector<uint32_t>{0, 2, 3, 1}));
  EXPECT_EQ(single.special_tokens_mask, (std::vector<uint32_t>{1, 0, 0, 1}));
  const auto pair = tokenizer->encode("a", std::string("b"), true);
  EXPECT_EQ(pair.ids, (std::vector<uint32_t>{0, 2, 1, 3, 1}));
  EXPECT_EQ(pair.type_ids, (std::vector<uint32_t>{0, 0, 0, 1, 1}));
  EXPECT_EQ(pair.sequence_ids, (std::vector<std::optional<uint32_t>>{std::nullopt, 0, std::nullopt, 1, std::nullopt}));
  const auto without = tokenizer->encode("a", std::string("b"), false);
  EXPECT_EQ(without.ids, (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(without.type_ids, (std::vector<uint32_t>{0, 1}));

  config["post_processor"]["single"] = "<s> $A <missing>";
  EXPECT_THROW(TokenizerImpl::from_json(config), TokenizerError);
}

// Added tokens on the legacy Llama pipeline (Prepend("▁") + Replace(" ", "▁")), as in added_vocabulary.rs.
json stories_with_added_token(const json& token) {
  std::ifstream file(stories_dir() + "/tokenizer.json");
  json config = json::parse(file);
  json added = token;
  added["id"] = 512;
  config["added_tokens"].push_back(added);
  return config;
}

json added_token(const std::string& content, bool lstrip, bool rstrip, bool single_word, bool normalized) {
  return {{"content", content}, {"single_word", single_word}, {"lstrip", lstrip},
          {"rstrip", rstrip},   {"normalized", normalized},   {"special", true}};
}

TEST(TokenizerAddedTokens, LstripKeepsTheSpaceInTheToken) {
  const auto tokenizer =
      TokenizerImpl::from_json(stories_with_added_token(added_token("<mask>", true, false, false, false)));
  const auto encoding = tokenizer->encode("a <mask>b", std::nullopt, false);
  EXPECT_EQ(encoding.tokens, (std::vector<std::string>{"▁a", " <mask>", "▁b"}));  // each piece gets the "▁" prefix
  EXPECT_EQ(encoding.ids, (std::vector<uint32_t>{261, 512, 268}));
  EXPECT_EQ(encoding.offsets, (std::vector<Offsets>{{0, 1}, {1, 8}, {8, 9}}));
  EXPECT_EQ(tokenizer->id_to_token(512), "<mask>");
  EXPECT_TRUE(tokenizer->is_special(512));
  EXPECT_EQ(tokenizer->vocab_size(), 513u);
}

TEST(TokenizerAddedTokens, Rstrip) {
  const auto tokenizer =
      TokenizerImpl::from_json(stories_with_added_token(added_token("<mask>", false, true, false, false)));
  const auto encoding = tokenizer->encode("<mask>  a", std::nullopt, false);
  ASSERT_EQ(encoding.tokens.size(), 2u);
  EXPECT_EQ(encoding.tokens[0], "<mask>  ");
  EXPECT_EQ(encoding.tokens[1], "▁a");
}

TEST(TokenizerAddedTokens, SingleWord) {
  const auto tokenizer =
      TokenizerImpl::from_json(stories_with_added_token(added_token("ab", false, false, true, false)));
  const auto encoding = tokenizer->encode("ab cab ab", std::nullopt, false);
  const auto count = std::count(encoding.ids.begin(), encoding.ids.end(), 512u);
  EXPECT_EQ(count, 2) << "only the standalone \"ab\"s are the added token";
  EXPECT_EQ(encoding.ids.front(), 512u);
  EXPECT_EQ(encoding.ids.back(), 512u);
}

TEST(TokenizerAddedTokens, NormalizedTokenMatchesTheNormalizedText) {
  // The normalizer turns the content "zz" into "▁zz", which is what is matched and what id_to_token returns.
  const auto tokenizer =
      TokenizerImpl::from_json(stories_with_added_token(added_token("zz", false, false, false, true)));
  const auto encoding = tokenizer->encode("a zz", std::nullopt, false);
  EXPECT_EQ(encoding.tokens, (std::vector<std::string>{"▁a", "▁zz"}));
  EXPECT_EQ(encoding.ids, (std::vector<uint32_t>{261, 512}));
  EXPECT_EQ(tokenizer->id_to_token(512), "▁zz");
}

// ---------------------------------------------------------------------------------------------------------------
// tokenizer_config.json: LlamaTokenizerFast rebuilds its template from add_bos_token / add_eos_token.

class TokenizerTempDir : public testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() / ("tfcpp_tokenizer_test_" + std::to_string(random()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path.string();
  }
  std::string stories_json() {
    std::ifstream file(stories_dir() + "/tokenizer.json");
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }
  std::filesystem::path dir_;
};

using TokenizerConfigTest = TokenizerTempDir;

TEST_F(TokenizerConfigTest, LlamaFlagsRebuildTheTemplate) {
  write("tokenizer.json", stories_json());
  write("tokenizer_config.json",
        R"({"tokenizer_class": "LlamaTokenizer", "add_bos_token": false, "add_eos_token": true,
            "bos_token": "<s>", "eos_token": {"content": "</s>", "special": true}})");
  const Tokenizer tokenizer = Tokenizer::from_pretrained(dir_.string());
  EXPECT_EQ(tokenizer.encode("Once upon a time"), (std::vector<int64_t>{403, 407, 261, 378, 2}));
  EXPECT_EQ(tokenizer.encode("Once upon a time", false), (std::vector<int64_t>{403, 407, 261, 378}));
}

TEST_F(TokenizerConfigTest, OtherClassesKeepTheFileTemplate) {
  write("tokenizer.json", stories_json());
  write("tokenizer_config.json", R"({"tokenizer_class": "PreTrainedTokenizerFast", "add_eos_token": true})");
  EXPECT_EQ(Tokenizer::from_pretrained(dir_.string()).encode("Once upon a time"),
            (std::vector<int64_t>{1, 403, 407, 261, 378}));
}

TEST_F(TokenizerConfigTest, NoConfigFile) {
  write("tokenizer.json", stories_json());
  EXPECT_EQ(Tokenizer::from_pretrained(dir_.string()).encode("Once"), (std::vector<int64_t>{1, 403}));
}

// ---------------------------------------------------------------------------------------------------------------
// Errors name the file and the problem.

using TokenizerErrorTest = TokenizerTempDir;

void expect_tokenizer_error(const std::string& path, const std::vector<std::string>& fragments) {
  try {
    Tokenizer::from_file(path);
    ADD_FAILURE() << "no TokenizerError for " << path;
  } catch (const TokenizerError& e) {
    const std::string message = e.what();
    for (const auto& fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos) << "message: " << message << "\nmissing: " << fragment;
    }
  }
}

TEST_F(TokenizerErrorTest, MissingFile) {
  const std::string path = (dir_ / "nope.json").string();
  expect_tokenizer_error(path, {path});
  try {
    Tokenizer::from_pretrained(dir_.string());
    ADD_FAILURE() << "no TokenizerError for a folder without tokenizer.json";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
}

TEST_F(TokenizerErrorTest, InvalidJson) {
  const std::string path = write("tokenizer.json", "{\"model\": {\"type\": \"BPE\",");
  expect_tokenizer_error(path, {path, "invalid JSON"});
}

TEST_F(TokenizerErrorTest, UnknownComponentTypes) {
  const json base = json::parse(stories_json());
  const std::vector<std::pair<std::string, json>> broken = {
      {"model", {{"type", "MagicModel"}, {"vocab", json::object()}}},
      {"normalizer", {{"type", "NFKX"}}},
      {"pre_tokenizer", {{"type", "ByteLevels"}, {"add_prefix_space", false}}},
      {"post_processor", {{"type", "BertPostProcessing"}}},
      {"decoder", {{"type", "WordPieces"}}},
  };
  for (const auto& [key, component] : broken) {
    json config = base;
    config[key] = component;
    const std::string path = write(key + ".json", config.dump());
    expect_tokenizer_error(path, {path, key, component.at("type").get<std::string>()});
  }
}

TEST_F(TokenizerErrorTest, MalformedComponents) {
  json config = json::parse(stories_json());
  config["normalizer"]["normalizers"][1]["pattern"] = {{"Regex", "(unclosed"}};
  expect_tokenizer_error(write("regex.json", config.dump()), {"regex.json", "Replace", "invalid regex", "(unclosed"});
  config = json::parse(stories_json());
  config["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "[a-"}}}, {"behavior", "Isolated"}};
  expect_tokenizer_error(write("split.json", config.dump()), {"split.json", "Split", "invalid regex"});
  config = json::parse(stories_json());
  config["model"]["vocab"] = "not a vocabulary";
  expect_tokenizer_error(write("vocab.json", config.dump()), {"vocab.json"});
  config = json::parse(stories_json());
  config["model"].erase("vocab");
  expect_tokenizer_error(write("no_vocab.json", config.dump()), {"no_vocab.json", "vocab"});
  for (const char* type : {"WordPiece", "WordLevel", "Unigram"}) {
    config = json::parse(stories_json());
    config["model"] = {{"type", type}};
    expect_tokenizer_error(write(std::string(type) + ".json", config.dump()), {type, "vocab"});
  }
  config = json::parse(stories_json());
  config["post_processor"] = {{"type", "BertProcessing"}, {"cls", {"[CLS]", 1}}};
  expect_tokenizer_error(write("bert.json", config.dump()), {"bert.json", "BertProcessing", "sep"});
  config = json::parse(stories_json());
  config["truncation"] = {{"max_length", 8}, {"strategy", "Sideways"}};
  expect_tokenizer_error(write("truncation.json", config.dump()), {"truncation", "Sideways"});
  config = json::parse(stories_json());
  config["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "AAAA"}};
  expect_tokenizer_error(write("charsmap.json", config.dump()), {"charsmap.json", "Precompiled"});
}

TEST(TokenizerInput, RejectsInvalidUtf8) {
  const Tokenizer tokenizer = Tokenizer::from_pretrained(stories_dir());
  EXPECT_THROW(tokenizer.encode("caf\xE9"), TokenizerError);        // Latin-1
  EXPECT_THROW(tokenizer.encode("\xE4\xB8 half"), TokenizerError);  // truncated sequence
}

// ---------------------------------------------------------------------------------------------------------------
// TextStreamer: the pieces add up to the decoded text, and each piece is whole characters.

std::vector<std::string> stream(const Tokenizer& tokenizer, const std::vector<int64_t>& ids, bool skip_special) {
  TextStreamer streamer(tokenizer, skip_special);
  std::vector<std::string> pieces;
  for (int64_t id : ids) pieces.push_back(streamer.put(id));
  pieces.push_back(streamer.end());
  return pieces;
}

std::string join(const std::vector<std::string>& pieces) {
  std::string text;
  for (const auto& piece : pieces) text += piece;
  return text;
}

TEST(TokenizerTextStreamer, NonAsciiPieceByPiece) {
  const Tokenizer tokenizer = Tokenizer::from_pretrained(stories_dir());
  const std::string text = "héllo 世界 🙂 Once upon a time 🙂";
  const auto ids = tokenizer.encode(text);
  const auto pieces = stream(tokenizer, ids, true);
  EXPECT_EQ(join(pieces), tokenizer.decode(ids, true));
  EXPECT_EQ(join(pieces), text);
  size_t non_empty = 0;
  for (const auto& piece : pieces) {
    EXPECT_TRUE(transformers::tokenizers::is_valid_utf8(piece)) << "half a character in " << show(piece);
    non_empty += piece.empty() ? 0 : 1;
  }
  EXPECT_GT(non_empty, 5u) << "the text should arrive in several pieces";
  // Nothing of "世" before its last byte token: <0xE4> <0xB8> print nothing.
  const auto first_byte = std::find(ids.begin(), ids.end(), 231);
  ASSERT_NE(first_byte, ids.end());
  const size_t at = static_cast<size_t>(first_byte - ids.begin());
  EXPECT_EQ(pieces[at], "");
  EXPECT_EQ(pieces[at + 1], "");
}

TEST(TokenizerTextStreamer, RandomIdsNeverRepeatText) {
  const Tokenizer tokenizer = Tokenizer::from_pretrained(fixture_dir("llama-spm-bpe"));
  std::mt19937 random(1234);
  std::uniform_int_distribution<int64_t> any_id(0, 2001);
  std::uniform_int_distribution<int64_t> byte_id(3, 258);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int64_t> ids(1 + trial % 25);
    // Odd trials are mostly byte tokens: characters cut in half and invalid runs.
    const bool mostly_bytes = trial % 2 == 1;
    for (auto& id : ids) id = mostly_bytes && random() % 3 != 0 ? byte_id(random) : any_id(random);
    for (bool skip : {true, false}) {
      const auto pieces = stream(tokenizer, ids, skip);
      EXPECT_EQ(join(pieces), tokenizer.decode(ids, skip)) << "trial " << trial;
      for (const auto& piece : pieces) {
        EXPECT_TRUE(transformers::tokenizers::is_valid_utf8(piece)) << "trial " << trial << ": " << show(piece);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// SentencePiece .model files, read without libsentencepiece: spm_cases.jsonl of the real SentencePiece library.

struct SpmCase {
  std::string folder;
  json data;
};

void PrintTo(const SpmCase& c, std::ostream* out) { *out << c.folder << " " << c.data.at("id").get<std::string>(); }

std::string spm_model_path(const std::string& folder) {
  for (const auto& entry : std::filesystem::directory_iterator(fixture_dir(folder))) {
    if (entry.path().extension() == ".model") return entry.path().string();
  }
  return "";
}

std::vector<SpmCase> all_spm_cases() {
  std::vector<SpmCase> cases;
  for (const char* folder : {"llama-spm-bpe", "llama-metaspace-bpe", "t5-unigram", "camembert-unigram"}) {
    std::ifstream file(fixture_dir(folder) + "/spm_cases.jsonl");
    for (std::string line; std::getline(file, line);) {
      if (!line.empty()) cases.push_back({folder, json::parse(line)});
    }
  }
  return cases;
}

const transformers::tokenizers::SentencePieceProcessor& spm_processor(const std::string& folder) {
  static std::map<std::string, std::unique_ptr<transformers::tokenizers::SentencePieceProcessor>> cache;
  auto& processor = cache[folder];
  if (!processor) {
    processor = std::make_unique<transformers::tokenizers::SentencePieceProcessor>(
        transformers::tokenizers::read_sentencepiece_model(spm_model_path(folder)));
  }
  return *processor;
}

class SentencePieceFixtureTest : public testing::TestWithParam<SpmCase> {};

TEST_P(SentencePieceFixtureTest, MatchesSentencePiece) {
  const SpmCase& c = GetParam();
  const auto& processor = spm_processor(c.folder);
  const json& expected = c.data.at("expected");
  const std::string context = c.folder + " " + c.data.at("id").get<std::string>();
  if (c.data.at("kind") == "spm_vocab") {
    const auto ids = c.data.at("ids").get<std::vector<int>>();
    ASSERT_EQ(processor.model().pieces.size(), ids.size()) << context;
    for (size_t i = 0; i < ids.size(); ++i) {
      const auto& piece = processor.model().pieces[static_cast<size_t>(ids[i])];
      EXPECT_EQ(piece.piece, expected.at("pieces")[i].get<std::string>()) << context << " id " << ids[i];
      EXPECT_FLOAT_EQ(piece.score, expected.at("scores")[i].get<float>()) << context << " id " << ids[i];
      EXPECT_EQ(processor.decode({ids[i]}), expected.at("decoded")[i].get<std::string>()) << context << " id " << ids[i];
    }
    return;
  }
  const auto pieces = processor.encode(c.data.at("input").get<std::string>());
  std::vector<int> ids;
  std::vector<std::string> texts;
  for (const auto& [piece, id] : pieces) {
    ids.push_back(id);
    texts.push_back(piece);
  }
  const auto expected_ids = expected.at("ids").get<std::vector<int>>();
  EXPECT_EQ(ids, expected_ids) << context;
  EXPECT_EQ(texts, expected.at("pieces").get<std::vector<std::string>>()) << context;
  EXPECT_EQ(processor.decode(expected_ids), expected.at("decoded").get<std::string>()) << context;
}

INSTANTIATE_TEST_SUITE_P(AllModels, SentencePieceFixtureTest, testing::ValuesIn(all_spm_cases()),
                         [](const testing::TestParamInfo<SpmCase>& info) {
                           std::string name = info.param.folder + "_" + info.param.data.at("id").get<std::string>();
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

TEST(TokenizerSentencePiece, AllCasesAreLoaded) { EXPECT_EQ(all_spm_cases().size(), 4u * 137u); }

TEST_F(TokenizerConfigTest, AutoTokenizerFallsBackToTheModelFile) {
  // llama-spm-bpe's tokenizer.json was converted from its tokenizer.model: same ids, with the Llama template.
  std::filesystem::copy_file(fixture_dir("llama-spm-bpe") + "/tokenizer.model", dir_ / "tokenizer.model");
  std::filesystem::copy_file(fixture_dir("llama-spm-bpe") + "/tokenizer_config.json", dir_ / "tokenizer_config.json");
  const Tokenizer from_model = transformers::AutoTokenizer::from_pretrained(dir_.string());
  const Tokenizer& from_json = fixture_public_tokenizer("llama-spm-bpe");
  for (const char* text : {"Hello world", "Once upon a time, there was a café.", "3 cats  and 42 dogs"}) {
    EXPECT_EQ(from_model.encode(text), from_json.encode(text)) << text;
    EXPECT_EQ(from_model.decode(from_model.encode(text), true), from_json.decode(from_json.encode(text), true)) << text;
  }
  EXPECT_EQ(from_model.vocab_size(), 2000);
  EXPECT_TRUE(from_model.is_special(from_model.token_to_id("</s>")));
  EXPECT_EQ(from_model.special_tokens().eos_token, std::optional<std::string>("</s>"));
}

TEST_F(TokenizerErrorTest, NotASentencePieceModel) {
  expect_tokenizer_error(write("broken.model", std::string("\x0a\xff\xff\xff\x0f", 5)), {"broken.model"});
  expect_tokenizer_error(write("empty.model", ""), {"empty.model", "no pieces"});
}

// ---------------------------------------------------------------------------------------------------------------
// The public API.

TEST(TokenizerApi, EncodePlusBatchAndConversions) {
  const Tokenizer& tokenizer = fixture_public_tokenizer("bert-uncased-wordpiece");
  const transformers::Encoding single = tokenizer.encode_plus("Hello world!");
  EXPECT_EQ(single.tokens.front(), "[CLS]");
  EXPECT_EQ(single.tokens.back(), "[SEP]");
  EXPECT_EQ(single.ids, tokenizer.encode("Hello world!"));
  EXPECT_EQ(single.word_ids.front(), std::nullopt);
  const transformers::Encoding pair = tokenizer.encode_plus("Hello", "world");
  EXPECT_EQ(std::count(pair.type_ids.begin(), pair.type_ids.end(), 1), 2);  // "world" [SEP]

  transformers::EncodeOptions options;
  options.padding = transformers::PaddingOptions{};
  const auto batch = tokenizer.encode_batch({"a", "hello there, world"}, options);
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].size(), batch[1].size());
  EXPECT_EQ(batch[0].tokens.back(), "[PAD]");
  EXPECT_EQ(batch[0].attention_mask.back(), 0);
  EXPECT_EQ(batch[0].ids.back(), tokenizer.special_token_id("pad_token"));
  options.padding->pad_to_multiple_of = 8;
  options.padding->direction = transformers::Side::Left;
  const auto left = tokenizer.encode_batch_pairs({{"a", "b"}}, options);
  EXPECT_EQ(left[0].size() % 8, 0u);
  EXPECT_EQ(left[0].tokens.front(), "[PAD]");

  transformers::EncodeOptions truncate;
  truncate.truncation = transformers::TruncationOptions{6, 1};
  const auto cut = tokenizer.encode_plus("one two three four five six seven", truncate);
  EXPECT_EQ(cut.size(), 6u);
  ASSERT_FALSE(cut.overflowing.empty());
  EXPECT_EQ(cut.overflowing[0].tokens.front(), "[CLS]");
  EXPECT_EQ(cut.overflowing[0].tokens[1], cut.tokens[4]);  // stride 1: one token repeated

  ASSERT_GE(tokenizer.token_to_id("world"), 0);
  EXPECT_EQ(tokenizer.convert_tokens_to_ids({"[CLS]", "world", "no-such-token"}),
            (std::vector<int64_t>{7, tokenizer.token_to_id("world"), 6}));
  EXPECT_EQ(tokenizer.convert_ids_to_tokens({7, 9}), (std::vector<std::string>{"[CLS]", "[MASK]"}));
  EXPECT_TRUE(tokenizer.convert_ids_to_tokens({7, 8}, true).empty());
  EXPECT_EQ(tokenizer.batch_decode({single.ids, pair.ids}, true),
            (std::vector<std::string>{"hello world!", "hello world"}));
  EXPECT_EQ(tokenizer.special_tokens().mask_token, std::optional<std::string>("[MASK]"));
  EXPECT_EQ(tokenizer.special_token_id("cls_token"), 7);
  EXPECT_EQ(tokenizer.special_token_id("bos_token"), -1);
  EXPECT_THROW(tokenizer.special_token_id("nope_token"), transformers::ValueError);

  transformers::EncodeOptions bytes;
  bytes.offsets_in_bytes = true;
  EXPECT_EQ(tokenizer.encode_plus("é a", bytes).offsets[2], (std::pair<size_t, size_t>{3, 4}));
  EXPECT_EQ(tokenizer.encode_plus("é a").offsets[2], (std::pair<size_t, size_t>{2, 3}));
}

TEST(TokenizerApi, FileTruncationAndPaddingCanBeTurnedOff) {
  const Tokenizer& tokenizer = fixture_public_tokenizer("bert-cased-trunc-pad");
  const std::string text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                           "sixteen seventeen eighteen nineteen twenty twenty-one";
  EXPECT_EQ(tokenizer.encode_plus(text).size(), 24u);
  transformers::EncodeOptions off;
  off.no_truncation = true;
  off.no_padding = true;
  const auto full = tokenizer.encode_plus(text, off);
  EXPECT_GT(full.size(), 24u);
  EXPECT_TRUE(full.overflowing.empty());
  EXPECT_EQ(tokenizer.encode_plus("a", off).size(), 3u);
}

// ---------------------------------------------------------------------------------------------------------------
// Pipeline components the fixtures do not use, checked against the expectations of the Rust crate's own unit tests
// (tokenizers/src/pre_tokenizers/*.rs, normalizers/*.rs, decoders/*.rs).

using Pieces = std::vector<std::pair<std::string, Offsets>>;

Pieces pre_tokenize(const json& config, const std::string& text) {
  auto pre_tokenizer = transformers::tokenizers::build_pre_tokenizer(config);
  transformers::tokenizers::PreTokenizedString pieces(text);
  pre_tokenizer->pre_tokenize(pieces);
  Pieces result;
  for (const auto& split : pieces.splits()) {
    result.push_back({split.normalized.get(), split.normalized.offsets_original()});
  }
  return result;
}

TEST(TokenizerPreTokenizers, SplitBehaviours) {
  const json pattern = {{"Regex", "\\w+|[^\\w\\s]+"}};
  const std::string text = "How are you doing?";
  auto split = [&](const char* behavior) {
    return pre_tokenize({{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", true}}, text);
  };
  EXPECT_EQ(split("Removed"), (Pieces{{"How", {0, 3}}, {"are", {4, 7}}, {"you", {8, 11}}, {"doing", {12, 17}},
                                      {"?", {17, 18}}}));
  EXPECT_EQ(split("Isolated"), (Pieces{{"How", {0, 3}}, {" ", {3, 4}}, {"are", {4, 7}}, {" ", {7, 8}}, {"you", {8, 11}},
                                       {" ", {11, 12}}, {"doing", {12, 17}}, {"?", {17, 18}}}));
  EXPECT_EQ(split("MergedWithPrevious"),
            (Pieces{{"How ", {0, 4}}, {"are ", {4, 8}}, {"you ", {8, 12}}, {"doing", {12, 17}}, {"?", {17, 18}}}));
  EXPECT_EQ(split("MergedWithNext"),
            (Pieces{{"How", {0, 3}}, {" are", {3, 7}}, {" you", {7, 11}}, {" doing", {11, 17}}, {"?", {17, 18}}}));
  EXPECT_EQ(split("Contiguous"), (Pieces{{"How", {0, 3}}, {" ", {3, 4}}, {"are", {4, 7}}, {" ", {7, 8}},
                                         {"you", {8, 11}}, {" ", {11, 12}}, {"doing?", {12, 18}}}));
  // A String pattern is literal.
  EXPECT_EQ(pre_tokenize({{"type", "Split"}, {"pattern", {{"String", "."}}}, {"behavior", "Removed"}}, "a.b"),
            (Pieces{{"a", {0, 1}}, {"b", {2, 3}}}));
}

TEST(TokenizerPreTokenizers, WhitespaceDigitsPunctuationScripts) {
  EXPECT_EQ(pre_tokenize({{"type", "Whitespace"}}, "Hey man!"), (Pieces{{"Hey", {0, 3}}, {"man", {4, 7}}, {"!", {7, 8}}}));
  EXPECT_EQ(pre_tokenize({{"type", "WhitespaceSplit"}}, "Hey, man, Good?"),
            (Pieces{{"Hey,", {0, 4}}, {"man,", {5, 9}}, {"Good?", {10, 15}}}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", false}}, "Hey 123 friend!"),
            (Pieces{{"Hey ", {0, 4}}, {"123", {4, 7}}, {" friend!", {7, 15}}}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "Hey 123 friend!"),
            (Pieces{{"Hey ", {0, 4}}, {"1", {4, 5}}, {"2", {5, 6}}, {"3", {6, 7}}, {" friend!", {7, 15}}}));
  EXPECT_EQ(pre_tokenize({{"type", "Punctuation"}}, "Hey friend!     How are you?!?"),
            (Pieces{{"Hey friend", {0, 10}}, {"!", {10, 11}}, {"     How are you", {11, 27}}, {"?", {27, 28}},
                    {"!", {28, 29}}, {"?", {29, 30}}}));
  EXPECT_EQ(pre_tokenize({{"type", "CharDelimiterSplit"}, {"delimiter", "x"}}, "HelloxThere"),
            (Pieces{{"Hello", {0, 5}}, {"There", {6, 11}}}));
  // unicode_scripts: Hiragana, Katakana and Han are one script; "。" is Common.
  EXPECT_EQ(pre_tokenize({{"type", "UnicodeScripts"}}, "どこで生れ。Yes"),
            (Pieces{{"どこで生れ", {0, 15}}, {"。", {15, 18}}, {"Yes", {18, 21}}}));
  // ByteLevel with add_prefix_space: GPT-2 regex, bytes as printable characters.
  EXPECT_EQ(pre_tokenize({{"type", "ByteLevel"}, {"add_prefix_space", true}}, "Hello my friend, how is your day going?"),
            (Pieces{{"ĠHello", {0, 5}},   {"Ġmy", {5, 8}},  {"Ġfriend", {8, 15}}, {",", {15, 16}},
                    {"Ġhow", {16, 20}},   {"Ġis", {20, 23}}, {"Ġyour", {23, 28}}, {"Ġday", {28, 32}},
                    {"Ġgoing", {32, 38}}, {"?", {38, 39}}}));
}

std::string normalize(const json& config, const std::string& text) {
  auto normalizer = transformers::tokenizers::build_normalizer(config);
  transformers::tokenizers::NormalizedString normalized(text);
  normalizer->normalize(normalized);
  return normalized.get();
}

TEST(TokenizerNormalizer, UnicodeForms) {
  EXPECT_EQ(normalize({{"type", "NFD"}}, "é"), "e\u0301");
  EXPECT_EQ(normalize({{"type", "NFC"}}, "e\u0301"), "é");
  EXPECT_EQ(normalize({{"type", "NFKC"}}, "ﬁ①"), "fi1");
  EXPECT_EQ(normalize({{"type", "NFKD"}}, "Å"), "A\u030A");
  EXPECT_EQ(normalize({{"type", "Lowercase"}}, "ÀB İ Σ"), "àb i\u0307 σ");
  EXPECT_EQ(normalize({{"type", "Sequence"}, {"normalizers", {{{"type", "NFD"}}, {{"type", "StripAccents"}}}}},
                      "Café naïve"),
            "Cafe naive");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}}, "a \t\n b"), "a b");
  EXPECT_EQ(normalize({{"type", "BertNormalizer"}, {"lowercase", true}}, "Héllo\t世界\x01"), "hello  世  界 ");
}

TEST(TokenizerNormalizer, OffsetsFollowNormalization) {
  auto normalizer = transformers::tokenizers::build_normalizer({{"type", "NFKC"}});
  transformers::tokenizers::NormalizedString text("aﬁb");
  normalizer->normalize(text);
  ASSERT_EQ(text.get(), "afib");
  EXPECT_EQ(text.convert_offsets({1, 3}), (std::optional<Offsets>{{1, 4}}));  // "fi" <- the 3 bytes of "ﬁ"
  EXPECT_EQ(text.convert_offsets({3, 4}), (std::optional<Offsets>{{4, 5}}));
}

std::string decode_with(const json& config, const std::vector<std::string>& tokens) {
  auto decoder = transformers::tokenizers::build_decoder(config);
  std::string text;
  for (const auto& piece : decoder->decode_chain(tokens)) text += piece;
  return text;
}

TEST(TokenizerDecoder, MoreDecoders) {
  EXPECT_EQ(decode_with({{"type", "BPEDecoder"}, {"suffix", "</w>"}}, {"My</w>", "na", "me</w>", "is</w>", "Jo", "hn</w>"}),
            "My name is John");
  EXPECT_EQ(decode_with({{"type", "CTC"}, {"pad_token", "<pad>"}, {"word_delimiter_token", "|"}, {"cleanup", true}},
                        {"<pad>", "h", "h", "e", "l", "l", "<pad>", "l", "o", "|", "w", "o", "r", "l", "d"}),
            "hello world");
  EXPECT_EQ(decode_with({{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", false}},
                        {"##uelo", "Ara", "##új", "##o", "No", "##guera"}),
            "##uelo Araújo Noguera");
  EXPECT_EQ(decode_with({{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}}, {"Hello", ",", "world", "!"}),
            "Hello, world!");
  EXPECT_EQ(decode_with({{"type", "ByteLevel"}}, {"Hello", "Ġmy", "Ġfriend", "Ġ\xC3\xA2\xC4\xA2"}), "Hello my friend \xEF\xBF\xBD");
}

TEST(TokenizerModels, WordLevelAndUnigramByteFallback) {
  json config = json::parse(R"({"version": "1.0", "added_tokens": [], "normalizer": null,
      "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
      "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "hello": 1, "world": 2}, "unk_token": "<unk>"}})");
  const auto word_level = TokenizerImpl::from_json(config);
  EXPECT_EQ(word_level->encode("hello there world", std::nullopt, false).ids, (std::vector<uint32_t>{1, 0, 2}));
  EXPECT_EQ(word_level->decode({1, 2}, false), "hello world");

  config["pre_tokenizer"] = nullptr;
  config["model"] = json::parse(R"({"type": "Unigram", "unk_id": 0, "byte_fallback": true,
      "vocab": [["<unk>", 0.0], ["a", -1.0], ["b", -2.0], ["ab", -1.5], ["<0xC3>", -3.0], ["<0xA9>", -3.0]]})");
  const auto unigram = TokenizerImpl::from_json(config);
  const auto encoding = unigram->encode("abé", std::nullopt, false);
  EXPECT_EQ(encoding.tokens, (std::vector<std::string>{"ab", "<0xC3>", "<0xA9>"}));
  EXPECT_EQ(unigram->encode("abz", std::nullopt, false).ids, (std::vector<uint32_t>{3, 0}));
}

// ---------------------------------------------------------------------------------------------------------------
// tfcpp tokenize: the batch mode reproduces cases.jsonl.

TEST(TokenizerCli, JsonlBatchModeMatchesTheFixtures) {
  for (const char* folder : {"roberta-bpe", "bert-cased-trunc-pad", "t5-unigram"}) {
    const std::string dir = fixture_dir(folder);
    auto [rc, output] =
        tfcpp_test::run_command(tfcpp_test::tfcpp_bin() + " tokenize --model " + dir + " --jsonl " + dir + "/cases.jsonl");
    ASSERT_EQ(rc, 0) << output;
    std::istringstream lines(output);
    const auto cases = load_cases(folder);
    size_t n = 0;
    for (std::string line; std::getline(lines, line); ++n) {
      ASSERT_LT(n, cases.size());
      const json got = json::parse(line);
      const json& data = cases[n].data;
      ASSERT_EQ(got.at("id"), data.at("id"));
      for (const auto& [field, value] : data.at("expected").items()) {
        expect_field(got.at("actual"), data, field, std::string(folder) + " " + data.at("id").get<std::string>());
      }
    }
    EXPECT_EQ(n, cases.size()) << folder;
  }
}

TEST(TokenizerCli, TextAndErrors) {
  const std::string dir = fixture_dir("bert-uncased-wordpiece");
  auto [rc, output] = tfcpp_test::run_command(tfcpp_test::tfcpp_bin() + " tokenize --model " + dir +
                                              " --text 'Hello world' --pair 'again' --json");
  ASSERT_EQ(rc, 0) << output;
  const json got = json::parse(output);
  const transformers::Encoding expected = fixture_public_tokenizer("bert-uncased-wordpiece").encode_plus("Hello world", "again");
  EXPECT_EQ(got.at("tokens"), json(expected.tokens));
  EXPECT_EQ(got.at("type_ids"), json(expected.type_ids));
  EXPECT_EQ(got.at("tokens").front(), "[CLS]");
  EXPECT_EQ(got.at("type_ids").back(), 1);
  auto [rc2, plain] =
      tfcpp_test::run_command(tfcpp_test::tfcpp_bin() + " tokenize --model " + dir + " --text 'Hello' --no-special-tokens");
  ASSERT_EQ(rc2, 0) << plain;
  const auto tokens = fixture_public_tokenizer("bert-uncased-wordpiece").tokenize("Hello");
  EXPECT_NE(plain.find("tokens:  " + json(tokens).dump()), std::string::npos) << plain;
  auto [rc3, missing] = tfcpp_test::run_command(tfcpp_test::tfcpp_bin() + " tokenize --model /nonexistent --text x 2>&1");
  EXPECT_EQ(rc3, 1) << missing;
  EXPECT_NE(missing.find("/nonexistent"), std::string::npos) << missing;
}

// ---------------------------------------------------------------------------------------------------------------
// apply_chat_template: tokenizer_config.json's chat_template with the special tokens.

TEST_F(TokenizerConfigTest, ApplyChatTemplate) {
  write("tokenizer.json", stories_json());
  json config = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"tokenizer_class", "LlamaTokenizer"}};
  config["chat_template"] =
      "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"
      "{% if add_generation_prompt %}[assistant] {% endif %}";
  write("tokenizer_config.json", config.dump());
  const Tokenizer tokenizer = Tokenizer::from_pretrained(dir_.string());
  const json messages = json::array({{{"role", "user"}, {"content", "Once upon a time"}}});
  EXPECT_EQ(tokenizer.apply_chat_template(messages, true), "<s>[user] Once upon a time</s>[assistant] ");
  EXPECT_EQ(tokenizer.apply_chat_template(messages, false), "<s>[user] Once upon a time</s>");
  const auto ids = tokenizer.apply_chat_template_ids(messages, false);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);

  config["chat_template"] = json::array({{{"name", "default"}, {"template", "D{{ messages|length }}"}},
                                         {{"name", "tool_use"}, {"template", "T"}}});
  write("tokenizer_config.json", config.dump());
  const Tokenizer named = Tokenizer::from_pretrained(dir_.string());
  EXPECT_EQ(named.apply_chat_template(messages), "D1");
  EXPECT_EQ(named.apply_chat_template(messages, false, "tool_use"), "T");
  EXPECT_THROW(named.apply_chat_template(messages, false, "missing"), transformers::ValueError);
  write("tokenizer_config.json", "{}");
  EXPECT_THROW(Tokenizer::from_pretrained(dir_.string()).apply_chat_template(messages), transformers::ValueError);
}

}  // namespace
