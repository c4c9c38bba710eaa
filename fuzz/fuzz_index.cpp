// Fuzz target: a sharded checkpoint's *.index.json, resolved against a fixed model folder that holds one real shard.
#include "fuzz_util.h"

#include "transformers/checkpoint_files.h"

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("tfcpp-fuzz-index-" + std::to_string(::getpid()));
    fs::create_directories(d / "sub");
    std::ofstream(d / "model-00001-of-00002.safetensors") << "x";
    std::ofstream(d / "sub" / "model-00002-of-00002.safetensors") << "x";
    return d;
  }();
  {
    std::ofstream out(dir / "model.safetensors.index.json", std::ios::trunc | std::ios::binary);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  tfcpp_fuzz::expect_clean([&] { (void)transformers::find_weight_files(dir.string(), ""); });
  return 0;
}
