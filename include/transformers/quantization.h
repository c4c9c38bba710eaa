// Weight-only quantization, as transformers' quantizers/ (HfQuantizer, AutoHfQuantizer, get_keys_to_not_convert)
// with two methods of our own:
//   "tfcpp_int8": per-output-channel symmetric int8. weight int8 [out, in], weight_scale f32 [out];
//                 w = q * scale, scale = max|w_row| / 127.
//   "tfcpp_int4": group-wise asymmetric 4-bit (groups of group_size inputs, default 128; a last partial group when
//                 in % group_size != 0). weight uint8 [out, ceil(in/2)]: input 2j in the low nibble of byte j,
//                 input 2j+1 in the high nibble; weight_scale f32 [out, groups], weight_zero uint8 [out, groups];
//                 w = (q - zero) * scale with q, zero in [0, 15], scale = (max - min) / 15 over the group.
// Checkpoint keys are the Linear's own: "<module>.weight", "<module>.weight_scale", "<module>.weight_zero", and
// config.json carries "quantization_config" (as transformers stores config.quantization_config). pytorch_utils
// Conv1D layers (GPT-2, Clvp; float weight [in, out]) are converted too, as bitsandbytes converts them: their codes
// use the same [out, ...] layout under the same keys.
#pragma once

#include "transformers/config.h"
#include "transformers/modeling_utils.h"
#include "transformers/nn.h"

#include <memory>
#include <string>
#include <vector>

namespace transformers {

// utils/quantization_config.py QuantizationConfigMixin for our methods.
struct TfcppQuantizationConfig {
  std::string quant_method;  // "tfcpp_int8" | "tfcpp_int4"
  int64_t group_size = 128;  // tfcpp_int4 only
  std::optional<std::vector<std::string>> modules_to_not_convert;  // unset: get_keys_to_not_convert(model)
  int bits() const { return quant_method == "tfcpp_int4" ? 4 : 8; }
  // ValueError naming `source` for an unknown method, a bad group size, or a malformed list.
  static TfcppQuantizationConfig from_dict(const json& dict, const std::string& source = "quantization_config");
  json to_dict() const;
};

// quantizers/base.py HfQuantizer.
class HfQuantizer {
 public:
  HfQuantizer(TfcppQuantizationConfig config, bool pre_quantized);
  virtual ~HfQuantizer() = default;

  TfcppQuantizationConfig quantization_config;
  std::vector<std::string> modules_to_not_convert;
  bool pre_quantized;
  bool requires_calibration = false;
  bool requires_parameters_quantization = false;

  // Weight-only methods keep the model's activation dtype.
  virtual c10::ScalarType update_torch_dtype(c10::ScalarType torch_dtype) { return torch_dtype; }
  // Before weights load: marks the model quantized and, for a pre-quantized checkpoint, gives each converted Linear
  // the quantized layout so the checkpoint's codes and scales load into it.
  void preprocess_model(PreTrainedModel& model);
  // After weights load: quantizes the float weights just loaded (a float checkpoint quantized on load).
  void postprocess_model(PreTrainedModel& model);
  virtual bool is_serializable() const { return true; }
  virtual bool is_trainable() const { return false; }
  // Float weights back in every quantized Linear; the quantizer and config.quantization_config are dropped.
  void dequantize(PreTrainedModel& model);

 protected:
  virtual void _process_model_before_weight_loading(PreTrainedModel& model);
  virtual void _process_model_after_weight_loading(PreTrainedModel& model);
};

// quantizers/auto.py AutoHfQuantizer.
struct AutoHfQuantizer {
  static std::shared_ptr<HfQuantizer> from_config(const json& quantization_config, bool pre_quantized);
  // The quantizer from_pretrained uses: config.json's quantization_config (pre-quantized; an explicit one passed too
  // is ignored, as merge_quantization_configs does for non-GPTQ/AWQ methods), else the one passed; null if neither.
  static std::shared_ptr<HfQuantizer> for_loading(const PretrainedConfig& config, const json& passed);
};

// integrations/bitsandbytes.py get_keys_to_not_convert: the output head when untied, else the tied weights' modules
// and the last parameter's module.
std::vector<std::string> get_keys_to_not_convert(PreTrainedModel& model);

// Quantizes one model in place with `config` (what from_pretrained does for a float checkpoint). Returns the number
// of Linear / Conv1D modules converted.
int quantize_model(PreTrainedModel& model, const json& quantization_config);

// ---- Kernels (src/core/quantization_kernels.cpp) ----
// int8: codes [out, in] int8 and scale [out] f32 of a float weight [out, in].
std::pair<at::Tensor, at::Tensor> quantize_int8_per_channel(const at::Tensor& weight);
// int4: packed [out, ceil(in/2)] uint8, scale [out, groups] f32, zero [out, groups] uint8.
std::tuple<at::Tensor, at::Tensor, at::Tensor> quantize_int4_groupwise(const at::Tensor& weight, int64_t group_size);
// Two 4-bit codes per byte (input 2j low nibble, 2j+1 high) and back; `in_features` trims an odd tail.
at::Tensor pack_int4(const at::Tensor& codes);  // uint8 [out, in] values 0..15 -> [out, ceil(in/2)]
at::Tensor unpack_int4(const at::Tensor& packed, int64_t in_features);
// The float weight [out, in] a quantized Linear represents.
at::Tensor dequantize_linear_weight(const nn::Linear& layer, c10::ScalarType dtype = at::kFloat);
// Turns a float Linear into a quantized one in place (bits 8 or 4), and back.
void quantize_linear(nn::Linear& layer, int bits, int64_t group_size);
void dequantize_linear(nn::Linear& layer, c10::ScalarType dtype);

}  // namespace transformers
