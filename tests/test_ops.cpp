// The ops-* fixtures of PreTrainedModel operations that need a family with head pruning and an MLM head
// (Camembert): prune_heads, resize_token_embeddings. Other ops-* cases are covered in test_camembert.cpp.
#include "test_util.h"

#include "transformers/auto.h"
#include "transformers/case_runner.h"
#include "transformers/models/camembert.h"

#include <c10/core/InferenceMode.h>

using namespace transformers;
using namespace tfcpp_test;

namespace {

std::map<std::string, at::Tensor> run_forward(PreTrainedModel& model, const std::string& case_dir) {
  auto outputs = run_forward_case(model, read_case_inputs(case_dir + "/inputs.json"));
  return {outputs.begin(), outputs.end()};
}

void expect_outputs(const std::map<std::string, at::Tensor>& actual, const std::map<std::string, at::Tensor>& expected,
                    const std::string& prefix) {
  int compared = 0;
  for (const auto& [name, want] : expected) {
    bool prefixed = name.rfind("before.", 0) == 0 || name.rfind("after.", 0) == 0;
    if (prefix.empty() ? prefixed : name.rfind(prefix, 0) != 0) continue;
    std::string key = name.substr(prefix.size());
    ASSERT_TRUE(actual.count(key)) << key;
    EXPECT_TRUE(tensors_close(name, actual.at(key), want, 1e-4, 1e-4));
    ++compared;
  }
  EXPECT_GT(compared, 0) << prefix;
}

std::map<int64_t, std::vector<int64_t>> heads_from(const json& j) {
  std::map<int64_t, std::vector<int64_t>> out;
  for (auto& [layer, heads] : j.items()) out[std::stoll(layer)] = heads.get<std::vector<int64_t>>();
  return out;
}

TEST(OpsPruneHeads, PruneSaveReloadMatchesTransformers) {
  std::string dir = fixture("ops-prune-heads");
  json expected = read_json(dir + "/expected.json");
  auto reference = read_tensors(dir + "/expected.safetensors");

  auto model = model_from_pretrained(dir + "/model_unpruned", "CamembertModel");
  expect_outputs(run_forward(*model, dir), reference, "before.");

  model->prune_heads(heads_from(expected["heads_to_prune"]));
  expect_outputs(run_forward(*model, dir), reference, "");
  auto typed = std::dynamic_pointer_cast<RobertaModel>(model);
  ASSERT_TRUE(typed);
  std::vector<int64_t> heads_after;
  for (const auto& layer : *typed->encoder->layer) heads_after.push_back(layer->attention->self->num_attention_heads);
  EXPECT_EQ(heads_after, expected["heads_per_layer_after"].get<std::vector<int64_t>>());
  EXPECT_EQ(model->config->pruned_heads, heads_from(expected["config_pruned_heads_after"]));

  // transformers' pruned checkpoint: from_pretrained re-prunes before the smaller weights load.
  auto pruned = model_from_pretrained(dir + "/model", "CamembertModel");
  EXPECT_TRUE(pruned->loading_info.missing_keys.empty());
  EXPECT_TRUE(pruned->loading_info.unexpected_keys.empty());
  expect_outputs(run_forward(*pruned, dir), reference, "");

  // Our own save of the pruned model round-trips the same way.
  TempDir tmp;
  model->save_pretrained(tmp.str());
  EXPECT_EQ(read_json(tmp / "config.json")["pruned_heads"], expected["config_pruned_heads_after"]);
  auto reloaded = model_from_pretrained(tmp.str(), "CamembertModel");
  EXPECT_TRUE(reloaded->loading_info.missing_keys.empty());
  expect_outputs(run_forward(*reloaded, dir), reference, "");
  // Pruning the same heads again changes nothing (already-pruned heads are skipped).
  reloaded->prune_heads(heads_from(expected["heads_to_prune"]));
  expect_outputs(run_forward(*reloaded, dir), reference, "");
}

TEST(OpsResizeTokenEmbeddings, ShapesTyingAndOldRows) {
  std::string dir = fixture("ops-resize-token-embeddings");
  json expected = read_json(dir + "/expected.json");
  auto reference = read_tensors(dir + "/expected.safetensors");
  auto model = model_from_pretrained(dir + "/model", "CamembertForMaskedLM");
  auto before = run_forward(*model, dir);
  EXPECT_TRUE(tensors_close("before.logits", before["logits"], reference["before.logits"], 1e-4, 1e-4));

  auto embeddings = model->resize_token_embeddings(expected["requested_new_num_tokens"].get<int64_t>(),
                                                   expected["pad_to_multiple_of"].get<int64_t>());
  EXPECT_EQ(embeddings->weight.sizes().vec(), expected["new_embedding_shape"].get<std::vector<int64_t>>());
  EXPECT_EQ(model->config->get("vocab_size"), expected["config_vocab_size_after"]);
  auto head = model->get_output_embeddings();
  EXPECT_EQ(head->weight.sizes().vec(), expected["output_embedding_shape_after"].get<std::vector<int64_t>>());
  EXPECT_EQ(head->weight.is_same(embeddings->weight), expected["tied_after"].get<bool>());
  auto mlm = std::dynamic_pointer_cast<RobertaForMaskedLM>(model);
  ASSERT_TRUE(mlm);
  EXPECT_EQ(mlm->lm_head->bias.sizes().vec(), expected["lm_head_bias_shape_after"].get<std::vector<int64_t>>());
  EXPECT_TRUE(mlm->lm_head->bias.is_same(mlm->lm_head->decoder->bias));

  auto after = run_forward(*model, dir);
  EXPECT_EQ(after["logits"].sizes().vec(), expected["logits_shape_after"].get<std::vector<int64_t>>());
  int64_t old = expected["old_vocab_size"].get<int64_t>();
  EXPECT_TRUE(tensors_close("after.logits_old_rows", after["logits"].narrow(-1, 0, old),
                            reference["after.logits_old_rows"], 1e-4, 1e-4));

  // transformers' resized checkpoint loads with its new shapes.
  auto resized = model_from_pretrained(dir + "/model_resized", "CamembertForMaskedLM");
  EXPECT_TRUE(resized->loading_info.missing_keys.empty());
  EXPECT_EQ(run_forward(*resized, dir)["logits"].sizes().vec(), expected["logits_shape_after"].get<std::vector<int64_t>>());
  // And ours saves and reloads identically.
  TempDir tmp;
  model->save_pretrained(tmp.str());
  auto reloaded = model_from_pretrained(tmp.str(), "CamembertForMaskedLM");
  EXPECT_TRUE(reloaded->loading_info.missing_keys.empty());
  EXPECT_LT(max_abs_diff(run_forward(*reloaded, dir)["logits"], after["logits"]), 1e-6);
}

}  // namespace
