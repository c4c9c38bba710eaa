// PretrainedConfig / GenerationConfig: config.json round trips with transformers' diff semantics.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/generation_config.h"
#include "transformers/models/llama.h"

#include <fstream>

using namespace transformers;
using namespace tfcpp_test;

namespace {

TEST(Config, FixtureConfigRoundTripsExactly) {
  // What transformers wrote is what we write back (keys and values), for every llama fixture.
  for (const char* name : {"llama-for-causal-lm", "llama-for-causal-lm-gqa"}) {
    std::string path = fixture(name) + "/model/config.json";
    json original = read_json(path);
    auto config = AutoConfig::from_pretrained(path);
    json written = config->to_diff_dict();
    EXPECT_EQ(written, original) << name << "\nwritten:  " << written.dump() << "\noriginal: " << original.dump();
  }
}

TEST(Config, EmbeddedModelConfigLoads) {
  auto config = std::dynamic_pointer_cast<LlamaConfig>(AutoConfig::from_pretrained(source_dir() + "/models/stories260K"));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->hidden_size, 64);
  EXPECT_EQ(config->kv_heads(), 4);
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_EQ(config->torch_dtype.value_or(""), "float32");
  EXPECT_EQ(config->eos_token_id.value(), TokenIds{2});
}

TEST(Config, UnknownKeysArePreserved) {
  TempDir tmp;
  json dict = read_json(fixture("llama-for-causal-lm") + "/model/config.json");
  dict["my_custom_key"] = {{"nested", {1, 2, 3}}};
  dict["another"] = "value";
  LlamaConfig config;
  config.from_dict(dict, "test");
  EXPECT_EQ(config.extra["another"], "value");
  config.save_pretrained(tmp.str());
  json saved = read_json(tmp / "config.json");
  EXPECT_EQ(saved["my_custom_key"], dict["my_custom_key"]);
  EXPECT_EQ(saved["another"], "value");
}

TEST(Config, DefaultsAndDiff) {
  LlamaConfig config;
  json diff = config.to_diff_dict();
  // Family fields are always written; base fields only when they differ from PretrainedConfig().
  EXPECT_EQ(diff["hidden_size"], 4096);
  EXPECT_EQ(diff["num_key_value_heads"], nullptr);
  EXPECT_EQ(diff["tie_word_embeddings"], false);
  EXPECT_EQ(diff["bos_token_id"], 1);
  EXPECT_FALSE(diff.contains("return_dict"));
  EXPECT_FALSE(diff.contains("pruned_heads"));
  EXPECT_FALSE(diff.contains("pad_token_id"));
  EXPECT_EQ(diff["model_type"], "llama");
  config.output_hidden_states = true;
  config.pruned_heads[1] = {0, 2};
  json more = config.to_diff_dict();
  EXPECT_EQ(more["output_hidden_states"], true);
  EXPECT_EQ(more["pruned_heads"], json({{"1", {0, 2}}}));
  LlamaConfig back;
  back.from_dict(more, "test");
  EXPECT_EQ(back.pruned_heads, config.pruned_heads);
  EXPECT_TRUE(back.output_hidden_states);
}

TEST(Config, LabelsAndAliases) {
  LlamaConfig config;
  config.from_dict({{"num_labels", 3}}, "test");
  EXPECT_EQ(config.num_labels(), 3);
  EXPECT_EQ(config.id2label.at(2), "LABEL_2");
  config.from_dict({{"id2label", {{"0", "neg"}, {"1", "pos"}}}}, "test");
  EXPECT_EQ(config.num_labels(), 2);
  EXPECT_EQ(config.label2id.at("pos"), 1);
  EXPECT_EQ(config.get("num_labels"), 2);
  EXPECT_EQ(config.get("hidden_size"), 4096);
  EXPECT_EQ(config.get("_attn_implementation"), "eager");
}

