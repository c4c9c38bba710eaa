// Fuzz target: safetensors header and layout validation (safetensors::load_file on arbitrary bytes). Every tensor
// of an accepted file is read end to end, so an out-of-bounds view would fault here.
#include "fuzz_util.h"

#include "transformers/safetensors.h"

#include <ATen/ATen.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tfcpp_fuzz::MemFile file(data, size);
  tfcpp_fuzz::expect_clean([&] {
    for (auto& [name, tensor] : transformers::safetensors::load_file(file.path())) {
      if (tensor.numel() > 0) (void)tensor.view(at::kByte).sum().item<int64_t>();
    }
  });
  return 0;
}
