// Fuzz target: config.json (read_json_file bounds + PretrainedConfig::from_dict typed fields) and
// generation_config.json, both from the same bytes.
#include "fuzz_util.h"

#include "transformers/config.h"
#include "transformers/generation_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tfcpp_fuzz::MemFile file(data, size);
  tfcpp_fuzz::expect_clean([&] {
    transformers::PretrainedConfig config;
    config.from_dict(transformers::read_json_file(file.path()), file.path());
    (void)config.to_json_string();
  });
  tfcpp_fuzz::expect_clean([&] {
    transformers::GenerationConfig config;
    config.from_dict(transformers::read_json_file(file.path(), "generation config"), file.path());
    (void)config.to_dict().dump();
  });
  return 0;
}
