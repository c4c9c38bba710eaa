// pytorch_model.bin (torch.save zip) loading through the restricted unpickler; files written by Python torch 1.13.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/models/llama.h"
#include "transformers/torch_bin.h"

#include <c10/core/InferenceMode.h>

#include <fstream>

using namespace transformers;
using namespace tfcpp_test;

namespace {

std::string bin_dir() { return source_dir() + "/tests/fixtures/bin"; }

at::Tensor logits_of(PreTrainedModel& model, const at::Tensor& ids) {
  c10::InferenceMode guard;
  ModelInputs in;
  in.input_ids = ids;
  return model.forward(in).logits;
}

TEST(TorchBin, OrderedDictStateDictFromSavePretrained) {
  auto tensors = load_torch_bin(bin_dir() + "/llama-tied-bin/pytorch_model.bin");
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  ASSERT_TRUE(by_name.count("model.embed_tokens.weight"));
  EXPECT_EQ(by_name["model.embed_tokens.weight"].sizes(), (std::vector<int64_t>{40, 16}));
  EXPECT_EQ(by_name["model.embed_tokens.weight"].scalar_type(), at::kFloat);
}

class TorchBinModel : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchBinModel, LoadsWithTransformersOutputs) {
  auto model = AutoModelForCausalLM::from_pretrained(bin_dir() + "/" + GetParam());
  EXPECT_TRUE(model->loading_info.missing_keys.empty());
  EXPECT_TRUE(model->loading_info.unexpected_keys.empty());
  auto expected = read_tensors(bin_dir() + "/llama-tied-bin-expected.safetensors");
  at::Tensor logits = logits_of(*model, expected["input_ids"]);
  double tolerance = GetParam() == "llama-bf16-bin" ? 0.1 : 1e-5;
  EXPECT_LT(max_abs_diff(logits, expected["logits"]), tolerance);
  auto typed = std::dynamic_pointer_cast<LlamaForCausalLM>(model);
  EXPECT_TRUE(typed->lm_head->weight.is_same(typed->model->embed_tokens->weight));
}

INSTANTIATE_TEST_SUITE_P(Files, TorchBinModel,
                         ::testing::Values("llama-tied-bin", "llama-tied-bin-sharded", "llama-bf16-bin"));

TEST(TorchBin, Bfloat16KeepsItsDtypeWithAuto) {
  FromPretrainedOptions options;
  options.dtype = "auto";
  EXPECT_EQ(AutoModelForCausalLM::from_pretrained(bin_dir() + "/llama-bf16-bin", options)->dtype(), at::kBFloat16);
}

TEST(TorchBin, ViewsAndStridesAreKept) {
  auto tensors = load_torch_bin(bin_dir() + "/views.bin");
  std::map<std::string, at::Tensor> t(tensors.begin(), tensors.end());
  at::Tensor base = at::arange(12, at::kFloat).view({3, 4});
  EXPECT_TRUE(at::equal(t["same"], base));
  EXPECT_TRUE(at::equal(t["t"], base.t()));
  EXPECT_TRUE(at::equal(t["row"], base[1]));
  EXPECT_EQ(t["t"].data_ptr(), t["same"].data_ptr());  // one storage, as in Python
}

TEST(TorchBin, RefusesArbitraryGlobals) {
  try {
    load_torch_bin(bin_dir() + "/evil.bin");
    FAIL() << "a pickle calling os.system was accepted";
  } catch (const CheckpointError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("evil.bin"), std::string::npos) << what;
    EXPECT_NE(what.find("refusing"), std::string::npos) << what;
  }
}

TEST(TorchBin, CorruptAndTruncatedFiles) {
  TempDir tmp;
  {
    std::ofstream out(tmp / "garbage.bin", std::ios::binary);
    out << "this is not a zip archive at all";
  }
  EXPECT_THROW(load_torch_bin(tmp / "garbage.bin"), CheckpointError);
  std::ifstream in(bin_dir() + "/llama-tied-bin/pytorch_model.bin", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  {
    std::ofstream out(tmp / "cut.bin", std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  }
  try {
    load_torch_bin(tmp / "cut.bin");
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.bin"), std::string::npos);
  }
}

}  // namespace
