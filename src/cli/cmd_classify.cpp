// tfcpp classify: transformers' TextClassificationPipeline (pipelines/text_classification.py) over
// AutoModelForSequenceClassification: softmax (sigmoid for multi_label_classification or a single label) over the
// logits, labels from config.id2label.
#include "cli/commands.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/tokenizer.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;

namespace tfcpp {

using namespace transformers;

namespace {

struct ClassifyOptions {
  LoadFlags flags;
  std::string ids, type_ids, text, text_pair, function_to_apply;
  std::optional<int64_t> top_k;
  bool as_json = false;
};

int run_classify(ClassifyOptions opt, const CLI::App* cmd) {
  if (opt.ids.empty() == opt.text.empty()) {
    std::fprintf(stderr, "error: classify needs exactly one of --ids or --text\n%s", cmd->help().c_str());
    return 2;
  }
  if (!opt.text_pair.empty() && opt.text.empty()) throw ValueError("--text-pair needs --text");
  if (opt.top_k && *opt.top_k < 0) throw ValueError(fmt::format("--top-k must be >= 0, got {}", *opt.top_k));
  if (!opt.function_to_apply.empty() && opt.function_to_apply != "softmax" && opt.function_to_apply != "sigmoid" &&
      opt.function_to_apply != "none")
    throw ValueError("--function-to-apply must be softmax, sigmoid or none, got '" + opt.function_to_apply + "'");
  setup_threads(opt.flags.threads);
  // The pipeline loads AutoModelForSequenceClassification, whatever architectures config.json lists.
  if (opt.flags.class_name.empty())
    opt.flags.class_name =
        class_for_task(AutoConfig::from_pretrained(opt.flags.model)->model_type(), tasks::kSequenceClassification);

  std::vector<int64_t> ids, type_ids, attention_mask;
  if (!opt.text.empty()) {
    if (!fs::exists(fs::path(opt.flags.model) / "tokenizer.json"))
      throw TokenizerError("--text needs a tokenizer, but " + opt.flags.model +
                           " has no tokenizer.json; pass token ids with --ids instead");
    Tokenizer tokenizer = Tokenizer::from_pretrained(opt.flags.model);
    Encoding encoding =
        opt.text_pair.empty() ? tokenizer.encode_plus(opt.text) : tokenizer.encode_plus(opt.text, opt.text_pair);
    ids = encoding.ids;
    type_ids = encoding.type_ids;
    attention_mask = encoding.attention_mask;
  } else {
    ids = parse_id_list(opt.ids, "--ids");
    attention_mask.assign(ids.size(), 1);
  }
  if (!opt.type_ids.empty()) {
    type_ids = parse_id_list(opt.type_ids, "--type-ids");
    if (type_ids.size() != ids.size())
      throw ValueError(fmt::format("--type-ids has {} values for {} tokens", type_ids.size(), ids.size()));
  }

  auto model = opt.flags.load(tasks::kSequenceClassification);
  if (!opt.text.empty() && opt.type_ids.empty() && !returns_token_type_ids(opt.flags.model, *model->config))
    type_ids.clear();
  if (auto embeddings = model->get_input_embeddings()) {
    for (int64_t id : ids)
      if (id >= embeddings->num_embeddings)
        throw ValueError(fmt::format("token id {} is out of range: the model's vocabulary has {} ids", id,
                                     embeddings->num_embeddings));
  }

  at::Tensor logits;
  {
    c10::InferenceMode guard;
    ModelInputs in;
    in.input_ids = at::tensor(ids, at::kLong).unsqueeze(0);
    in.attention_mask = at::tensor(attention_mask, at::kLong).unsqueeze(0);
    if (!type_ids.empty()) in.token_type_ids = at::tensor(type_ids, at::kLong).unsqueeze(0);
    logits = model->forward(in).logits;
  }
  if (!logits.defined() || logits.dim() != 2)
    throw ValueError(model->class_name + " returned no [batch, num_labels] logits; classify needs a "
                     "ForSequenceClassification model");
  at::Tensor row = logits[0].to(at::kFloat).contiguous();  // [num_labels]
  std::vector<float> outputs(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());

  // postprocess(): the function the pipeline picks by default
  const PretrainedConfig& config = *model->config;
  std::string function = opt.function_to_apply;
  if (function.empty()) {
    const std::string problem_type = config.problem_type.value_or("");
    const auto num_labels = static_cast<int64_t>(outputs.size());
    if (problem_type == "multi_label_classification" || num_labels == 1) function = "sigmoid";
    else if (problem_type == "single_label_classification" || num_labels > 1) function = "softmax";
    else function = "none";
  }
  std::vector<double> scores(outputs.size());
  if (function == "sigmoid") {
    for (size_t i = 0; i < outputs.size(); ++i) scores[i] = 1.0 / (1.0 + std::exp(-static_cast<double>(outputs[i])));
  } else if (function == "softmax") {
    double maxes = *std::max_element(outputs.begin(), outputs.end()), sum = 0;
    for (size_t i = 0; i < outputs.size(); ++i) sum += scores[i] = std::exp(outputs[i] - maxes);
    for (double& s : scores) s /= sum;
  } else {
    for (size_t i = 0; i < outputs.size(); ++i) scores[i] = outputs[i];
  }
  auto label_of = [&](size_t i) {
    auto it = config.id2label.find(static_cast<int64_t>(i));
    return it != config.id2label.end() ? it->second : "LABEL_" + std::to_string(i);
  };

  std::vector<size_t> order(scores.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  // Without --top-k: the pipeline's legacy answer, the best label only. --top-k 0: every label.
  size_t keep = !opt.top_k ? 1 : (*opt.top_k == 0 ? order.size() : std::min(order.size(), static_cast<size_t>(*opt.top_k)));
  order.resize(keep);

  if (opt.as_json) {
    nlohmann::ordered_json result = nlohmann::ordered_json::array();
    for (size_t i : order) result.push_back({{"label", label_of(i)}, {"score", scores[i]}});
    std::cout << (opt.top_k ? result : result[0]).dump() << std::endl;
    return 0;
  }
  for (size_t i : order) std::cout << fmt::format("{:.4f}  {}\n", scores[i], label_of(i));
  return 0;
}

std::function<int()> classify_setup(CLI::App* cmd) {
  auto opt = std::make_shared<ClassifyOptions>();
  opt->flags.add(cmd);
  cmd->add_option("--ids", opt->ids, "Token ids, e.g. \"0 92 28 2\" (special tokens included)");
  cmd->add_option("--text", opt->text, "Text to classify (needs tokenizer.json in the model folder)");
  cmd->add_option("--text-pair", opt->text_pair, "Second text of a sentence pair (with --text)");
  cmd->add_option("--type-ids", opt->type_ids, "token_type_ids for --ids (segment ids), e.g. \"0 0 1 1\"");
  cmd->add_option("--top-k,-k", opt->top_k, "Labels to print, best first (0 = all; default: the best one)");
  cmd->add_option("--function-to-apply", opt->function_to_apply,
                  "softmax, sigmoid or none (default: sigmoid for multi_label_classification or one label)");
  cmd->add_flag("--json", opt->as_json,
                "Print the pipeline's output as JSON: {\"label\", \"score\"}, or a list of them with --top-k");
  return [opt, cmd] { return run_classify(*opt, cmd); };
}

}  // namespace

TFCPP_CLI_COMMAND("classify", "Text classification (AutoModelForSequenceClassification): labels with scores",
                  classify_setup);

}  // namespace tfcpp
