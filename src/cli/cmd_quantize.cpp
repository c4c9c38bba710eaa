// tfcpp quantize / dequantize: weight-only int8 / int4 checkpoints (quantization.h) and back to float.
#include "cli/commands.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/quantization.h"

#include <filesystem>
#include <iostream>

namespace tfcpp {

using namespace transformers;

namespace {

std::shared_ptr<PreTrainedModel> load_with(const LoadFlags& flags, const FromPretrainedOptions& options) {
  std::string cls = flags.class_name;
  if (cls.empty()) {
    auto config = AutoConfig::from_pretrained(flags.model);
    if (config->architectures && !config->architectures->empty()) cls = config->architectures->front();
    else cls = class_for_task(config->model_type(), "base");
  }
  return model_from_pretrained(flags.model, cls, options);
}

struct QuantizeFlags {
  std::string out, method;
  int64_t group_size = 128;
  std::vector<std::string> skip;
};

// The tokenizer files travel with the weights, so the output folder runs as the input did.
void copy_tokenizer_files(const std::string& from, const std::string& to) {
  namespace fs = std::filesystem;
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
    fs::path src = fs::path(from) / name;
    if (fs::exists(src)) fs::copy_file(src, fs::path(to) / name, fs::copy_options::overwrite_existing);
  }
}

int quantized_linears(PreTrainedModel& model) {
  int n = 0;
  for (const auto& item : model.named_modules("", false))
    if (auto* l = dynamic_cast<nn::Linear*>(item.value().get())) n += l->quant_bits ? 1 : 0;
    else if (auto* c = dynamic_cast<nn::Conv1D*>(item.value().get())) n += c->quantized ? 1 : 0;
  return n;
}

}  // namespace

TFCPP_CLI_COMMAND("quantize", "Weight-only int8 (per channel) or int4 (group-wise) quantization, saved with "
                              "config.quantization_config", [](CLI::App* cmd) {
  auto load = std::make_shared<LoadFlags>();
  auto flags = std::make_shared<QuantizeFlags>();
  cmd->add_option("--model,-m", load->model, "Float model folder")->required();
  cmd->add_option("--class", load->class_name, "Model class (default: from config.json)");
  cmd->add_option("--variant", load->variant, "Read model.<variant>.safetensors");
  cmd->add_option("--out,-o", flags->out, "Output folder")->required();
  cmd->add_option("--method", flags->method, "int8 | int4")->required()->check(CLI::IsMember({"int8", "int4"}));
  cmd->add_option("--group-size", flags->group_size, "int4 group size (inputs per scale; default 128)");
  cmd->add_option("--skip", flags->skip, "Modules to keep float (default: the output head / tied weights)");
  cmd->add_option("--threads,-t", load->threads, "Threads");
  cmd->final_callback([load] { load->model = resolve_model_arg(load->model, load->variant); });
  return [load, flags] {
    setup_threads(load->threads);
    FromPretrainedOptions options;
    options.dtype = "auto";
    options.variant = load->variant;
    options.quantization_config = {{"quant_method", "tfcpp_" + flags->method}, {"group_size", flags->group_size}};
    if (!flags->skip.empty()) options.quantization_config["modules_to_not_convert"] = flags->skip;
    auto model = load_with(*load, options);
    model->save_pretrained(flags->out);
    copy_tokenizer_files(load->model, flags->out);
    std::cout << "quantized " << quantized_linears(*model) << " Linear modules of " << model->class_name << " ("
              << model->quantization_method << "), " << model->get_memory_footprint() << " bytes; saved to "
              << flags->out << "\n";
    return 0;
  };
});

TFCPP_CLI_COMMAND("dequantize", "Float weights back from a quantized checkpoint", [](CLI::App* cmd) {
  auto load = std::make_shared<LoadFlags>();
  auto out = std::make_shared<std::string>();
  cmd->add_option("--model,-m", load->model, "Quantized model folder")->required();
  cmd->add_option("--class", load->class_name, "Model class (default: from config.json)");
  cmd->add_option("--out,-o", *out, "Output folder")->required();
  cmd->add_option("--threads,-t", load->threads, "Threads");
  cmd->final_callback([load] { load->model = resolve_model_arg(load->model, load->variant); });
  return [load, out] {
    setup_threads(load->threads);
    FromPretrainedOptions options;
    options.dtype = "auto";
    auto model = load_with(*load, options);
    model->dequantize();
    model->save_pretrained(*out);
    copy_tokenizer_files(load->model, *out);
    std::cout << "dequantized " << model->class_name << ", saved to " << *out << "\n";
    return 0;
  };
});

}  // namespace tfcpp
