// Device maps (device_map.h): module sizes, accelerate's strategies on a tiny Llama with hand-computed expected
// maps, explicit maps, disk offload (same logits, lower resident memory), the offload folder, no-split errors.
#include "test_util.h"

#include "transformers/device_map.h"
#include "transformers/errors.h"
#include "transformers/models/llama.h"

#include <c10/core/InferenceMode.h>

using namespace transformers;
using namespace tfcpp_test;

namespace {

// Sizes (fp32): embed 32x16 = 2048 B; each layer q/k/v/o 4 x 1024 + gate/up/down 3 x 2048 + 2 norms x 64 = 10368 B
// (our rotary inv_freq is not a registered buffer: transformers counts 8 B more per layer); norm 64 B; lm_head 2048 B;
// model 33216 B; total 35264 B.
std::shared_ptr<LlamaConfig> tiny_llama(int64_t hidden = 16, int64_t inter = 32, int64_t layers = 3,
                                        int64_t vocab = 32) {
  auto config = std::make_shared<LlamaConfig>();
  config->vocab_size = vocab;
  config->hidden_size = hidden;
  config->intermediate_size = inter;
  config->num_hidden_layers = layers;
  config->num_attention_heads = 4;
  config->num_key_value_heads = 4;
  config->max_position_embeddings = 64;
  config->tie_word_embeddings = false;
  return config;
}

at::Tensor logits_of(PreTrainedModel& model, const at::Tensor& ids) {
  c10::InferenceMode guard;
  ModelInputs in;
  in.input_ids = ids;
  return model.forward(in).logits;
}

at::Tensor some_ids(int64_t vocab) { return at::tensor({1, 5, 9, 3, 2, 17, 30, 11}, at::kLong).remainder(vocab).unsqueeze(0); }

MaxMemory memory(std::map<std::string, std::string> m) { return get_max_memory(m); }

const std::vector<std::string> kNoSplit{"LlamaDecoderLayer"};

}  // namespace

TEST(DeviceMap, ModuleSizesAndNoSplitModules) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama());
  auto sizes = compute_module_sizes(*model);
  EXPECT_EQ(sizes[""], 35264);
  EXPECT_EQ(sizes["model.layers.1"], 10368);
  EXPECT_EQ(sizes["model.embed_tokens"], 2048);
  EXPECT_EQ(sizes["lm_head.weight"], 2048);
  EXPECT_EQ(compute_module_sizes(*model, at::kBFloat16)[""], 35264 / 2);
  EXPECT_EQ(model->_get_no_split_modules("auto"), kNoSplit);
}

TEST(DeviceMap, NoSplitModulesMissingIsTransformersError) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama());
  model->_no_split_modules.reset();
  try {
    model->_get_no_split_modules("balanced");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("LlamaForCausalLM does not support `device_map='balanced'`. To implement "
                                         "support, the model class needs to implement the `_no_split_modules` "
                                         "attribute."),
              std::string::npos)
        << e.what();
  }
}

// cpu 30000 B. accelerate's walk: while "model" is treated the largest remaining layer is lm_head (2048), so
// "model" (33216 > 27952) is split; then each decoder layer reserves 10368: 19632 B hold embed + layer 0.
TEST(DeviceMap, AutoOnCpuOffloadsTheRestToDisk) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama());
  const DeviceMap expected{{"model.embed_tokens", "cpu"}, {"model.layers.0", "cpu"}, {"model.layers.1", "disk"},
                           {"model.layers.2", "disk"},    {"model.norm", "disk"},    {"lm_head", "disk"}};
  EXPECT_EQ(infer_auto_device_map(*model, memory({{"cpu", "30000"}}), kNoSplit), expected);
  // Without accelerators balanced == sequential (get_balanced_memory returns max_memory unchanged).
  EXPECT_EQ(get_balanced_memory(*model, memory({{"cpu", "30000"}}), kNoSplit), memory({{"cpu", "30000"}}));
  // Everything fits: one entry for the whole model.
  EXPECT_EQ(infer_auto_device_map(*model, memory({{"cpu", "1MB"}}), kNoSplit), (DeviceMap{{"", "cpu"}}));
}

