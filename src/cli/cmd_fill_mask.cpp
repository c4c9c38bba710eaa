// tfcpp fill-mask: transformers' FillMaskPipeline (pipelines/fill_mask.py) over a masked-LM model: softmax over the
// vocabulary at each mask position, top-k predictions with their scores.
#include "cli/commands.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/tokenizer.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;

namespace tfcpp {

using namespace transformers;

namespace {

struct FillMaskOptions {
  LoadFlags flags;
  std::string ids, text;
  std::optional<int64_t> mask_id;
  int64_t top_k = 5;
  bool as_json = false;
};

// The tokenizer's mask token: tokenizer_config.json / special_tokens_map.json "mask_token" (a string or an added-token
// object), else "<mask>".
std::string mask_token_of(const std::string& dir) {
  for (const char* file : {"tokenizer_config.json", "special_tokens_map.json"}) {
    fs::path path = fs::path(dir) / file;
    if (!fs::exists(path)) continue;
    json config = read_json_file(path.string(), "tokenizer config");
    if (!config.is_object() || !config.contains("mask_token")) continue;
    const json& token = config["mask_token"];
    if (token.is_string()) return token.get<std::string>();
    if (token.is_object() && token.contains("content") && token["content"].is_string())
      return token["content"].get<std::string>();
  }
  return "<mask>";
}

std::optional<Tokenizer> load_tokenizer(const std::string& dir, bool required) {
  if (!fs::exists(fs::path(dir) / "tokenizer.json")) {
    if (required)
      throw TokenizerError("--text needs a tokenizer, but " + dir +
                           " has no tokenizer.json; pass token ids with --ids instead");
    return std::nullopt;
  }
  try {
    return Tokenizer::from_pretrained(dir);
  } catch (const TokenizerError& e) {
    if (required)
      throw TokenizerError(std::string(e.what()) + " (pass token ids with --ids instead of --text)");
    return std::nullopt;  // ids work without it; predictions are then printed as ids only
  }
}

// "0 5 6 <mask> 7 2" (spaces or commas) -> ids; "<mask>" (or the tokenizer's mask token) stands for mask_id.
std::vector<int64_t> parse_ids(const std::string& text, const std::string& mask_token, int64_t mask_id) {
  std::string normalized = text;
  std::replace(normalized.begin(), normalized.end(), ',', ' ');
  std::istringstream stream(normalized);
  std::vector<int64_t> ids;
  std::string word;
  while (stream >> word) {
    if (word == mask_token || word == "<mask>") {
      ids.push_back(mask_id);
      continue;
    }
    size_t used = 0;
    int64_t id = 0;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size()) throw ValueError("--ids: '" + word + "' is not a token id (nor " + mask_token + ")");
    ids.push_back(id);
  }
  if (ids.empty()) throw ValueError("--ids is empty");
  return ids;
}

int run_fill_mask(FillMaskOptions opt, const CLI::App* cmd) {
  if (opt.ids.empty() == opt.text.empty()) {
    std::fprintf(stderr, "error: fill-mask needs exactly one of --ids or --text\n%s", cmd->help().c_str());
    return 2;
  }
  setup_threads(opt.flags.threads);
  if (opt.top_k < 1) throw ValueError("--top-k must be >= 1, got " + std::to_string(opt.top_k));
  // The pipeline loads AutoModelForMaskedLM, whatever architectures config.json lists.
  if (opt.flags.class_name.empty())
    opt.flags.class_name = class_for_task(AutoConfig::from_pretrained(opt.flags.model)->model_type(), "masked-lm");

  std::optional<Tokenizer> tokenizer = load_tokenizer(opt.flags.model, !opt.text.empty());
  const std::string mask_token = mask_token_of(opt.flags.model);
  auto model = opt.flags.load("masked-lm");

  int64_t mask_id = -1;
  if (opt.mask_id) mask_id = *opt.mask_id;
  else if (tokenizer) mask_id = tokenizer->token_to_id(mask_token);
  else if (auto vocab = model->config->get("vocab_size"); vocab.is_number_integer())
    mask_id = vocab.get<int64_t>() - 1;  // RoBERTa / CamemBERT vocabularies end with <mask>
  if (mask_id < 0)
    throw TokenizerError("the tokenizer of " + opt.flags.model + " has no mask token '" + mask_token +
                         "'; pass --mask-id");

  std::vector<int64_t> ids = opt.text.empty() ? parse_ids(opt.ids, mask_token, mask_id) : tokenizer->encode(opt.text);
  std::vector<int64_t> masked_index;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == mask_id) masked_index.push_back(static_cast<int64_t>(i));
  if (masked_index.empty())
    throw ValueError(fmt::format("No mask_token ({}, id {}) found on the input", mask_token, mask_id));

