// Fuzz target: tokenizer.json parsing (every component type), then one encode/decode round if it loads.
#include "fuzz_util.h"

#include "transformers/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tfcpp_fuzz::MemFile file(data, size);
  tfcpp_fuzz::expect_clean([&] {
    auto tokenizer = transformers::Tokenizer::from_file(file.path());
    auto ids = tokenizer.encode("Hello, wörld! 123  \t ünïcode ✓", true);
    (void)tokenizer.decode(ids, false);
  });
  return 0;
}