// Two (planned) accelerators and a cpu.
TEST(DeviceMap, StrategiesOverAccelerators) {
  auto model = std::make_shared<LlamaForCausalLM>(tiny_llama());
  const MaxMemory max_memory = memory({{"0", "40000"}, {"1", "40000"}, {"cpu", "100000"}});
  ASSERT_EQ(max_memory, (MaxMemory{{"cuda:0", 40000}, {"cuda:1", 40000}, {"cpu", 100000}}));
  // sequential: "model" is weighed against 40000 - 2048 (lm_head, the largest layer left once "model" is popped)
  // and fits; lm_head follows: the whole model on cuda:0.
  EXPECT_EQ(infer_auto_device_map(*model, max_memory, kNoSplit), (DeviceMap{{"", "cuda:0"}}));
  // sequential on 20000 + 20000: cuda:0 (main device, 10368 reserved) takes embed; layer 0 fills cuda:1 (no
  // reservation there); layer 1 does not fit beside it and goes to the cpu with the rest.
  EXPECT_EQ(infer_auto_device_map(*model, memory({{"0", "20000"}, {"1", "20000"}, {"cpu", "100000"}}), kNoSplit),
            (DeviceMap{{"model.embed_tokens", "cuda:0"}, {"model.layers.0", "cuda:1"}, {"model.layers.1", "cpu"},
                       {"model.layers.2", "cpu"}, {"model.norm", "cpu"}, {"lm_head", "cpu"}}));
  // balanced: per_gpu = 35264 / 2 + int(1.25 * max(10368 no-split block, 1175 mean of the 30 leaf modules)).
  MaxMemory balanced = get_balanced_memory(*model, max_memory, kNoSplit);
  EXPECT_EQ(balanced, (MaxMemory{{"cuda:0", 17632 + 12960}, {"cuda:1", 40000}, {"cpu", 100000}}));
  EXPECT_EQ(infer_auto_device_map(*model, balanced, kNoSplit),
            (DeviceMap{{"model.embed_tokens", "cuda:0"}, {"model.layers.0", "cuda:0"}, {"model.layers.1", "cuda:1"},
                       {"model.layers.2", "cuda:1"}, {"model.norm", "cuda:1"}, {"lm_head", "cuda:1"}}));
  // balanced_low_0: cuda:0 gets max(0, 35264 - 40000) = 0 bytes, so everything lands on cuda:1 (merged to "").
  MaxMemory low0 = get_balanced_memory(*model, max_memory, kNoSplit, std::nullopt, true);
  EXPECT_EQ(low0, (MaxMemory{{"cuda:0", 0}, {"cuda:1", 40000}, {"cpu", 100000}}));
  EXPECT_EQ(infer_auto_device_map(*model, low0, kNoSplit), (DeviceMap{{"", "cuda:1"}}));
}

TEST(DeviceMap, CleanDeviceMapMergesUniformChildren) {
  DeviceMap map{{"a.0", "cpu"}, {"a.1", "cpu"}, {"b", "disk"}};
  EXPECT_EQ(clean_device_map(map), (DeviceMap{{"a", "cpu"}, {"b", "disk"}}));
  EXPECT_EQ(device_for(DeviceMap{{"model.layers", "disk"}, {"model.layers.1", "cpu"}}, "model.layers.1.mlp.weight"),
            "cpu");
  EXPECT_THROW(device_for(DeviceMap{{"model.layers.1", "cpu"}}, "model.layers.10.x"), ValueError);
}

TEST(DeviceMap, BadMaxMemoryAndDevicesAreValueErrors) {
  EXPECT_THROW(get_max_memory({{"gpu", "1GB"}}), ValueError);
  EXPECT_THROW(get_max_memory({{"cpu", "lots"}}), ValueError);
  EXPECT_THROW(normalize_device("tpu:0"), ValueError);
  EXPECT_GT(get_max_memory()[0].second, 0);
}

TEST(DeviceMap, FromPretrainedAutoAndExplicitMapsGiveSameLogits) {
  TempDir tmp;
  torch::manual_seed(0);
  auto fresh = std::make_shared<LlamaForCausalLM>(tiny_llama());
  fresh->save_pretrained(tmp / "m");
  auto reference = LlamaForCausalLM::from_pretrained(tmp / "m");
  const at::Tensor ids = some_ids(32), expected = logits_of(*reference, ids);

  FromPretrainedOptions o;
  o.device_map = "auto";
  o.max_memory = {{"cpu", "30000"}};
  auto model = LlamaForCausalLM::from_pretrained(tmp / "m", o);
  EXPECT_EQ(model->hf_device_map,
            (DeviceMap{{"model.embed_tokens", "cpu"}, {"model.layers.0", "cpu"}, {"model.layers.1", "disk"},
                       {"model.layers.2", "disk"}, {"model.norm", "disk"}, {"lm_head", "disk"}}));
  EXPECT_TRUE(at::equal(logits_of(*model, ids), expected));
  EXPECT_TRUE(at::equal(logits_of(*model, ids), expected)) << "a second forward re-reads the released pages";

  FromPretrainedOptions e;
  e.device_map = {{"model.embed_tokens", "cpu"}, {"model.layers", "disk"}, {"model.norm", "cpu"}, {"lm_head", 0}};
  EXPECT_THROW(LlamaForCausalLM::from_pretrained(tmp / "m", e), ValueError) << "cuda:0 in a CPU build";
  e.device_map["lm_head"] = "cpu";
  auto explicit_map = LlamaForCausalLM::from_pretrained(tmp / "m", e);
  EXPECT_TRUE(at::equal(logits_of(*explicit_map, ids), expected));
  e.device_map.erase("lm_head");
  try {
    LlamaForCausalLM::from_pretrained(tmp / "m", e);
    FAIL() << "expected ValueError";
  } catch (const ValueError& err) {
    EXPECT_NE(std::string(err.what()).find("does not give any device for the following parameters: lm_head.weight"),
              std::string::npos)
        << err.what();
  }
  FromPretrainedOptions bad;
  bad.device_map = "everywhere";
  EXPECT_THROW(LlamaForCausalLM::from_pretrained(tmp / "m", bad), ValueError);
}

