// tfcpp subcommands: forward, info, bench (generate: cmd_generate.cpp).
#include "cli/commands.h"

#include "bench/bench.h"
#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/runtime.h"
#include "transformers/safetensors.h"
#include "transformers/tokenizer.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace tfcpp {

using namespace transformers;

std::vector<int64_t> parse_id_list(const std::string& spec, const char* option) {
  std::string normalized = spec;
  std::replace(normalized.begin(), normalized.end(), ',', ' ');
  std::istringstream in(normalized);
  std::vector<int64_t> ids;
  std::string token;
  while (in >> token) {
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(token, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != token.size() || value < 0) throw ValueError(fmt::format("{}: '{}' is not a token id", option, token));
    ids.push_back(value);
  }
  if (ids.empty()) throw ValueError(fmt::format("{} is empty: give token ids such as \"0 92 28 2\"", option));
  return ids;
}

bool returns_token_type_ids(const std::string& dir, const PretrainedConfig& config) {
  fs::path path = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(path)) {
    json tokenizer_config = read_json_file(path.string(), "tokenizer config");
    if (tokenizer_config.is_object() && tokenizer_config.contains("model_input_names") &&
        tokenizer_config["model_input_names"].is_array()) {
      for (const auto& name : tokenizer_config["model_input_names"])
        if (name == "token_type_ids") return true;
      return false;
    }
  }
  return config.get("type_vocab_size").is_number_integer();
}

namespace {

struct RegisteredCommand {
  std::string name, description;
  CommandSetup setup;
};

std::vector<RegisteredCommand>& registry() {
  static std::vector<RegisteredCommand> commands;
  return commands;
}

}  // namespace

bool register_command(const std::string& name, const std::string& description, CommandSetup setup) {
  registry().push_back({name, description, std::move(setup)});
  return true;
}

void LoadFlags::add(CLI::App* cmd, bool class_required) {
  cmd->add_option("--model,-m", model, "Model folder (config.json + weights) or hub id (org/name)")->required();
  auto* c = cmd->add_option("--class", class_name, "Model class, e.g. LlamaForCausalLM (default: from config.json)");
  if (class_required) c->required();
  cmd->add_option("--dtype", dtype, "float32 | bfloat16 | float16 | auto (default float32, as transformers)");
  cmd->add_option("--variant", variant, "Weights variant: model.<variant>.safetensors");
  cmd->add_option("--attn-implementation", attn_implementation, "eager | sdpa");
  cmd->add_option("--threads,-t", threads, "Threads (default: TFCPP_NUM_THREADS or physical cores)");
  cmd->final_callback([this] { model = resolve_model_arg(model, variant); });  // hub ids (cmd_hub.cpp)
}

std::shared_ptr<PreTrainedModel> LoadFlags::load(const std::string& default_task, double* seconds) const {
  auto start = Clock::now();
  FromPretrainedOptions options;
  options.dtype = dtype;
  options.variant = variant;
  options.attn_implementation = attn_implementation;
  std::string cls = class_name;
  if (cls.empty()) {
    auto config = AutoConfig::from_pretrained(model);
    if (config->architectures && !config->architectures->empty()) cls = config->architectures->front();
    else cls = class_for_task(config->model_type(), default_task);
  }
  auto loaded = model_from_pretrained(model, cls, options);
  if (seconds) *seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return loaded;
}

void setup_threads(int threads) {
  RuntimeInfo info = init_runtime(threads);
  if (!info.warning.empty()) std::fprintf(stderr, "warning: %s\n", info.warning.c_str());
}

