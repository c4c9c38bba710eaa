// tfcpp bench-tokenizer: encoding throughput (MB/s, one thread) of a model folder's tokenizer on a large text:
// the fixture inputs of the folder's cases.jsonl (or --text-file) repeated up to --mb megabytes, cut into
// documents of about 4 KB. Decoding throughput and a whitespace-split baseline are measured in the same run.
#include "cli/commands.h"

#include "transformers/errors.h"
#include "transformers/tokenizer.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <unordered_map>

namespace tfcpp {

using namespace transformers;

namespace {

struct TokenizerBenchOptions {
  std::string model, text_file;
  double megabytes = 4.0;
};

std::string seed_text(const TokenizerBenchOptions& o) {
  if (!o.text_file.empty()) {
    std::ifstream file(o.text_file, std::ios::binary);
    if (!file) throw ValueError(o.text_file + ": cannot open the file");
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
  }
  std::string text;
  std::ifstream cases(o.model + "/cases.jsonl");
  for (std::string line; std::getline(cases, line);) {
    const auto item = nlohmann::json::parse(line, nullptr, false);
    if (item.is_object() && item.contains("input") && item.at("input").is_string()) {
      text += item.at("input").get<std::string>() + "\n";
    }
  }
  if (text.empty()) {
    text =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.\n"
        "Le renard brun rapide saute par-dessus le chien paresseux. Der schnelle braune Fuchs springt.\n"
        "Быстрая коричневая лиса прыгает через ленивую собаку. 快速的棕色狐狸跳过了懒狗。\n"
        "The year 1999 and the year 2000; 3 cats, 42 dogs, 1000000 ants. email@example.com :)\n";
  }
  return text;
}

std::vector<std::string> make_documents(const std::string& seed, size_t target_bytes) {
  std::vector<std::string> documents;
  std::string current;
  size_t total = 0;
  while (total < target_bytes) {
    for (size_t start = 0; start < seed.size() && total < target_bytes;) {
      size_t end = seed.find('\n', start);
      end = end == std::string::npos ? seed.size() : end + 1;
      current.append(seed, start, end - start);
      total += end - start;
      start = end;
      if (current.size() >= 4096) {
        documents.emplace_back();
        documents.back().swap(current);
      }
    }
  }
  if (!current.empty()) {
    documents.emplace_back();
    documents.back().swap(current);
  }
  return documents;
}

template <typename Fn>
double seconds(Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int run_tokenizer_bench(const TokenizerBenchOptions& o) {
  const Tokenizer tokenizer = Tokenizer::from_pretrained(o.model);
  const auto documents = make_documents(seed_text(o), static_cast<size_t>(o.megabytes * 1e6));
  size_t bytes = 0;
  for (const auto& d : documents) bytes += d.size();
  const double mb = static_cast<double>(bytes) / 1e6;

  size_t tokens = 0;
  std::vector<std::vector<int64_t>> encoded;
  encoded.reserve(documents.size());
  const double encode_s = seconds([&] {
    for (const auto& d : documents) {
      encoded.push_back(tokenizer.encode(d, /*add_special_tokens=*/false));
      tokens += encoded.back().size();
    }
  });
  EncodeOptions with_offsets;
  with_offsets.add_special_tokens = false;
  const double encode_plus_s = seconds([&] {
    for (const auto& d : documents) tokenizer.encode_plus(d, with_offsets);
  });
  size_t decoded_bytes = 0;
  const double decode_s = seconds([&] {
    for (const auto& ids : encoded) decoded_bytes += tokenizer.decode(ids).size();
  });
  // Baseline: split on spaces and look each word up in a hash map (no normalization, no model).
  std::unordered_map<std::string, int64_t> table;
  size_t words = 0;
  const double baseline_s = seconds([&] {
    for (const auto& d : documents) {
      std::istringstream in(d);
      for (std::string word; in >> word;) words += static_cast<size_t>(table.emplace(word, table.size()).first->second >= 0);
    }
  });
  std::printf("tokenizer %s: %.1f MB in %zu documents, %zu tokens (%.2f bytes/token), 1 thread\n", o.model.c_str(), mb,
              documents.size(), tokens, static_cast<double>(bytes) / static_cast<double>(std::max<size_t>(tokens, 1)));
  std::printf("| %-28s | %10s | %12s |\n", "operation", "MB/s", "tokens/s");
  std::printf("| %-28s | %10.2f | %12.0f |\n", "encode (ids)", mb / encode_s, static_cast<double>(tokens) / encode_s);
  std::printf("| %-28s | %10.2f | %12.0f |\n", "encode_plus (char offsets)", mb / encode_plus_s,
              static_cast<double>(tokens) / encode_plus_s);
  std::printf("| %-28s | %10.2f | %12.0f |\n", "decode", static_cast<double>(decoded_bytes) / 1e6 / decode_s,
              static_cast<double>(tokens) / decode_s);
  std::printf("| %-28s | %10.2f | %12.0f |\n", "baseline: split + hash", mb / baseline_s,
              static_cast<double>(words) / baseline_s);
  return 0;
}

}  // namespace

TFCPP_CLI_COMMAND("bench-tokenizer", "Tokenizer throughput (MB/s) on a large text, one thread",
                  [](CLI::App* cmd) -> std::function<int()> {
                    auto o = std::make_shared<TokenizerBenchOptions>();
                    cmd->add_option("--model", o->model, "Folder with tokenizer.json or a .model")->required();
                    cmd->add_option("--text-file", o->text_file, "Seed text (default: the folder's cases.jsonl inputs)");
                    cmd->add_option("--mb", o->megabytes, "Megabytes of text to encode (default 4)");
                    return [o] { return run_tokenizer_bench(*o); };
                  });

}  // namespace tfcpp
