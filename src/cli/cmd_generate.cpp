// tfcpp generate: text generation from a prompt with every decoding strategy and logits processor of generate()
// (defaults from the model folder's generation_config.json, flags override), or a fixture's generate entry.
#include "cli/commands.h"
#include "cli/distributed_cli.h"

#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/tokenizer.h"

#include <ATen/ATen.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <sstream>

namespace tfcpp {

using namespace transformers;

namespace {

using Clock = std::chrono::steady_clock;

struct GenerateFlags {
  std::string prompt, inputs, name, early_stopping, cache_implementation, bad_words;
  std::vector<std::string> stop_strings;
  bool as_json = false, do_sample = false, output_scores = false;
  DistFlags dist;  // --nproc, --parallel (distributed_cli.h)
  std::optional<int64_t> max_new_tokens, min_new_tokens, top_k, num_beams, num_beam_groups, seed,
      num_return_sequences, no_repeat_ngram_size;
  std::optional<double> temperature, top_p, min_p, typical_p, epsilon_cutoff, eta_cutoff, repetition_penalty,
      diversity_penalty, penalty_alpha, length_penalty, max_time;
};

// "5 17; 3" -> [[5, 17], [3]] (ids separated by spaces or commas, lists by ';'). ValueError naming the bad token.
json parse_id_lists(const std::string& spec, const std::string& flag) {
  json lists = json::array();
  std::stringstream sequences(spec);
  std::string sequence;
  while (std::getline(sequences, sequence, ';')) {
    for (char& ch : sequence)
      if (ch == ',') ch = ' ';
    std::istringstream in(sequence);
    json ids = json::array();
    std::string token;
    while (in >> token) {
      size_t used = 0;
      long long value = -1;
      try {
        value = std::stoll(token, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != token.size() || value < 0) throw ValueError(flag + ": '" + token + "' is not a token id");
      ids.push_back(static_cast<int64_t>(value));
    }
    if (!ids.empty()) lists.push_back(ids);
  }
  if (lists.empty()) throw ValueError(flag + " is empty: give token ids such as \"5 17; 3\"");
  return lists;
}

// The flags as generation config keys (only those given).
json overrides_from(const GenerateFlags& f) {
  json o = json::object();
  auto set = [&o](const char* key, const auto& value) {
    if (value) o[key] = *value;
  };
  set("max_new_tokens", f.max_new_tokens);
  set("min_new_tokens", f.min_new_tokens);
  set("temperature", f.temperature);
  set("top_k", f.top_k);
  set("top_p", f.top_p);
  set("min_p", f.min_p);
  set("typical_p", f.typical_p);
  set("epsilon_cutoff", f.epsilon_cutoff);
  set("eta_cutoff", f.eta_cutoff);
  set("repetition_penalty", f.repetition_penalty);
  set("no_repeat_ngram_size", f.no_repeat_ngram_size);
  set("num_beams", f.num_beams);
  set("num_beam_groups", f.num_beam_groups);
  set("diversity_penalty", f.diversity_penalty);
  set("penalty_alpha", f.penalty_alpha);
  set("length_penalty", f.length_penalty);
  set("num_return_sequences", f.num_return_sequences);
  set("max_time", f.max_time);
  set("seed", f.seed);
  // Sampling flags imply --do-sample (--top-k too, unless it is contrastive search's candidate count).
  bool sampling_flag = f.temperature || f.top_p || f.min_p || f.typical_p || f.epsilon_cutoff || f.eta_cutoff ||
                       (f.top_k && !f.penalty_alpha);
  if (f.do_sample || sampling_flag) o["do_sample"] = true;
  if (!f.early_stopping.empty()) {
    if (f.early_stopping == "true") o["early_stopping"] = true;
    else if (f.early_stopping == "false") o["early_stopping"] = false;
    else if (f.early_stopping == "never") o["early_stopping"] = "never";
    else throw ValueError("--early-stopping must be true, false or never, got '" + f.early_stopping + "'");
  }
  if (!f.stop_strings.empty()) o["stop_strings"] = f.stop_strings;
  if (!f.bad_words.empty()) o["bad_words_ids"] = parse_id_lists(f.bad_words, "--bad-words");
  if (!f.cache_implementation.empty()) o["cache_implementation"] = f.cache_implementation;
  if (f.output_scores) o["output_scores"] = true;
  return o;
}

std::vector<int64_t> row_ids(const at::Tensor& row) {
  at::Tensor r = row.contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

// Per sequence, the processed score of each generated token (transformers' compute_transition_scores without
// normalisation): scores[step][row][token], where beam search reads the row from beam_indices.
json token_scores(const GenerateOutput& out, int64_t prompt_length) {
  json all = json::array();
  for (int64_t i = 0; i < out.sequences.size(0); ++i) {
    json row = json::array();
    for (size_t step = 0; step < out.scores.size(); ++step) {
      int64_t position = prompt_length + static_cast<int64_t>(step);
      if (position >= out.sequences.size(1)) break;
      int64_t source = i;
      if (out.beam_indices.defined()) {
        source = out.beam_indices[i][static_cast<int64_t>(step)].item<int64_t>();
        if (source < 0) break;
      } else if (out.scores[step].size(0) != out.sequences.size(0)) {
        break;
      }
      int64_t token = out.sequences[i][position].item<int64_t>();
      row.push_back(out.scores[step][source][token].item<double>());
    }
    all.push_back(row);
  }
  return all;
}

int cmd_generate(const LoadFlags& flags, const GenerateFlags& f) {
  setup_threads(flags.threads);
  double load_s = 0;
  auto model = load_for_rank(flags, f.dist, "causal-lm", &load_s);  // a rank's shard when WORLD_SIZE > 1
  if (!f.inputs.empty()) {
    json case_inputs = read_case_inputs(f.inputs);
    int64_t steps = 0;
    TokenCallback fault_hook;  // tests of a rank dying mid-generation (distributed_cli.h)
    if (std::getenv("TFCPP_DIST_FAULT_RANK")) fault_hook = [&](const at::Tensor&) { maybe_inject_fault(steps++); };
    GenerateOutput out = run_generate_case(*model, case_inputs, f.name.empty() ? "greedy" : f.name, fault_hook);
    std::cout << (f.as_json ? generate_output_to_json(out).dump() : tensor_to_json(out.sequences).dump()) << std::endl;
    return 0;
  }
  if (model->config && model->config->is_encoder_decoder)
    throw ValueError(model->class_name + " is an encoder-decoder model: use `tfcpp text2text`");
  Tokenizer tokenizer = Tokenizer::from_pretrained(flags.model);
  std::vector<int64_t> ids = tokenizer.encode(f.prompt);
  at::Tensor input_ids = at::tensor(ids, at::kLong).unsqueeze(0);
  GenerationConfig config = model->generation_config;  // generation_config.json
  config.from_dict(overrides_from(f), "command line", false);
  if (f.as_json) config.output_scores = true;  // for token_scores
  config.validate();

  GenerateOptions options;
  options.tokenizer = &tokenizer;
  // Stream text as tokens arrive when there is one sequence to show; otherwise print the results at the end.
  const bool stream = !f.as_json && config.num_beams == 1 && config.num_return_sequences == 1;
  TextStreamer streamer(tokenizer, true);
  auto start = Clock::now();
  std::optional<Clock::time_point> first_token;
  int64_t new_tokens = 0;
  bool prompt_seen = false;
  options.streamer = [&](const at::Tensor& t) {
    if (!prompt_seen) {
      prompt_seen = true;
      if (stream)
        for (int64_t i = 0; i < t.size(-1); ++i) std::cout << streamer.put(t.view(-1)[i].item<int64_t>());
    } else {
      if (!first_token) first_token = Clock::now();
      ++new_tokens;
      if (stream) std::cout << streamer.put(t.view(-1)[0].item<int64_t>());
      maybe_inject_fault(new_tokens);
    }
    std::cout.flush();
  };
  if (config.num_beams > 1) options.streamer = {};  // generate() refuses a streamer with beam search
  GenerateOutput out = generate(*model, input_ids, config, ModelInputs{}, options);
  auto end = Clock::now();

  if (stream) {
    std::cout << streamer.end() << std::endl;
  } else {
    std::vector<std::string> texts;
    for (int64_t i = 0; i < out.sequences.size(0); ++i)
      texts.push_back(tokenizer.decode(row_ids(out.sequences[i]), /*skip_special_tokens=*/true));
    if (f.as_json) {
      json result = generate_output_to_json(out);
      result["text"] = texts;
      if (!out.scores.empty()) result["token_scores"] = token_scores(out, input_ids.size(1));
      if (f.output_scores) {
        json steps = json::array();
        for (const auto& s : out.scores) steps.push_back(tensor_to_json(s.to(at::kDouble)));
        result["scores"] = steps;
      }
      std::cout << result.dump() << std::endl;
    } else {
      for (size_t i = 0; i < texts.size(); ++i) {
        if (out.sequences_scores.defined())
          std::cout << "[" << out.sequences_scores[static_cast<int64_t>(i)].item<double>() << "] ";
        std::cout << texts[i] << "\n";
      }
      std::cout.flush();
    }
  }
  if (!first_token) {  // nothing streamed (beam search)
    new_tokens = out.sequences.size(1) - input_ids.size(1);
    first_token = start;
  }
  double prefill_s = std::chrono::duration<double>(*first_token - start).count();
  double decode_s = std::chrono::duration<double>(end - *first_token).count();
  if (!is_primary_rank()) return 0;
  std::fprintf(stderr, "load %.3f s | prefill %lld tokens, %.1f tok/s | decode %lld tokens, %.1f tok/s\n", load_s,
               static_cast<long long>(ids.size()), prefill_s > 0 ? ids.size() / prefill_s : 0.0,
               static_cast<long long>(new_tokens), decode_s > 0 && new_tokens > 1 ? (new_tokens - 1) / decode_s : 0.0);
  return 0;
}

std::function<int()> setup_generate(CLI::App* gen) {
  auto flags = std::make_shared<LoadFlags>();
  auto f = std::make_shared<GenerateFlags>();
  flags->add(gen);
  gen->add_option("--prompt,-p", f->prompt, "Prompt text");
  gen->add_option("--inputs", f->inputs, "Fixture inputs.json (runs the generate entry --name)");
  gen->add_option("--name", f->name, "Generate entry of --inputs (default greedy)");
  gen->add_flag("--json", f->as_json,
                "Print {\"sequences\", \"sequences_scores\", \"text\", \"token_scores\"} as JSON (with --inputs: the "
                "fixture's result)");
  gen->add_flag("--output-scores", f->output_scores, "With --json: also every step's processed scores [N, vocab]");
  gen->add_option("--max-new-tokens,-n", f->max_new_tokens, "Tokens to generate");
  gen->add_option("--min-new-tokens", f->min_new_tokens, "Suppress EOS before this many new tokens");
  gen->add_option("--max-time", f->max_time, "Stop after this many seconds");
  gen->add_option("--stop-strings", f->stop_strings, "Stop when the text ends with one of these strings");
  gen->add_flag("--do-sample", f->do_sample, "Sample instead of greedy decoding");
  gen->add_option("--temperature", f->temperature, "Sampling temperature (implies --do-sample)");
  gen->add_option("--top-k", f->top_k, "Top-k filtering (implies --do-sample unless --penalty-alpha)");
  gen->add_option("--top-p", f->top_p, "Nucleus filtering (implies --do-sample)");
  gen->add_option("--min-p", f->min_p, "Min-p filtering (implies --do-sample)");
  gen->add_option("--typical-p", f->typical_p, "Typical decoding mass (implies --do-sample)");
  gen->add_option("--epsilon-cutoff", f->epsilon_cutoff, "Epsilon sampling (implies --do-sample)");
  gen->add_option("--eta-cutoff", f->eta_cutoff, "Eta sampling (implies --do-sample)");
  gen->add_option("--seed", f->seed, "Sampling seed");
  gen->add_option("--repetition-penalty", f->repetition_penalty, "Repetition penalty");
  gen->add_option("--no-repeat-ngram-size", f->no_repeat_ngram_size, "Forbid repeating n-grams of this size");
  gen->add_option("--bad-words", f->bad_words, "Banned token id sequences, e.g. \"5 17; 3\"");
  gen->add_option("--num-beams", f->num_beams, "Beam search width");
  gen->add_option("--num-beam-groups", f->num_beam_groups, "Diverse beam search groups (with --diversity-penalty)");
  gen->add_option("--diversity-penalty", f->diversity_penalty, "Hamming diversity penalty between beam groups");
  gen->add_option("--penalty-alpha", f->penalty_alpha, "Contrastive search degeneration penalty (with --top-k > 1)");
  gen->add_option("--length-penalty", f->length_penalty, "Beam search length penalty");
  gen->add_option("--early-stopping", f->early_stopping, "Beam search: true, false or never");
  gen->add_option("--num-return-sequences", f->num_return_sequences, "Sequences per prompt");
  gen->add_option("--cache-implementation", f->cache_implementation, "dynamic (default) or static");
  add_dist_options(gen, &f->dist);
  return [flags, f, gen] {
    if (f->prompt.empty() == f->inputs.empty()) {
      std::fprintf(stderr, "error: generate needs exactly one of --prompt or --inputs\n%s", gen->help().c_str());
      return 2;
    }
    if (auto code = launch_if_requested(f->dist)) return *code;
    return cmd_generate(*flags, *f);
  };
}

}  // namespace

TFCPP_CLI_COMMAND("generate", "Generate text from a prompt, or run a fixture's generate entry", setup_generate);

}  // namespace tfcpp