  at::Tensor logits;
  {
    c10::InferenceMode guard;
    ModelInputs in;
    in.input_ids = at::tensor(ids, at::kLong).unsqueeze(0);
    logits = model->forward(in).logits;
  }
  int64_t vocab_size = logits.size(-1);
  int64_t top_k = std::min(opt.top_k, vocab_size);
  at::Tensor probs = at::softmax(logits[0].index_select(0, at::tensor(masked_index, at::kLong)).to(at::kFloat), -1);
  auto [values, predictions] = probs.topk(top_k);

  const bool single_mask = masked_index.size() == 1;
  std::optional<int64_t> pad_token_id = model->config->pad_token_id;
  nlohmann::ordered_json result = nlohmann::ordered_json::array();  // keys in the pipeline's order
  for (size_t i = 0; i < masked_index.size(); ++i) {
    nlohmann::ordered_json row = nlohmann::ordered_json::array();
    for (int64_t k = 0; k < top_k; ++k) {
      int64_t p = predictions[i][k].item<int64_t>();
      std::vector<int64_t> tokens = ids;
      tokens[masked_index[i]] = p;
      // Filter padding out
      if (pad_token_id) tokens.erase(std::remove(tokens.begin(), tokens.end(), *pad_token_id), tokens.end());
      nlohmann::ordered_json proposition{{"score", values[i][k].item<double>()}, {"token", p}};
      if (tokenizer) {
        proposition["token_str"] = tokenizer->decode({p});
        // Special tokens are skipped for a readable sequence, except with several masks (they would vanish).
        proposition["sequence"] = tokenizer->decode(tokens, /*skip_special_tokens=*/single_mask);
      } else {
        proposition["sequence"] = tokens;
      }
      row.push_back(proposition);
    }
    result.push_back(row);
  }

  if (opt.as_json) {
    std::cout << (single_mask ? result[0] : result).dump() << std::endl;
    return 0;
  }
  for (size_t i = 0; i < masked_index.size(); ++i) {
    std::cout << fmt::format("mask {} (position {}):\n", i + 1, masked_index[i]);
    for (const auto& proposition : result[i]) {
      std::string line = fmt::format("  {:.4f}  {:>6}", proposition["score"].get<double>(),
                                     proposition["token"].get<int64_t>());
      if (proposition.contains("token_str"))
        line += fmt::format("  {:<12}  {}", proposition["token_str"].dump(),
                            proposition["sequence"].get<std::string>());
      std::cout << line << "\n";
    }
  }
  return 0;
}

std::function<int()> fill_mask_setup(CLI::App* cmd) {
  auto opt = std::make_shared<FillMaskOptions>();
  opt->flags.add(cmd);
  cmd->add_option("--ids", opt->ids, "Token ids with the mask id (or <mask>), e.g. \"0 5 6 <mask> 7 2\"");
  cmd->add_option("--text", opt->text, "Text with the tokenizer's mask token (needs the model's tokenizer.json)");
  cmd->add_option("--top-k,-k", opt->top_k, "Predictions per mask (default 5)");
  cmd->add_option("--mask-id", opt->mask_id,
                  "Mask token id (default: the tokenizer's mask token, else vocab_size - 1 as in RoBERTa/CamemBERT)");
  cmd->add_flag("--json", opt->as_json, "Print the pipeline's output as JSON (score, token, token_str, sequence)");
  return [opt, cmd] { return run_fill_mask(*opt, cmd); };
}

}  // namespace

TFCPP_CLI_COMMAND("fill-mask", "Top-k predictions at each mask position of a masked-LM model", fill_mask_setup);

}  // namespace tfcpp
