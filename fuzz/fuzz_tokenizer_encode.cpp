// Fuzz target: encode + decode of arbitrary text (invalid UTF-8 included) with real tokenizers of each model kind:
// byte-level BPE, WordPiece, Unigram and SentencePiece-style BPE with byte fallback.
#include "fuzz_util.h"

#include "transformers/tokenizer.h"

#include <vector>

#ifndef TFCPP_SOURCE_DIR
#error "TFCPP_SOURCE_DIR must be defined"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::vector<transformers::Tokenizer> tokenizers = [] {
    std::vector<transformers::Tokenizer> out;
    const std::string base = std::string(TFCPP_SOURCE_DIR) + "/../shared/fixtures/tokenizers/";
    for (const char* name : {"gpt2-bpe", "bert-uncased-wordpiece", "t5-unigram", "llama-spm-bpe"}) {
      try {
        out.push_back(transformers::Tokenizer::from_file(base + name + "/tokenizer.json"));
      } catch (const transformers::Error&) {
        // a tokenizer kind the library doesn't read yet: fuzz the others
      }
    }
    out.push_back(transformers::Tokenizer::from_file(std::string(TFCPP_SOURCE_DIR) + "/models/stories260K/tokenizer.json"));
    return out;
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const auto& tokenizer : tokenizers) {
    tfcpp_fuzz::expect_clean([&] {
      auto ids = tokenizer.encode(text, true);
      (void)tokenizer.decode(ids, false);
      (void)tokenizer.decode(ids, true);
    });
  }
  return 0;
}