TEST(Config, EosListAndAttnImplementation) {
  LlamaConfig config;
  config.from_dict({{"eos_token_id", {2, 7}}, {"_attn_implementation", "sdpa"}}, "test");
  EXPECT_EQ(config.eos_token_id.value(), (TokenIds{2, 7}));
  EXPECT_EQ(config._attn_implementation(), "sdpa");
  json dict = config.to_dict();
  EXPECT_EQ(dict["eos_token_id"], json({2, 7}));
  EXPECT_FALSE(dict.contains("_attn_implementation"));
}

TEST(Config, TypeErrorsNameFileAndKey) {
  LlamaConfig config;
  try {
    config.from_dict({{"num_hidden_layers", "two"}}, "some/config.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("some/config.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("num_hidden_layers"), std::string::npos);
  }
  EXPECT_THROW(config.from_dict({{"tie_word_embeddings", 1}}, "x"), ConfigError);
  EXPECT_THROW(config.from_dict({{"eos_token_id", "2"}}, "x"), ConfigError);
  EXPECT_THROW(config.from_dict(json::array(), "x"), ConfigError);
}

TEST(Config, MalformedJsonFile) {
  TempDir tmp;
  {
    std::ofstream out(tmp / "config.json");
    out << "{\"model_type\": \"llama\", ";
  }
  try {
    AutoConfig::from_pretrained(tmp.str());
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("invalid JSON"), std::string::npos);
  }
}

TEST(GenerationConfig, FixtureRoundTrip) {
  std::string path = fixture("llama-for-causal-lm") + "/model/generation_config.json";
  json original = read_json(path);
  GenerationConfig config = GenerationConfig::from_pretrained(fixture("llama-for-causal-lm") + "/model");
  EXPECT_EQ(config.pad_token_id.value(), 0);
  EXPECT_TRUE(config._from_model_config);
  EXPECT_EQ(config.to_diff_dict(), original);
}

TEST(GenerationConfig, FromModelConfigAndSave) {
  TempDir tmp;
  LlamaConfig model_config;
  model_config.from_dict(read_json(fixture("llama-for-causal-lm") + "/model/config.json"), "test");
  GenerationConfig config = GenerationConfig::from_model_config(model_config);
  EXPECT_EQ(config.bos_token_id.value(), 1);
  EXPECT_EQ(config.eos_token_id.value(), TokenIds{2});
  EXPECT_EQ(config.pad_token_id.value(), 0);
  EXPECT_EQ(config.max_length, 20);
  config.save_pretrained(tmp.str());
  json saved = read_json(tmp / "generation_config.json");
  EXPECT_EQ(saved, read_json(fixture("llama-for-causal-lm") + "/model/generation_config.json"));
  config.do_sample = true;
  config.top_k = 10;
  config.save_pretrained(tmp.str());
  GenerationConfig back = GenerationConfig::from_pretrained(tmp.str());
  EXPECT_TRUE(back.do_sample);
  EXPECT_EQ(back.top_k, 10);
}

TEST(GenerationConfig, Validation) {
  GenerationConfig config;
  config.num_beams = 0;
  EXPECT_THROW(config.validate(), GenerationError);
  config.num_beams = 2;
  config.num_return_sequences = 3;
  EXPECT_THROW(config.validate(), GenerationError);
  config.num_return_sequences = 1;
  config.top_p = 1.5;
  EXPECT_THROW(config.validate(), GenerationError);
}

TEST(Config, FileSizeStrings) {
  EXPECT_EQ(convert_file_size_to_int("5GB"), 5000000000LL);
  EXPECT_EQ(convert_file_size_to_int("200MB"), 200000000LL);
  EXPECT_EQ(convert_file_size_to_int("1GiB"), 1073741824LL);
  EXPECT_EQ(convert_file_size_to_int("23376"), 23376);
  EXPECT_EQ(convert_file_size_to_int("5Gb"), 625000000LL);
  EXPECT_THROW(convert_file_size_to_int("five gigs"), ValueError);
  EXPECT_EQ(add_variant("model.safetensors", "fp16"), "model.fp16.safetensors");
  EXPECT_EQ(add_variant("model.safetensors.index.json", "fp16"), "model.safetensors.index.fp16.json");
}

}  // namespace
