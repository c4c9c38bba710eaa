// Fuzz target: the restricted unpickler of pytorch_model.bin. The input is the pickle program (data.pkl); it is
// packed into a torch.save zip archive together with two small storages ("0" and "1") so persistent loads resolve.
#include "fuzz_util.h"

#include "transformers/torch_bin.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string archive;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* buf, size_t n) {
      archive.append(static_cast<const char*>(buf), n);
      return n;
    });
    writer.writeRecord("data.pkl", data, size);
    static const float storage[16] = {0};
    writer.writeRecord("data/0", storage, sizeof(storage));
    writer.writeRecord("data/1", storage, sizeof(storage) / 2);
    writer.writeEndOfFile();
  }
  tfcpp_fuzz::MemFile file(reinterpret_cast<const uint8_t*>(archive.data()), archive.size());
  tfcpp_fuzz::expect_clean([&] {
    for (auto& [name, tensor] : transformers::load_torch_bin(file.path())) {
      if (tensor.numel() > 0) (void)tensor.contiguous().view(at::kByte).sum().item<int64_t>();
    }
  });
  return 0;
}
