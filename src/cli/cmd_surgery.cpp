// Model surgery: convert (cast / shard / variant), resize-embeddings, prune-heads. Each writes a checkpoint that
// Python transformers loads (save_pretrained).
#include "cli/commands.h"

#include "transformers/errors.h"

#include <iostream>

namespace tfcpp {

using namespace transformers;

namespace {

struct OutputFlags {
  std::string out, max_shard_size = "5GB", save_dtype, save_variant;
  void add(CLI::App* cmd) {
    cmd->add_option("--out,-o", out, "Output folder")->required();
    cmd->add_option("--max-shard-size", max_shard_size, "Shard past this size: 5GB (default), 200MB, 4KB or bytes");
    cmd->add_option("--save-variant", save_variant, "Write model.<variant>.safetensors");
  }
  SavePretrainedOptions options() const {
    SavePretrainedOptions o;
    o.max_shard_size = max_shard_size;
    o.dtype = save_dtype;
    o.variant = save_variant;
    return o;
  }
};

int save(PreTrainedModel& model, const OutputFlags& flags) {
  model.save_pretrained(flags.out, flags.options());
  std::cout << "saved " << model.class_name << " to " << flags.out << "\n";
  return 0;
}

// {"0": [0, 2], "1": [1]} -> heads to prune.
std::map<int64_t, std::vector<int64_t>> parse_heads(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    throw ValueError("--heads must be JSON like '{\"0\": [0, 2]}': " + std::string(e.what()));
  }
  if (!j.is_object()) throw ValueError("--heads must be a JSON object {layer: [heads]}");
  std::map<int64_t, std::vector<int64_t>> heads;
  for (auto& [layer, list] : j.items()) {
    try {
      heads[std::stoll(layer)] = list.get<std::vector<int64_t>>();
    } catch (const std::exception&) {
      throw ValueError("--heads entry '" + layer + "' must map a layer index to a list of head indices");
    }
  }
  return heads;
}

}  // namespace

TFCPP_CLI_COMMAND("convert", "Re-save a model: cast (--dtype), shard (--max-shard-size), variant", [](CLI::App* cmd) {
  auto load = std::make_shared<LoadFlags>();
  auto out = std::make_shared<OutputFlags>();
  cmd->add_option("--model,-m", load->model, "Model folder")->required();
  cmd->add_option("--class", load->class_name, "Model class (default: from config.json)");
  cmd->add_option("--variant", load->variant, "Read model.<variant>.safetensors");
  cmd->add_option("--dtype", out->save_dtype, "Write floating weights as fp32 | bf16 | fp16 (default: unchanged)");
  cmd->add_flag("--safe-serialization", "Write safetensors (always: the only format written)");
  cmd->add_option("--threads,-t", load->threads, "Threads");
  cmd->final_callback([load] { load->model = resolve_model_arg(load->model, load->variant); });
  out->add(cmd);
  return [load, out] {
    setup_threads(load->threads);
    LoadFlags keep = *load;
    keep.dtype = "auto";  // keep the checkpoint's dtype unless --dtype asks otherwise
    auto model = keep.load("base");
    return save(*model, *out);
  };
});

TFCPP_CLI_COMMAND("resize-embeddings", "resize_token_embeddings and save", [](CLI::App* cmd) {
  auto load = std::make_shared<LoadFlags>();
  auto out = std::make_shared<OutputFlags>();
  auto new_num_tokens = std::make_shared<std::optional<int64_t>>();
  auto pad_to = std::make_shared<std::optional<int64_t>>();
  load->add(cmd);
  out->add(cmd);
  cmd->add_option("--new-num-tokens", *new_num_tokens, "New vocabulary size");
  cmd->add_option("--pad-to-multiple-of", *pad_to, "Round the size up to a multiple of this");
  return [load, out, new_num_tokens, pad_to] {
    if (!*new_num_tokens && !*pad_to) throw ValueError("give --new-num-tokens and/or --pad-to-multiple-of");
    setup_threads(load->threads);
    auto model = load->load("base");
    auto embeddings = model->resize_token_embeddings(*new_num_tokens, *pad_to);
    std::cout << "vocabulary: " << embeddings->num_embeddings << " rows\n";
    return save(*model, *out);
  };
});

TFCPP_CLI_COMMAND("prune-heads", "prune_heads and save (recorded in config.pruned_heads)", [](CLI::App* cmd) {
  auto load = std::make_shared<LoadFlags>();
  auto out = std::make_shared<OutputFlags>();
  auto heads = std::make_shared<std::string>();
  load->add(cmd);
  out->add(cmd);
  cmd->add_option("--heads", *heads, "JSON {layer: [heads]}, e.g. '{\"0\": [0, 2]}'")->required();
  return [load, out, heads] {
    auto to_prune = parse_heads(*heads);
    setup_threads(load->threads);
    auto model = load->load("base");
    model->prune_heads(to_prune);
    return save(*model, *out);
  };
});

}  // namespace tfcpp
