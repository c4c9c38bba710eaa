// tfcpp text2text: encoder-decoder generation (AutoModelForSeq2SeqLM + generate) from token ids, or from text when
// the model folder has a tokenizer.json.
#include "cli/commands.h"

#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/tokenizer.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>

namespace fs = std::filesystem;

namespace tfcpp {

using namespace transformers;

namespace {

struct Text2TextOptions {
  std::string ids, text;
  std::optional<int64_t> max_new_tokens, num_beams, num_return_sequences;
  std::optional<double> length_penalty;
  bool as_json = false;
};

// "5 17 33" (spaces or commas); several inputs separated by ';'. ValueError naming the bad token.
std::vector<std::vector<int64_t>> parse_ids(const std::string& spec) {
  std::vector<std::vector<int64_t>> batch;
  std::stringstream sequences(spec);
  std::string sequence;
  while (std::getline(sequences, sequence, ';')) {
    if (sequence.find_first_not_of(" ,\t\n") == std::string::npos)
      throw ValueError("--ids: empty input sequence in \"" + spec + "\"");
    batch.push_back(parse_id_list(sequence, "--ids"));
  }
  if (batch.empty()) throw ValueError("--ids is empty: give token ids such as \"5 17 33 2\"");
  return batch;
}

int cmd_text2text(const LoadFlags& flags, const Text2TextOptions& options) {
  using Clock = std::chrono::steady_clock;
  setup_threads(flags.threads);
  const fs::path tokenizer_file = fs::path(flags.model) / "tokenizer.json";
  std::optional<Tokenizer> tokenizer;
  if (fs::exists(tokenizer_file)) tokenizer = Tokenizer::from_pretrained(flags.model);
  else if (!options.text.empty())
    throw TokenizerError("--text needs a tokenizer, but " + tokenizer_file.string() +
                         " does not exist; pass token ids with --ids \"5 17 33 2\" instead");

  double load_s = 0;
  auto model = flags.load("seq2seq-lm", &load_s);
  if (!model->config->is_encoder_decoder)
    throw ValueError(model->class_name + " is not an encoder-decoder model (config.is_encoder_decoder is false); use "
                     "`tfcpp generate` for decoder-only models");
  const int64_t vocab_size = model->get_input_embeddings()->num_embeddings;

  std::vector<std::vector<int64_t>> batch = options.text.empty()
                                                ? parse_ids(options.ids)
                                                : std::vector<std::vector<int64_t>>{tokenizer->encode(options.text)};
  // Right padding with pad_token_id, masked out (encoder inputs).
  size_t longest = 0;
  for (const auto& ids : batch) {
    longest = std::max(longest, ids.size());
    for (int64_t id : ids)
      if (id >= vocab_size)
        throw ValueError(fmt::format("token id {} is out of range: the model's vocabulary has {} ids", id, vocab_size));
  }
  const int64_t pad = model->config->pad_token_id.value_or(0);
  at::Tensor input_ids = at::full({static_cast<int64_t>(batch.size()), static_cast<int64_t>(longest)}, pad, at::kLong);
  at::Tensor attention_mask = at::zeros_like(input_ids);
  for (size_t i = 0; i < batch.size(); ++i) {
    auto n = static_cast<int64_t>(batch[i].size());
    input_ids[static_cast<int64_t>(i)].narrow(0, 0, n).copy_(at::tensor(batch[i], at::kLong));
    attention_mask[static_cast<int64_t>(i)].narrow(0, 0, n).fill_(1);
  }

  GenerationConfig config = model->generation_config;
  if (options.max_new_tokens) config.max_new_tokens = *options.max_new_tokens;
  if (options.num_beams) config.num_beams = *options.num_beams;
  if (options.num_return_sequences) config.num_return_sequences = *options.num_return_sequences;
  if (options.length_penalty) config.length_penalty = *options.length_penalty;
  ModelInputs kwargs;
  kwargs.attention_mask = attention_mask;
  auto start = Clock::now();
  GenerateOutput out = generate(*model, input_ids, config, kwargs);
  double generate_s = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<std::string> texts;
  for (int64_t i = 0; i < out.sequences.size(0); ++i) {
    at::Tensor row = out.sequences[i].contiguous();
    std::vector<int64_t> ids(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
    if (tokenizer) texts.push_back(tokenizer->decode(ids, /*skip_special_tokens=*/true));
    if (!options.as_json) {
      std::cout << fmt::format("{}", fmt::join(ids, " "));
      if (tokenizer) std::cout << "\t" << texts.back();
      std::cout << "\n";
    }
  }
  if (options.as_json) {
    json result = generate_output_to_json(out);
    if (tokenizer) result["text"] = texts;
    std::cout << result.dump() << std::endl;
  }
  std::cout.flush();
  std::fprintf(stderr, "load %.3f s | generate %lld x %lld tokens in %.3f s\n", load_s,
               static_cast<long long>(out.sequences.size(0)), static_cast<long long>(out.sequences.size(1)),
               generate_s);
  return 0;
}

std::function<int()> setup_text2text(CLI::App* cmd) {
  auto flags = std::make_shared<LoadFlags>();
  auto options = std::make_shared<Text2TextOptions>();
  flags->add(cmd);
  auto* ids = cmd->add_option("--ids", options->ids, "Encoder input ids, e.g. \"5 17 33 2\"; ';' separates inputs");
  auto* text = cmd->add_option("--text", options->text, "Input text (needs tokenizer.json in the model folder)");
  ids->excludes(text);
  cmd->add_option("--max-new-tokens,-n", options->max_new_tokens, "Tokens to generate");
  cmd->add_option("--num-beams", options->num_beams, "Beam search width (default: generation_config.json)");
  cmd->add_option("--num-return-sequences", options->num_return_sequences, "Sequences per input (<= num beams)");
  cmd->add_option("--length-penalty", options->length_penalty, "Beam search length penalty");
  cmd->add_flag("--json", options->as_json, "Print {\"sequences\", \"sequences_scores\", \"text\"} as JSON");
  return [flags, options, cmd] {
    if (options->ids.empty() == options->text.empty()) {
      std::fprintf(stderr, "error: text2text needs exactly one of --ids or --text\n%s", cmd->help().c_str());
      return 2;
    }
    return cmd_text2text(*flags, *options);
  };
}

}  // namespace

TFCPP_CLI_COMMAND("text2text", "Encoder-decoder generation (e.g. BlenderbotSmall) from token ids or text",
                  setup_text2text);

}  // namespace tfcpp
