// tfcpp classify / embed against the fixtures' expected tensors (Python transformers 4.40.2): the pipeline's
// softmax / sigmoid over the expected logits, and pooling of the expected last_hidden_state, computed here.
#include "test_util.h"

#include "transformers/tokenizer.h"

#include <cmath>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace tfcpp_test;
using transformers::json;

namespace {

std::string tfcpp(const std::string& args) { return tfcpp_bin() + " " + args + " 2>&1"; }
// stdout only, for output that is parsed (stderr may carry runtime warnings)
std::string tfcpp_stdout(const std::string& args) { return tfcpp_bin() + " " + args + " 2>/dev/null"; }

std::string repo_fixture(const std::string& name) { return source_dir() + "/tests/fixtures/hf/" + name; }

// Row `row` of a fixture input ("input_ids", "attention_mask", "token_type_ids") as "a b c".
std::string input_row(const std::string& dir, const std::string& name, size_t row) {
  json inputs = read_json(dir + "/inputs.json")["forward"]["inputs"];
  std::string out;
  for (const auto& v : inputs[name]["data"][row]) out += (out.empty() ? "" : " ") + std::to_string(v.get<int64_t>());
  return out;
}

json parse_json_output(const std::string& output) {
  return json::parse(output);
}

std::vector<double> softmax(const at::Tensor& logits) {
  at::Tensor p = at::softmax(logits.to(at::kDouble), -1).contiguous();
  return std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
}

// A model folder in a temp dir: the fixture's config.json (with `config_edits`) and weights, plus `tokenizer`.
void make_model_dir(const TempDir& tmp, const std::string& model_dir, const json& config_edits, const json& tokenizer) {
  fs::copy_file(model_dir + "/model.safetensors", tmp / "model.safetensors");
  json config = read_json(model_dir + "/config.json");
  config.update(config_edits);
  std::ofstream(tmp / "config.json") << config.dump(1);
  if (!tokenizer.is_null()) std::ofstream(tmp / "tokenizer.json") << tokenizer.dump();
}

// A WordLevel tokenizer over "t0".."t{n-1}" (id i), with optional special tokens and a pair template.
json word_level_tokenizer(int n, const json& specials = json::object(), const json& post_processor = nullptr) {
  json vocab = json::object();
  for (int i = 0; i < n; ++i) vocab["t" + std::to_string(i)] = i;
  json added = json::array();
  for (auto& [token, id] : specials.items()) {
    for (auto it = vocab.begin(); it != vocab.end(); ++it)
      if (*it == id) {
        vocab.erase(it);
        break;
      }
    vocab[token] = id;
    added.push_back({{"id", id}, {"content", token}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  }
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "WhitespaceSplit"}}},
          {"post_processor", post_processor},
          {"decoder", nullptr},
          {"model", {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "t0"}}}};
}

TEST(CliClassify, SoftmaxScoresMatchFixtureLogits) {
  const std::string dir = fixture("camembert-for-sequence-classification");
  at::Tensor logits = read_tensors(dir + "/expected.safetensors")["logits"][0];
  std::vector<double> want = softmax(logits);
  auto [rc, output] = run_command(tfcpp_stdout("classify --model " + dir + "/model --ids \"" + input_row(dir, "input_ids", 0) +
                                        "\" --top-k 0 --json"));
  ASSERT_EQ(rc, 0) << output;
  json got = parse_json_output(output);
  ASSERT_EQ(got.size(), want.size()) << output;
  double previous = 2.0;
  for (const auto& entry : got) {
    std::string label = entry["label"];
    size_t index = std::stoul(label.substr(label.rfind('_') + 1));  // id2label: LABEL_<i>
    EXPECT_NEAR(entry["score"].get<double>(), want.at(index), 1e-5) << label;
    EXPECT_LE(entry["score"].get<double>(), previous) << "labels are sorted best first";
    previous = entry["score"].get<double>();
  }
}

TEST(CliClassify, DefaultIsTheBestLabelAndTextMode) {
  const std::string dir = repo_fixture("gpt2-extra-sequence-classification");
  at::Tensor logits = read_tensors(dir + "/expected.safetensors")["logits"][0];
  std::vector<double> want = softmax(logits);
  int64_t best = logits.argmax().item<int64_t>();
  const std::string ids = input_row(dir, "input_ids", 0);
  auto [rc, output] = run_command(tfcpp_stdout("classify --model " + dir + "/model --ids \"" + ids + "\" --json"));
  ASSERT_EQ(rc, 0) << output;
  json got = parse_json_output(output);
  ASSERT_TRUE(got.is_object()) << output;  // the pipeline's legacy {"label", "score"}
  EXPECT_EQ(got["label"], "LABEL_" + std::to_string(best));
  EXPECT_NEAR(got["score"].get<double>(), want[static_cast<size_t>(best)], 1e-5);

  // The same ids as text through a WordLevel tokenizer ("t5" -> 5) in a copy of the model folder.
  TempDir tmp;
  make_model_dir(tmp, dir + "/model", json::object(), word_level_tokenizer(61));
  std::string text;
  const json inputs = read_json(dir + "/inputs.json");
  for (const auto& id : inputs["forward"]["inputs"]["input_ids"]["data"][0])
    text += (text.empty() ? "t" : " t") + std::to_string(id.get<int64_t>());
  std::tie(rc, output) = run_command(tfcpp_stdout("classify --model " + tmp.str() + " --text \"" + text + "\" -k 2"));
  ASSERT_EQ(rc, 0) << output;
  EXPECT_EQ(output.rfind("LABEL_" + std::to_string(best)), output.find("LABEL_")) << output;
  char line[64];
  std::snprintf(line, sizeof line, "%.4f  LABEL_%lld", want[static_cast<size_t>(best)], static_cast<long long>(best));
  EXPECT_NE(output.find(line), std::string::npos) << output;
  EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 2) << output;
}

