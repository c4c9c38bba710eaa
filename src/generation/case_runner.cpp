#include "transformers/case_runner.h"

#include "transformers/errors.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

namespace transformers {

namespace {

void flatten(const json& data, std::vector<double>& out, std::vector<int64_t>& shape, size_t depth,
             const std::string& what) {
  if (data.is_array()) {
    if (shape.size() <= depth) shape.push_back(static_cast<int64_t>(data.size()));
    else if (shape[depth] != static_cast<int64_t>(data.size()))
      throw ValueError(what + ": ragged nested list at depth " + std::to_string(depth));
    for (const auto& item : data) flatten(item, out, shape, depth + 1, what);
  } else if (data.is_number() || data.is_boolean()) {
    if (depth != shape.size()) throw ValueError(what + ": ragged nested list");
    out.push_back(data.get<double>());
  } else {
    throw ValueError(what + ": tensor data must be numbers, got " + std::string(data.type_name()));
  }
}

}  // namespace

at::Tensor tensor_from_json(const json& spec, const std::string& what) {
  if (!spec.is_object() || !spec.contains("data"))
    throw ValueError(what + ": expected {\"dtype\", \"shape\", \"data\"}");
  std::string dtype = spec.value("dtype", "float32");
  std::vector<double> values;
  std::vector<int64_t> shape;
  flatten(spec["data"], values, shape, 0, what);
  at::Tensor t = at::tensor(values, at::kDouble);
  if (spec.contains("shape")) {
    std::vector<int64_t> declared = spec["shape"].get<std::vector<int64_t>>();
    int64_t n = 1;
    for (int64_t d : declared) n *= d;
    if (n != t.numel()) throw ValueError(what + ": shape does not match the number of values");
    shape = declared;
  }
  c10::ScalarType type = dtype == "int64" ? at::kLong : dtype == "int32" ? at::kInt : dtype == "bool" ? at::kBool
                         : dtype == "float64" ? at::kDouble : dtype == "float32" ? at::kFloat : at::kFloat;
  if (dtype != "int64" && dtype != "int32" && dtype != "bool" && dtype != "float64" && dtype != "float32")
    throw ValueError(what + ": unsupported dtype '" + dtype + "'");
  return t.to(type).reshape(shape);
}

json tensor_to_json(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  if (c.dim() == 0) return c.scalar_type() == at::kLong ? json(c.item<int64_t>()) : json(c.item<double>());
  json out = json::array();
  for (int64_t i = 0; i < c.size(0); ++i) out.push_back(tensor_to_json(c[i]));
  return out;
}

json read_case_inputs(const std::string& path) {
  json inputs = read_json_file(path, "inputs");
  if (!inputs.is_object()) throw ConfigError(path + ": expected a JSON object with 'forward' and/or 'generate'");
  return inputs;
}

namespace {

ModelInputs model_inputs_from(const json& entry, const std::string& what) {
  ModelInputs in;
  if (entry.contains("inputs")) {
    for (auto& [name, spec] : entry["inputs"].items()) {
      at::Tensor t = tensor_from_json(spec, what + " input '" + name + "'");
      if (name == "input_ids") in.input_ids = t;
      else if (name == "attention_mask") in.attention_mask = t;
      else if (name == "position_ids") in.position_ids = t;
      else if (name == "inputs_embeds") in.inputs_embeds = t;
      else if (name == "token_type_ids") in.token_type_ids = t;
      else if (name == "head_mask") in.head_mask = t;
      else if (name == "labels") in.labels = t;
      else if (name == "decoder_input_ids") in.decoder_input_ids = t;
      else if (name == "decoder_attention_mask") in.decoder_attention_mask = t;
      else if (name == "decoder_inputs_embeds") in.decoder_inputs_embeds = t;
      else if (name == "decoder_head_mask") in.decoder_head_mask = t;
      else if (name == "cross_attn_head_mask") in.cross_attn_head_mask = t;
      else if (name == "encoder_hidden_states") in.encoder_hidden_states = t;
      else if (name == "encoder_attention_mask") in.encoder_attention_mask = t;
      else in.extra[name] = t;
    }
  }
  if (entry.contains("kwargs")) {
    const json& kw = entry["kwargs"];
    for (auto& [key, value] : kw.items()) {
      if (key == "use_cache") in.use_cache = value.get<bool>();
      else if (key == "output_attentions") in.output_attentions = value.get<bool>();
      else if (key == "output_hidden_states") in.output_hidden_states = value.get<bool>();
      else if (key == "return_dict") continue;
      else if (value.is_object() && value.contains("data")) in.extra[key] = tensor_from_json(value, what + " " + key);
    }
  }
  return in;
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> run_forward_case(PreTrainedModel& model, const json& inputs) {
  if (!inputs.contains("forward")) throw ValueError("inputs have no 'forward' entry");
  const json& entry = inputs["forward"];
  std::string method = entry.value("method", "forward");
  ModelInputs in = model_inputs_from(entry, "forward");
  c10::InferenceMode guard;
  return model.call_method(method, in).named_tensors();
}

GenerateOutput run_generate_case(PreTrainedModel& model, const json& inputs, const std::string& name,
                                 const TokenCallback& streamer) {
  std::vector<std::string> names;
  if (inputs.contains("generate"))
    for (const auto& entry : inputs["generate"]) {
      names.push_back(entry.value("name", ""));
      if (names.back() != name) continue;
      ModelInputs in = model_inputs_from(entry, "generate " + name);
      GenerationConfig config = model.generation_config;
      if (entry.contains("kwargs")) config.from_dict(entry["kwargs"], "generate kwargs", false);
      at::Tensor input_ids = in.input_ids;
      in.input_ids = at::Tensor();
      return generate(model, input_ids, config, in, streamer);
    }
  std::string known;
  for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
  throw ValueError("no generate entry named '" + name + "' (available: " + (known.empty() ? "none" : known) + ")");
}

json generate_output_to_json(const GenerateOutput& output) {
  json out;
  out["sequences"] = tensor_to_json(output.sequences);
  if (output.sequences_scores.defined()) out["sequences_scores"] = tensor_to_json(output.sequences_scores.to(at::kDouble));
  // A model's own generate (Clvp: speech_ids, logits_per_text, ...).
  for (const auto& [name, t] : output.extra)
    out[name] = tensor_to_json(at::isFloatingType(t.scalar_type()) ? t.to(at::kDouble) : t);
  return out;
}

}  // namespace transformers
