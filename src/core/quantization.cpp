// Port of transformers/quantizers/{base,auto}.py and integrations/bitsandbytes.py (get_keys_to_not_convert,
// _replace_with_bnb_linear) for the weight-only methods tfcpp_int8 / tfcpp_int4 (layout in quantization.h).
#include "pch.h"

#include "transformers/quantization.h"

#include "transformers/errors.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <set>

namespace transformers {

namespace {

const char* kMethods = "tfcpp_int8, tfcpp_int4";

// A layer a quantizer converts: an nn::Linear or a pytorch_utils Conv1D (transposed weight), as bitsandbytes'
// replace_with_bnb_linear converts both.
struct Layer {
  nn::Linear* linear = nullptr;
  nn::Conv1D* conv = nullptr;
  const at::Tensor& float_weight() const { return linear ? linear->weight : conv->weight; }
};

// Every Linear and Conv1D by dotted module name, in module order.
std::vector<std::pair<std::string, Layer>> named_layers(PreTrainedModel& model) {
  std::vector<std::pair<std::string, Layer>> out;
  for (const auto& item : model.named_modules("", false)) {
    if (auto* linear = dynamic_cast<nn::Linear*>(item.value().get())) out.push_back({item.key(), {linear, nullptr}});
    else if (auto* conv = dynamic_cast<nn::Conv1D*>(item.value().get())) out.push_back({item.key(), {nullptr, conv}});
  }
  return out;
}

// Parameters shared by several names (tied), as accelerate's find_tied_parameters.
std::set<const void*> tied_tensors(PreTrainedModel& model) {
  std::map<const void*, int> count;
  for (const auto& p : model.named_parameters(true)) ++count[p.value().unsafeGetTensorImpl()];
  std::set<const void*> out;
  for (const auto& [id, n] : count)
    if (n > 1) out.insert(id);
  return out;
}

// _replace_with_bnb_linear's filter: the child name itself, or a listed key naming this module or a parent.
bool excluded(const std::string& full_name, const std::vector<std::string>& modules_to_not_convert) {
  const std::string name = full_name.substr(full_name.rfind('.') == std::string::npos ? 0 : full_name.rfind('.') + 1);
  if (std::find(modules_to_not_convert.begin(), modules_to_not_convert.end(), name) != modules_to_not_convert.end())
    return true;
  return std::any_of(modules_to_not_convert.begin(), modules_to_not_convert.end(), [&](const std::string& key) {
    return full_name.find(key + ".") != std::string::npos || key == full_name;
  });
}

// The layers a quantizer converts (float layers only: `tied` looks at the float weight).
std::vector<Layer> layers_to_convert(PreTrainedModel& model, const std::vector<std::string>& skip) {
  auto tied = tied_tensors(model);
  std::vector<Layer> out;
  for (const auto& [name, layer] : named_layers(model)) {
    if (excluded(name, skip)) continue;
    if (layer.conv && layer.conv->quantized) {  // already converted (its float weight is gone)
      out.push_back(layer);
      continue;
    }
    if (!tied.count(layer.float_weight().unsafeGetTensorImpl())) out.push_back(layer);
  }
  return out;
}

// A Conv1D takes the quantized Linear [nf, nx] `lin`: its "weight" parameter becomes the codes and the scale / zero
// become its buffers, all held in `lin` (one tensor each, whichever name reaches it).
void attach_quantized(nn::Conv1D& conv, std::shared_ptr<nn::Linear> lin) {
  conv.replace_parameter("weight", lin->weight);
  conv.rebind_parameter_slot("weight", &lin->weight);
  conv.weight = at::Tensor();
  conv.set_buffer("weight_scale", &lin->weight_scale, lin->weight_scale);
  if (lin->weight_zero.defined()) conv.set_buffer("weight_zero", &lin->weight_zero, lin->weight_zero);
  conv.quantized = std::move(lin);
}

void quantize_conv1d(nn::Conv1D& conv, int bits, int64_t group_size) {
  at::NoGradGuard no_grad;
  if (conv.quantized) throw ValueError("quantize_conv1d: the layer is already quantized");
  auto lin = std::make_shared<nn::Linear>(conv.nx, conv.nf, /*bias=*/false);
  lin->replace_parameter("weight", conv.weight.detach().t().contiguous());
  quantize_linear(*lin, bits, group_size);
  attach_quantized(conv, std::move(lin));
}

void dequantize_conv1d(nn::Conv1D& conv, c10::ScalarType dtype) {
  if (!conv.quantized) return;
  at::Tensor w = dequantize_linear_weight(*conv.quantized, dtype).t().contiguous();
  conv.rebind_parameter_slot("weight", &conv.weight);
  conv.replace_parameter("weight", w.set_requires_grad(true));
  conv.set_buffer("weight_scale", nullptr, at::Tensor());
  if (conv.quantized->weight_zero.defined()) conv.set_buffer("weight_zero", nullptr, at::Tensor());
  conv.quantized.reset();
}

void quantize_layer(const Layer& layer, int bits, int64_t group_size) {
  if (layer.linear && !layer.linear->quant_bits) quantize_linear(*layer.linear, bits, group_size);
  if (layer.conv && !layer.conv->quantized) quantize_conv1d(*layer.conv, bits, group_size);
}

}  // namespace

// ---- Config ----

TfcppQuantizationConfig TfcppQuantizationConfig::from_dict(const json& dict, const std::string& source) {
  if (!dict.is_object()) throw ValueError(source + ": quantization_config must be an object, got " + dict.dump());
  TfcppQuantizationConfig c;
  if (!dict.contains("quant_method") || !dict["quant_method"].is_string())
    throw ValueError(source + ": quantization_config has no \"quant_method\" (supported: " + kMethods + ")");
  c.quant_method = dict["quant_method"].get<std::string>();
  if (c.quant_method != "tfcpp_int8" && c.quant_method != "tfcpp_int4")
    throw ValueError(source + ": unknown quantization type, got " + c.quant_method + " - supported types are: " +
                     kMethods);
  if (dict.contains("group_size") && !dict["group_size"].is_null()) {
    if (!dict["group_size"].is_number_integer() || dict["group_size"].get<int64_t>() < 2 ||
        dict["group_size"].get<int64_t>() % 2)
      throw ValueError(source + ": group_size must be an even integer >= 2, got " + dict["group_size"].dump());
    c.group_size = dict["group_size"].get<int64_t>();
  }
  if (dict.contains("modules_to_not_convert") && !dict["modules_to_not_convert"].is_null()) {
    const json& list = dict["modules_to_not_convert"];
    if (!list.is_array()) throw ValueError(source + ": modules_to_not_convert must be a list of module names");
    c.modules_to_not_convert.emplace();
    for (const auto& item : list) {
      if (!item.is_string()) throw ValueError(source + ": modules_to_not_convert holds a non-string " + item.dump());
      c.modules_to_not_convert->push_back(item.get<std::string>());
    }
  }
  return c;
}

json TfcppQuantizationConfig::to_dict() const {
  json j = {{"quant_method", quant_method}};
  if (quant_method == "tfcpp_int4") j["group_size"] = group_size;
  j["modules_to_not_convert"] = modules_to_not_convert ? json(*modules_to_not_convert) : json(nullptr);
  return j;
}

// ---- Per-layer conversion ----

void quantize_linear(nn::Linear& layer, int bits, int64_t group_size) {
  at::NoGradGuard no_grad;
  if (layer.quant_bits) throw ValueError("quantize_linear: the layer is already quantized");
  if (bits == 8) {
    auto [q, scale] = quantize_int8_per_channel(layer.weight);
    layer.replace_parameter("weight", q);
    layer.set_buffer("weight_scale", &layer.weight_scale, scale);
  } else if (bits == 4) {
    auto [packed, scale, zero] = quantize_int4_groupwise(layer.weight, group_size);
    layer.replace_parameter("weight", packed);
    layer.set_buffer("weight_scale", &layer.weight_scale, scale);
    layer.set_buffer("weight_zero", &layer.weight_zero, zero);
  } else {
    throw ValueError("quantize_linear: bits must be 8 or 4, got " + std::to_string(bits));
  }
  layer.quant_bits = bits;
  layer.quant_group_size = bits == 4 ? group_size : 0;
}

void dequantize_linear(nn::Linear& layer, c10::ScalarType dtype) {
  if (!layer.quant_bits) return;
  at::Tensor w = dequantize_linear_weight(layer, dtype);
  layer.replace_parameter("weight", w.set_requires_grad(true));
  layer.set_buffer("weight_scale", &layer.weight_scale, at::Tensor());
  if (layer.weight_zero.defined()) layer.set_buffer("weight_zero", &layer.weight_zero, at::Tensor());
  layer.quant_bits = 0;
  layer.quant_group_size = 0;
}

namespace {
// The quantized layout with uninitialised storage, for a checkpoint that carries the codes.
void make_quantized_layout(nn::Linear& layer, int bits, int64_t group_size) {
  const int64_t out = layer.out_features, in = layer.in_features;
  if (bits == 8) {
    layer.replace_parameter("weight", at::empty({out, in}, at::kChar));
    layer.set_buffer("weight_scale", &layer.weight_scale, at::empty({out}, at::kFloat));
  } else {
    const int64_t groups = (in + group_size - 1) / group_size;
    layer.replace_parameter("weight", at::empty({out, (in + 1) / 2}, at::kByte));
    layer.set_buffer("weight_scale", &layer.weight_scale, at::empty({out, groups}, at::kFloat));
    layer.set_buffer("weight_zero", &layer.weight_zero, at::empty({out, groups}, at::kByte));
  }
  layer.quant_bits = bits;
  layer.quant_group_size = bits == 4 ? group_size : 0;
}

void make_quantized_layout(const Layer& layer, int bits, int64_t group_size) {
  if (layer.linear) return make_quantized_layout(*layer.linear, bits, group_size);
  if (layer.conv->quantized) return;
  auto lin = std::make_shared<nn::Linear>(layer.conv->nx, layer.conv->nf, /*bias=*/false);
  make_quantized_layout(*lin, bits, group_size);
  attach_quantized(*layer.conv, std::move(lin));
}
}  // namespace

// ---- get_keys_to_not_convert ----

std::vector<std::string> get_keys_to_not_convert(PreTrainedModel& model) {
  model.tie_weights();
  // find_tied_parameters: every name of a tensor that several names share.
  std::map<const void*, std::vector<std::string>> names_by_tensor;
  std::vector<std::string> deduped;  // named_parameters() in Python drops later names of a shared tensor
  for (const auto& p : model.named_parameters(true)) {
    auto& names = names_by_tensor[p.value().unsafeGetTensorImpl()];
    if (names.empty()) deduped.push_back(p.key());
    names.push_back(p.key());
  }
  std::vector<std::string> tied_keys;
  for (const auto& [id, names] : names_by_tensor)
    if (names.size() > 1) tied_keys.insert(tied_keys.end(), names.begin(), names.end());

  if (tied_keys.empty()) {
    if (auto output = model.get_output_embeddings()) {
      std::vector<std::string> out;
      for (const auto& item : model.named_modules("", false))
        if (item.value().get() == output.get()) out.push_back(item.key());
      return out;
    }
  }
  const std::set<std::string> tied_set(tied_keys.begin(), tied_keys.end());
  std::vector<std::string> untouched(tied_set.begin(), tied_set.end());
  if (!deduped.empty() && std::find(tied_keys.begin(), tied_keys.end(), deduped.back()) == tied_keys.end())
    untouched.push_back(deduped.back());
  std::vector<std::string> filtered;
  for (std::string name : untouched) {
    for (const std::string suffix : {".weight", ".bias"})
      for (auto pos = name.find(suffix); pos != std::string::npos; pos = name.find(suffix))
        name.erase(pos, suffix.size());
    filtered.push_back(name);
  }
  return filtered;
}

// ---- HfQuantizer ----

HfQuantizer::HfQuantizer(TfcppQuantizationConfig config, bool pre)
    : quantization_config(std::move(config)), pre_quantized(pre) {}

void HfQuantizer::preprocess_model(PreTrainedModel& model) {
  model.is_quantized = true;
  model.quantization_method = quantization_config.quant_method;
  _process_model_before_weight_loading(model);
}

void HfQuantizer::postprocess_model(PreTrainedModel& model) { _process_model_after_weight_loading(model); }

void HfQuantizer::_process_model_before_weight_loading(PreTrainedModel& model) {
  modules_to_not_convert = quantization_config.modules_to_not_convert ? *quantization_config.modules_to_not_convert
                                                                       : get_keys_to_not_convert(model);
  // The resolved list is what the saved config records, so a reload converts exactly the same modules.
  quantization_config.modules_to_not_convert = modules_to_not_convert;
  if (!pre_quantized) return;
  for (const Layer& layer : layers_to_convert(model, modules_to_not_convert))
    make_quantized_layout(layer, quantization_config.bits(), quantization_config.group_size);
}

void HfQuantizer::_process_model_after_weight_loading(PreTrainedModel& model) {
  if (!pre_quantized)
    for (const Layer& layer : layers_to_convert(model, modules_to_not_convert))
      quantize_layer(layer, quantization_config.bits(), quantization_config.group_size);
  model.config->extra["quantization_config"] = quantization_config.to_dict();
}

void HfQuantizer::dequantize(PreTrainedModel& model) {
  const c10::ScalarType dtype = model.dtype();
  for (const auto& [name, layer] : named_layers(model)) {
    if (layer.linear) dequantize_linear(*layer.linear, dtype);
    else dequantize_conv1d(*layer.conv, dtype);
  }
  model.config->extra.erase("quantization_config");
  model.is_quantized = false;
  model.quantization_method.clear();
}

std::shared_ptr<HfQuantizer> AutoHfQuantizer::from_config(const json& quantization_config, bool pre_quantized) {
  return std::make_shared<HfQuantizer>(TfcppQuantizationConfig::from_dict(quantization_config), pre_quantized);
}

std::shared_ptr<HfQuantizer> AutoHfQuantizer::for_loading(const PretrainedConfig& config, const json& passed) {
  auto stored = config.extra.find("quantization_config");
  if (stored != config.extra.end() && !stored->is_null()) {
    auto q = std::make_shared<HfQuantizer>(
        TfcppQuantizationConfig::from_dict(*stored, config.name_or_path + "/config.json: quantization_config"), true);
    return q;
  }
  if (passed.is_null()) return nullptr;
  return std::make_shared<HfQuantizer>(TfcppQuantizationConfig::from_dict(passed), false);
}

int quantize_model(PreTrainedModel& model, const json& quantization_config) {
  if (model.hf_quantizer) throw ValueError(model.class_name + " is already quantized (" + model.quantization_method + ")");
  auto quantizer = AutoHfQuantizer::from_config(quantization_config, false);
  quantizer->preprocess_model(model);
  int converted = static_cast<int>(layers_to_convert(model, quantizer->modules_to_not_convert).size());
  quantizer->postprocess_model(model);
  model.hf_quantizer = quantizer;
  return converted;
}

// ---- PreTrainedModel members that belong to quantization ----

void PreTrainedModel::dequantize() {
  if (!hf_quantizer) throw ValueError("You need to first quantize your model in order to dequantize it");
  std::shared_ptr<HfQuantizer> quantizer = hf_quantizer;
  quantizer->dequantize(*this);
  hf_quantizer.reset();
}

namespace {
void refuse_if_quantized(const PreTrainedModel& model, const char* what) {
  if (model.is_quantized)
    throw ValueError(std::string(what) + " is not supported for `4-bit` or `8-bit` quantized models (" +
                     model.quantization_method +
                     "). Please use the model as it is, since the model has already been set to the correct devices "
                     "and casted to the correct `dtype`; call dequantize() first to get float weights back.");
}
}  // namespace

void PreTrainedModel::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  refuse_if_quantized(*this, "`.to`");
  torch::nn::Module::to(device, dtype, non_blocking);
}

void PreTrainedModel::to(torch::Dtype dtype, bool non_blocking) {
  refuse_if_quantized(*this, "`.to`");
  torch::nn::Module::to(dtype, non_blocking);
}

void PreTrainedModel::to(torch::Device device, bool non_blocking) {
  refuse_if_quantized(*this, "`.to`");
  torch::nn::Module::to(device, non_blocking);
}

void PreTrainedModel::half() {
  if (is_quantized)
    throw ValueError("`.half()` is not supported for quantized model. Please use the model as it is, since the model "
                     "has already been casted to the correct `dtype`.");
  torch::nn::Module::to(at::kHalf);
}

}  // namespace transformers