TEST(CliClassify, MultiLabelUsesSigmoidAndTextPair) {
  const std::string dir = repo_fixture("bert-extra-sequence-classification-multi-label");
  at::Tensor logits = read_tensors(dir + "/expected.safetensors")["logits"][0].to(at::kDouble);
  at::Tensor want = at::sigmoid(logits);
  // Row 0: ids 2 17 33 | 5 40 9 3 with token types 0 0 0 | 1 1 1 1. A pair template [CLS] $A:0 $B:1 [SEP]:1 makes them.
  json post = {{"type", "TemplateProcessing"},
               {"single", {{{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}},
                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                           {{"SpecialToken", {{"id", "[SEP]"}, {"type_id", 0}}}}}},
               {"pair", {{{"SpecialToken", {{"id", "[CLS]"}, {"type_id", 0}}}},
                         {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                         {{"Sequence", {{"id", "B"}, {"type_id", 1}}}},
                         {{"SpecialToken", {{"id", "[SEP]"}, {"type_id", 1}}}}}},
               {"special_tokens", {{"[CLS]", {{"id", "[CLS]"}, {"ids", {2}}, {"tokens", {"[CLS]"}}}},
                                   {"[SEP]", {{"id", "[SEP]"}, {"ids", {3}}, {"tokens", {"[SEP]"}}}}}}};
  TempDir tmp;
  make_model_dir(tmp, dir + "/model", {{"problem_type", "multi_label_classification"}},
                 word_level_tokenizer(61, {{"[CLS]", 2}, {"[SEP]", 3}}, post));
  ASSERT_EQ(input_row(dir, "input_ids", 0), "2 17 33 5 40 9 3");
  ASSERT_EQ(input_row(dir, "token_type_ids", 0), "0 0 0 1 1 1 1");
  auto [rc, output] = run_command(tfcpp_stdout("classify --model " + tmp.str() +
                                        " --text \"t17 t33\" --text-pair \"t5 t40 t9\" --top-k 0 --json"));
  ASSERT_EQ(rc, 0) << output;
  json got = parse_json_output(output);
  ASSERT_EQ(got.size(), 3u) << output;
  double total = 0;
  for (const auto& entry : got) {
    std::string label = entry["label"];
    int64_t index = std::stoll(label.substr(label.rfind('_') + 1));
    EXPECT_NEAR(entry["score"].get<double>(), want[index].item<double>(), 1e-5) << label;
    total += entry["score"].get<double>();
  }
  EXPECT_GT(std::fabs(total - 1.0), 1e-3) << "sigmoid scores do not sum to 1 the way softmax scores do";

  // --ids with --type-ids gives the same answer; without the multi-label config, softmax.
  std::tie(rc, output) = run_command(tfcpp_stdout("classify --model " + dir + "/model --ids \"2 17 33 5 40 9 3\" --type-ids \"" +
                                           input_row(dir, "token_type_ids", 0) + "\" --top-k 0 --json"));
  ASSERT_EQ(rc, 0) << output;
  std::vector<double> soft = softmax(logits);
  for (const auto& entry : parse_json_output(output)) {
    std::string label = entry["label"];
    EXPECT_NEAR(entry["score"].get<double>(), soft.at(std::stoul(label.substr(label.rfind('_') + 1))), 1e-5) << label;
  }
}

TEST(CliClassify, BadInputIsAnError) {
  const std::string dir = fixture("camembert-for-sequence-classification") + "/model";
  auto [rc, output] = run_command(tfcpp("classify --model " + dir + " --ids \"0 5000 2\""));
  EXPECT_NE(rc, 0);
  EXPECT_NE(output.find("out of range"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("classify --model " + dir + " --text \"hello\""));
  EXPECT_NE(rc, 0);
  EXPECT_NE(output.find("tokenizer.json"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("classify --model " + dir + " --ids \"0 x 2\""));
  EXPECT_NE(rc, 0);
  EXPECT_NE(output.find("'x'"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("classify --model " + dir));
  EXPECT_EQ(rc, 2) << output;
}

// last_hidden_state row `row` of the bert-model fixture, [T, H] in double
at::Tensor bert_hidden(int64_t row) {
  return read_tensors(fixture("bert-model") + "/expected.safetensors")["last_hidden_state"][row].to(at::kDouble);
}

at::Tensor embed(const std::string& args, json* info = nullptr) {
  auto [rc, output] = run_command(tfcpp_stdout("embed " + args + " --json"));
  EXPECT_EQ(rc, 0) << output;
  if (rc != 0) return at::Tensor();
  json got = json::parse(output);
  if (info) *info = got;
  return at::tensor(got["embedding"].get<std::vector<double>>(), at::kDouble);
}

TEST(CliEmbed, PoolingMatchesFixtureHiddenStates) {
  const std::string dir = fixture("bert-model");
  const std::string row0 = "--model " + dir + "/model --ids \"" + input_row(dir, "input_ids", 0) + "\" --type-ids \"" +
                           input_row(dir, "token_type_ids", 0) + "\"";
  at::Tensor h0 = bert_hidden(0);
  json info;
  at::Tensor mean = embed(row0, &info);
  ASSERT_TRUE(mean.defined());
  EXPECT_EQ(info["dim"], 32);
  EXPECT_EQ(info["pooling"], "mean");
  EXPECT_TRUE(tensors_close("mean", mean, h0.mean(0), 1e-4, 1e-4));
  EXPECT_TRUE(tensors_close("cls", embed(row0 + " --pooling cls"), h0[0], 1e-4, 1e-4));
  EXPECT_TRUE(tensors_close("last", embed(row0 + " --pooling last"), h0[-1], 1e-4, 1e-4));
  at::Tensor normalized = embed(row0 + " --normalize");
  EXPECT_TRUE(tensors_close("normalized", normalized, h0.mean(0) / h0.mean(0).norm(), 1e-4, 1e-4));
  EXPECT_NEAR(normalized.norm().item<double>(), 1.0, 1e-9);
}

TEST(CliEmbed, MeanPoolingRespectsTheAttentionMask) {
  const std::string dir = fixture("bert-model");
  ASSERT_EQ(input_row(dir, "attention_mask", 1), "1 1 1 1 1 0 0");
  const std::string row1 = "--model " + dir + "/model --ids \"" + input_row(dir, "input_ids", 1) + "\" --type-ids \"" +
                           input_row(dir, "token_type_ids", 1) + "\" --attention-mask \"" +
                           input_row(dir, "attention_mask", 1) + "\"";
  at::Tensor h1 = bert_hidden(1);
  at::Tensor kept = h1.narrow(0, 0, 5);
  at::Tensor mean = embed(row1);
  ASSERT_TRUE(mean.defined());
  EXPECT_TRUE(tensors_close("masked mean", mean, kept.mean(0), 1e-4, 1e-4));
  EXPECT_GT(max_abs_diff(mean, h1.mean(0)), 1e-3) << "padding positions must not count";
  EXPECT_TRUE(tensors_close("last kept token", embed(row1 + " --pooling last"), h1[4], 1e-4, 1e-4));
}

TEST(CliEmbed, TextUsesTheModelTokenizer) {
  const std::string model = source_dir() + "/models/stories260K";
  const std::string text = "Once upon a time";
  std::vector<int64_t> ids = transformers::Tokenizer::from_pretrained(model).encode(text);
  std::string id_list;
  for (int64_t id : ids) id_list += (id_list.empty() ? "" : " ") + std::to_string(id);
  json info;
  at::Tensor from_text = embed("--model " + model + " --text \"" + text + "\" --pooling last", &info);
  ASSERT_TRUE(from_text.defined());
  EXPECT_EQ(info["dim"], 64);
  EXPECT_EQ(info["tokens"], ids.size());
  EXPECT_TRUE(tensors_close("text vs ids", from_text, embed("--model " + model + " --ids \"" + id_list + "\" --pooling last"),
                            1e-9, 1e-9));
  // text mode prints the header and every value
  auto [rc, output] = run_command(tfcpp_stdout("embed --model " + model + " --text \"" + text + "\" --normalize"));
  ASSERT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("64-dim mean pooling, normalized over " + std::to_string(ids.size()) + " tokens"),
            std::string::npos)
      << output;
}

TEST(CliEmbed, BadInputIsAnError) {
  const std::string dir = fixture("bert-model") + "/model";
  auto [rc, output] = run_command(tfcpp("embed --model " + dir + " --ids \"2 15 3\" --pooling max"));
  EXPECT_NE(rc, 0);
  EXPECT_NE(output.find("--pooling"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("embed --model " + dir + " --ids \"2 15 3\" --attention-mask \"1 1\""));
  EXPECT_NE(rc, 0);
  EXPECT_NE(output.find("--attention-mask"), std::string::npos) << output;
  std::tie(rc, output) = run_command(tfcpp("embed --model " + dir + " --ids \"2 15 3\" --attention-mask \"0 0 0\""));
  EXPECT_NE(rc, 0);
  std::tie(rc, output) = run_command(tfcpp("embed --model " + fixture("blenderbot-small-for-conditional-generation") +
                                           "/model --ids \"2 15 3\""));
  EXPECT_NE(rc, 0);
  EXPECT_NE(output.find("encoder-decoder"), std::string::npos) << output;
}

}  // namespace
