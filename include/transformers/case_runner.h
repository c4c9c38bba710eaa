// Runs a case in the fixture format of shared/fixtures/README.md (inputs.json: a forward entry and named generate
// entries). `tfcpp forward/generate` and the parity tests both go through here, so they test the same path.
#pragma once

#include "transformers/generation.h"
#include "transformers/modeling_utils.h"

namespace transformers {

// {"dtype": "int64"|"float32"|..., "shape": [...], "data": nested lists} -> tensor. ValueError when malformed.
at::Tensor tensor_from_json(const json& spec, const std::string& what);
json tensor_to_json(const at::Tensor& t);

// Loads inputs.json; ConfigError naming the file if missing or malformed.
json read_case_inputs(const std::string& path);

// Runs the "forward" entry: its method, inputs and kwargs. Returns every output tensor by fixture name.
std::vector<std::pair<std::string, at::Tensor>> run_forward_case(PreTrainedModel& model, const json& inputs);

// Runs the generate entry called `name`. ValueError listing the names if absent.
GenerateOutput run_generate_case(PreTrainedModel& model, const json& inputs, const std::string& name,
                                 const TokenCallback& streamer = {});

// {"sequences": [[...]], "sequences_scores": [...]} (the latter for beam search).
json generate_output_to_json(const GenerateOutput& output);

}  // namespace transformers
