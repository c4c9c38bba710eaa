// Shared by the kernel tests: a greedy generation config that always runs `new_tokens` steps and returns every
// step's logits, for comparing the fused kernels with the plain ATen path.
#pragma once

#include "transformers/generation.h"
#include "transformers/modeling_utils.h"

namespace tfcpp_test {

inline transformers::GenerationConfig greedy_logits_config(const transformers::PreTrainedModel& model,
                                                           int64_t new_tokens) {
  transformers::GenerationConfig config = model.generation_config;
  config.max_new_tokens = new_tokens;
  config.min_new_tokens = new_tokens;
  config.do_sample = false;
  config.num_beams = 1;
  config.output_logits = true;
  config.return_dict_in_generate = true;
  if (!config.pad_token_id) config.pad_token_id = 0;
  return config;
}

}  // namespace tfcpp_test
