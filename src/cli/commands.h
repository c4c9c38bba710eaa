// tfcpp command registry. Built-in commands live in commands.cpp; a family's own commands (vocode, fill-mask, ...)
// live in their own file under src/cli/ and register themselves with TFCPP_CLI_COMMAND.
#pragma once

#include "transformers/modeling_utils.h"

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>

namespace tfcpp {

// Parses argv and runs the subcommand. Returns the exit code; usage errors return 2.
int run_cli(int argc, char** argv);

// The options every model-loading command shares: --model, --class, --dtype, --variant, --attn-implementation, -t.
struct LoadFlags {
  std::string model, class_name, dtype, variant, attn_implementation;
  int threads = 0;
  void add(CLI::App* cmd, bool class_required = false);
  // Loads --model with --class, else config.json's architectures[0], else the class registered for default_task.
  std::shared_ptr<transformers::PreTrainedModel> load(const std::string& default_task, double* seconds = nullptr) const;
};

// --model given as a hub id (org/name): config, weights (--variant), generation config, tokenizer and preprocessor
// files fetched into the Hugging Face cache; returns the snapshot folder (a local folder is returned as is).
std::string resolve_model_arg(const std::string& model, const std::string& variant);

// Sets libtorch/OpenBLAS threads (0 = default) and prints the runtime's warning, if any.
void setup_threads(int threads);

// "5 17 33" (spaces or commas) -> non-negative integers, for --ids and friends; ValueError naming `option` and the bad
// token, or an empty list.
std::vector<int64_t> parse_id_list(const std::string& spec, const char* option);
// Whether the folder's tokenizer returns token_type_ids (transformers: the tokenizer class's model_input_names, which
// tokenizer_config.json may override): "model_input_names" when given, else BERT-like configs only
// (type_vocab_size). GPT-2 style models would otherwise embed the all-zero ids as tokens.
bool returns_token_type_ids(const std::string& dir, const transformers::PretrainedConfig& config);

// `setup` adds the subcommand's options and returns what to run when it was the one parsed.
using CommandSetup = std::function<std::function<int()>(CLI::App* cmd)>;
bool register_command(const std::string& name, const std::string& description, CommandSetup setup);

}  // namespace tfcpp

#define TFCPP_CLI_CONCAT_INNER(a, b) a##b
#define TFCPP_CLI_CONCAT(a, b) TFCPP_CLI_CONCAT_INNER(a, b)
// In a src/cli/*.cpp file: TFCPP_CLI_COMMAND("vocode", "Units to a WAV file", [](CLI::App* cmd) { ...; return run; });
// (Variadic so a lambda with commas in it can be passed directly.)
#define TFCPP_CLI_COMMAND(name, description, ...)                   \
  static const bool TFCPP_CLI_CONCAT(tfcpp_cli_registered_, __LINE__) = \
      ::tfcpp::register_command(name, description, __VA_ARGS__)