namespace {

int cmd_forward(const LoadFlags& flags, const std::string& inputs, const std::string& out_path) {
  setup_threads(flags.threads);
  auto model = flags.load("base");
  json case_inputs = read_case_inputs(inputs);
  auto outputs = run_forward_case(*model, case_inputs);
  safetensors::save_file(outputs, out_path);
  for (const auto& [name, t] : outputs)
    std::cout << name << " " << dtype_name(t.scalar_type()) << " " << t.sizes() << "\n";
  return 0;
}

int cmd_info(const LoadFlags& flags, bool as_json) {
  setup_threads(flags.threads);
  auto model = flags.load("base");
  std::map<std::string, int64_t> dtypes;
  for (const auto& [k, t] : model->state_dict()) dtypes[dtype_name(t.scalar_type())] += t.numel();
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(flags.model))
    if (entry.is_regular_file()) files.push_back(entry.path().filename().string());
  std::sort(files.begin(), files.end());
  std::vector<std::string> tied;
  std::map<const void*, std::vector<std::string>> groups;
  for (const auto& [k, t] : model->state_dict()) groups[t.unsafeGetTensorImpl()].push_back(k);
  for (const auto& [id, names] : groups)
    if (names.size() > 1) {
      std::string group;
      for (const auto& n : names) group += (group.empty() ? "" : " = ") + n;
      tied.push_back(group);
    }
  json info{{"class", model->class_name},
            {"model_type", model->config->model_type()},
            {"architectures", model->config->architectures.value_or(std::vector<std::string>{})},
            {"num_parameters", model->num_parameters()},
            {"memory_footprint_bytes", model->get_memory_footprint()},
            {"dtype", dtype_name(model->dtype())},
            {"parameter_dtypes", dtypes},
            {"files", files},
            {"tied_weights", tied},
            {"attn_implementation", model->config->_attn_implementation()},
            {"can_generate", model->can_generate()},
            {"missing_keys", model->loading_info.missing_keys},
            {"unexpected_keys", model->loading_info.unexpected_keys}};
  if (as_json) {
    std::cout << info.dump(2) << std::endl;
    return 0;
  }
  std::cout << fmt::format("class            {}\nmodel_type       {}\nparameters       {} ({:.2f} M)\nmemory           {:.2f} MB\n"
                           "dtype            {}\nattention        {}\ncan_generate     {}\n",
                           model->class_name, model->config->model_type(), model->num_parameters(),
                           model->num_parameters() / 1e6, model->get_memory_footprint() / 1e6,
                           dtype_name(model->dtype()), model->config->_attn_implementation(), model->can_generate());
  for (const auto& [d, n] : dtypes) std::cout << fmt::format("  {:<14} {} elements\n", d, n);
  std::cout << "files            " << fmt::format("{}", fmt::join(files, ", ")) << "\n";
  std::cout << "tied weights     " << (tied.empty() ? "none" : fmt::format("{}", fmt::join(tied, "; "))) << "\n";
  if (!model->loading_info.missing_keys.empty())
    std::cout << "missing keys     " << fmt::format("{}", fmt::join(model->loading_info.missing_keys, ", ")) << "\n";
  if (!model->loading_info.unexpected_keys.empty())
    std::cout << "unexpected keys  " << fmt::format("{}", fmt::join(model->loading_info.unexpected_keys, ", ")) << "\n";
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"tfcpp: Hugging Face transformers models in C++ (libtorch)"};
  app.require_subcommand(1);

  // forward
  auto* fwd = app.add_subcommand("forward", "Run a fixture's forward entry and write every output tensor");
  LoadFlags fwd_flags;
  fwd_flags.add(fwd);
  std::string fwd_inputs, fwd_out;
  fwd->add_option("--inputs", fwd_inputs, "Fixture inputs.json")->required()->check(CLI::ExistingFile);
  fwd->add_option("--out,-o", fwd_out, "Output .safetensors")->required();

  // info
  auto* info = app.add_subcommand("info", "Architecture, parameter count, dtypes, files, tied weights");
  LoadFlags info_flags;
  info_flags.add(info);
  bool info_json = false;
  info->add_flag("--json", info_json, "Print as JSON");

  // bench
  auto* bench = app.add_subcommand("bench", "Load time, prompt processing and generation speed vs machine limits");
  BenchOptions bench_options;
  add_bench_options(bench, bench_options);  // bench/bench.cpp

  std::vector<std::pair<CLI::App*, std::function<int()>>> extra_commands;
  for (const auto& command : registry()) {
    CLI::App* sub = app.add_subcommand(command.name, command.description);
    extra_commands.emplace_back(sub, command.setup(sub));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (fwd->parsed()) return cmd_forward(fwd_flags, fwd_inputs, fwd_out);
  if (info->parsed()) return cmd_info(info_flags, info_json);
  for (auto& [sub, run] : extra_commands)
    if (sub->parsed()) return run();
  if (bench->parsed()) return run_bench(bench_options);
  return 2;
}

}  // namespace tfcpp
