// tfcpp tokenize: text -> ids / tokens / offsets with a model folder's tokenizer (tokenizer.json or a SentencePiece
// .model), and a batch mode over lines in the format of shared/fixtures/tokenizers/*/cases.jsonl.
#include "cli/commands.h"

#include "transformers/errors.h"
#include "transformers/tokenizer.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>

namespace tfcpp {

using namespace transformers;
using json = nlohmann::json;

namespace {

struct TokenizeOptions {
  std::string model, text, pair, jsonl;
  bool has_pair = false;
  bool no_special_tokens = false;
  bool as_json = false;
};

json offsets_json(const std::vector<std::pair<size_t, size_t>>& offsets) {
  json out = json::array();
  for (const auto& [start, end] : offsets) out.push_back({start, end});
  return out;
}

json nullable_json(const std::vector<std::optional<int64_t>>& values) {
  json out = json::array();
  for (const auto& v : values) out.push_back(v ? json(*v) : json());
  return out;
}

// The fields of cases.jsonl's "expected" for an encode case.
json encoding_json(const Tokenizer& tokenizer, const std::string& text, const std::optional<std::string>& pair,
                   bool add_special_tokens) {
  EncodeOptions options;
  options.add_special_tokens = add_special_tokens;
  const Encoding chars = pair ? tokenizer.encode_plus(text, *pair, options) : tokenizer.encode_plus(text, options);
  options.offsets_in_bytes = true;
  const Encoding bytes = pair ? tokenizer.encode_plus(text, *pair, options) : tokenizer.encode_plus(text, options);
  json actual = {{"ids", chars.ids},
                 {"tokens", chars.tokens},
                 {"offsets", offsets_json(chars.offsets)},
                 {"offsets_utf8", offsets_json(bytes.offsets)},
                 {"attention_mask", chars.attention_mask},
                 {"type_ids", chars.type_ids},
                 {"special_tokens_mask", chars.special_tokens_mask},
                 {"word_ids", nullable_json(chars.word_ids)},
                 {"sequence_ids", nullable_json(chars.sequence_ids)},
                 {"decoded", tokenizer.decode(chars.ids, false)},
                 {"decoded_skip_special", tokenizer.decode(chars.ids, true)}};
  if (!chars.overflowing.empty()) {
    json overflowing = json::array();
    for (const auto& o : chars.overflowing) {
      overflowing.push_back({{"ids", o.ids}, {"tokens", o.tokens}, {"offsets", offsets_json(o.offsets)}});
    }
    actual["overflowing"] = overflowing;
  }
  return actual;
}

json run_case(const Tokenizer& tokenizer, const json& item, const std::string& where) {
  const std::string kind = item.value("kind", "encode");
  if (kind == "encode" || kind == "encode_pair") {
    if (!item.contains("input") || !item.at("input").is_string()) throw ValueError(where + ": no \"input\" string");
    std::optional<std::string> pair;
    if (kind == "encode_pair") {
      if (!item.contains("input_pair")) throw ValueError(where + ": encode_pair without \"input_pair\"");
      pair = item.at("input_pair").get<std::string>();
    }
    const bool add_special_tokens = item.value("options", json::object()).value("add_special_tokens", true);
    return encoding_json(tokenizer, item.at("input").get<std::string>(), pair, add_special_tokens);
  }
  if (kind == "decode" || kind == "decode_each") {
    if (!item.contains("ids") || !item.at("ids").is_array()) throw ValueError(where + ": no \"ids\" list");
    const auto ids = item.at("ids").get<std::vector<int64_t>>();
    if (kind == "decode") {
      return {{"decoded", tokenizer.decode(ids, false)}, {"decoded_skip_special", tokenizer.decode(ids, true)}};
    }
    json tokens = json::array(), decoded = json::array(), skipped = json::array();
    for (int64_t id : ids) {
      tokens.push_back(tokenizer.id_to_token(id));
      decoded.push_back(tokenizer.decode({id}, false));
      skipped.push_back(tokenizer.decode({id}, true));
    }
    return {{"tokens", tokens}, {"decoded", decoded}, {"decoded_skip_special", skipped}};
  }
  throw ValueError(where + ": unknown kind '" + kind + "' (encode, encode_pair, decode, decode_each)");
}

int cmd_tokenize(const TokenizeOptions& o) {
  const Tokenizer tokenizer = Tokenizer::from_pretrained(o.model);
  if (!o.jsonl.empty()) {
    std::ifstream file(o.jsonl);
    if (!file) throw ValueError(o.jsonl + ": cannot open the file");
    size_t line_number = 0;
    for (std::string line; std::getline(file, line);) {
      ++line_number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = o.jsonl + ":" + std::to_string(line_number);
      json item;
      try {
        item = json::parse(line);
      } catch (const json::exception& e) {
        throw ValueError(where + ": invalid JSON: " + e.what());
      }
      json out = {{"id", item.value("id", json())}, {"actual", run_case(tokenizer, item, where)}};
      std::cout << out.dump() << "\n";
    }
    return 0;
  }
  const std::optional<std::string> pair = o.has_pair ? std::optional<std::string>(o.pair) : std::nullopt;
  const json actual = encoding_json(tokenizer, o.text, pair, !o.no_special_tokens);
  if (o.as_json) {
    std::cout << actual.dump() << "\n";
  } else {
    std::cout << "ids:     " << actual["ids"].dump() << "\n"
              << "tokens:  " << actual["tokens"].dump() << "\n"
              << "offsets: " << actual["offsets"].dump() << "\n";
  }
  return 0;
}

}  // namespace

TFCPP_CLI_COMMAND("tokenize", "Text to ids/tokens/offsets (tokenizer.json or SentencePiece .model); --jsonl batch mode",
                  [](CLI::App* cmd) -> std::function<int()> {
                    auto o = std::make_shared<TokenizeOptions>();
                    cmd->add_option("--model", o->model, "Model folder with tokenizer.json or a .model")->required();
                    auto* text = cmd->add_option("--text", o->text, "Text to encode");
                    auto* pair = cmd->add_option("--pair", o->pair, "Second sequence of a pair");
                    auto* jsonl = cmd->add_option("--jsonl", o->jsonl,
                                                  "Lines {\"id\", \"kind\": encode|encode_pair|decode|decode_each, "
                                                  "\"input\", \"input_pair\", \"ids\", \"options\"}; prints "
                                                  "{\"id\", \"actual\"} per line");
                    cmd->add_flag("--no-special-tokens", o->no_special_tokens, "Do not add the template's tokens");
                    cmd->add_flag("--json", o->as_json, "Print every field as one JSON object");
                    text->excludes(jsonl);
                    pair->needs(text);
                    return [o, text, jsonl, pair, cmd] {
                      if (text->count() == 0 && jsonl->count() == 0) {
                        std::cerr << "tokenize: give --text or --jsonl\n" << cmd->help();
                        return 2;
                      }
                      o->has_pair = pair->count() > 0;
                      return cmd_tokenize(*o);
                    };
                  });

}  // namespace tfcpp