// A dtype change means the checkpoint file no longer holds the weights as loaded: they go to the offload folder.
TEST(DeviceMap, OffloadFolderInAccelerateLayout) {
  TempDir tmp;
  torch::manual_seed(1);
  std::make_shared<LlamaForCausalLM>(tiny_llama())->save_pretrained(tmp / "m");
  FromPretrainedOptions o;
  o.dtype = "bfloat16";
  auto reference = LlamaForCausalLM::from_pretrained(tmp / "m", o);
  o.device_map = {{"model.embed_tokens", "cpu"}, {"model.layers", "disk"}, {"model.norm", "cpu"}, {"lm_head", "cpu"}};
  EXPECT_THROW(LlamaForCausalLM::from_pretrained(tmp / "m", o), ValueError) << "no offload_folder";
  o.offload_folder = tmp / "offload";
  auto model = LlamaForCausalLM::from_pretrained(tmp / "m", o);
  json index = read_json(tmp / "offload/index.json");
  ASSERT_TRUE(index.contains("model.layers.0.mlp.up_proj.weight"));
  EXPECT_EQ(index["model.layers.0.mlp.up_proj.weight"]["dtype"], "bfloat16");
  EXPECT_EQ(index["model.layers.0.mlp.up_proj.weight"]["shape"], json({32, 16}));
  EXPECT_EQ(std::filesystem::file_size(tmp / "offload/model.layers.0.mlp.up_proj.weight.dat"), 32u * 16u * 2u);
  EXPECT_FALSE(index.contains("lm_head.weight"));
  EXPECT_TRUE(at::equal(logits_of(*model, some_ids(32)), logits_of(*reference, some_ids(32))));
}

// Peak resident memory of a forward with every decoder layer on disk vs the same model in memory.
TEST(DeviceMap, DiskOffloadKeepsPeakResidentMemoryBelowTheLayers) {
  TempDir tmp;
  torch::manual_seed(2);
  auto config = tiny_llama(512, 1536, 8, 256);
  std::make_shared<LlamaForCausalLM>(config)->save_pretrained(tmp / "m");
  const at::Tensor ids = some_ids(256);
  int64_t layer_bytes = 0;
  at::Tensor expected;
  {
    auto in_memory = LlamaForCausalLM::from_pretrained(tmp / "m");
    layer_bytes = compute_module_sizes(*in_memory)["model.layers"];
    expected = logits_of(*in_memory, ids);
  }
  FromPretrainedOptions o;
  o.device_map = {{"model.embed_tokens", "cpu"}, {"model.layers", "disk"}, {"model.norm", "cpu"}, {"lm_head", "cpu"}};
  auto model = LlamaForCausalLM::from_pretrained(tmp / "m", o);
  reset_peak_rss();
  const int64_t before = current_rss_bytes();
  ASSERT_LT(peak_rss_bytes() - before, 4 << 20) << "clear_refs must reset VmHWM";
  at::Tensor logits = logits_of(*model, ids);
  const int64_t offloaded_peak = peak_rss_bytes() - before;
  EXPECT_TRUE(at::equal(logits, expected));

  auto in_memory = LlamaForCausalLM::from_pretrained(tmp / "m");
  reset_peak_rss();
  const int64_t before_mem = current_rss_bytes();
  logits_of(*in_memory, ids);
  const int64_t in_memory_peak = peak_rss_bytes() - before_mem;
  std::cout << "[disk offload] decoder layers " << layer_bytes / 1e6 << " MB; forward peak RSS growth: offloaded "
            << offloaded_peak / 1e6 << " MB, in memory " << in_memory_peak / 1e6 << " MB\n";
  EXPECT_LT(offloaded_peak, layer_bytes / 4);
}
