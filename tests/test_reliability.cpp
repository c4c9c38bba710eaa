// Reliability: hostile files are refused with their specific error, saves are all-or-nothing (kill-during-save),
// shard names stay inside the model folder, JSON is bounded, one model serves several threads.
#include "test_util.h"

#include "transformers/atomic_dir.h"
#include "transformers/auto.h"
#include "transformers/checkpoint_files.h"
#include "transformers/errors.h"
#include "transformers/generation.h"
#include "transformers/generation_config.h"
#include "transformers/safetensors.h"
#include "transformers/tokenizer.h"
#include "transformers/torch_bin.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

namespace fs = std::filesystem;
using namespace transformers;
using namespace tfcpp_test;

namespace {

std::string hostile(const std::string& name) { return source_dir() + "/tests/fixtures/hostile/" + name; }

bool is_error_class(const Error& e, const std::string& name) {
  if (name == "CheckpointError") return dynamic_cast<const CheckpointError*>(&e) != nullptr;
  if (name == "ConfigError") return dynamic_cast<const ConfigError*>(&e) != nullptr;
  if (name == "TokenizerError") return dynamic_cast<const TokenizerError*>(&e) != nullptr;
  if (name == "GenerationError") return dynamic_cast<const GenerationError*>(&e) != nullptr;
  return false;
}

void load_hostile(const std::string& kind, const std::string& path) {
  if (kind == "safetensors") {
    safetensors::load_file(path);
  } else if (kind == "torch_bin") {
    load_torch_bin(path);
  } else if (kind == "config") {
    AutoConfig::from_pretrained(path);
  } else if (kind == "model_dir") {
    AutoModel::from_pretrained(path);
  } else if (kind == "tokenizer") {
    Tokenizer::from_file(path);
  } else if (kind == "generation_config") {
    GenerationConfig::from_pretrained(path);
  } else {
    FAIL() << "unknown kind " << kind;
  }
}

struct HostileCase {
  std::string file, kind, error, message;
};

std::vector<HostileCase> hostile_cases() {
  std::vector<HostileCase> cases;
  for (const auto& entry : read_json(hostile("manifest.json")))
    cases.push_back({entry.at("file"), entry.at("kind"), entry.at("error"), entry.at("message")});
  return cases;
}

class HostileFile : public testing::TestWithParam<HostileCase> {};

TEST_P(HostileFile, IsRefusedWithItsError) {
  const HostileCase& c = GetParam();
  const std::string path = hostile(c.file);
  try {
    load_hostile(c.kind, path);
    ADD_FAILURE() << c.file << " was accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_TRUE(is_error_class(e, c.error)) << c.file << ": expected " << c.error << ", got: " << what;
    EXPECT_NE(what.find(c.message), std::string::npos) << c.file << ": message lacks '" << c.message << "': " << what;
    // Every message names the file (or its folder) it is about.
    const std::string name = fs::path(c.file).filename().string();
    EXPECT_NE(what.find(name), std::string::npos) << c.file << ": message doesn't name the file: " << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, HostileFile, testing::ValuesIn(hostile_cases()),
                         [](const testing::TestParamInfo<HostileCase>& info) {
                           std::string name = info.param.file;
                           for (char& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

TEST(HostileCorpus, CoversEveryKind) {
  std::set<std::string> kinds;
  for (const auto& c : hostile_cases()) kinds.insert(c.kind);
  EXPECT_EQ(kinds, (std::set<std::string>{"safetensors", "torch_bin", "config", "model_dir", "tokenizer",
                                           "generation_config"}));
}

// ---------------------------------------------------------------------------------------------------------------
// Shard names and links

class ShardEscape : public testing::Test {
 protected:
  void SetUp() override {
    source_ = source_dir() + "/models/stories260K";
    // A sharded copy of the embedded model.
    auto [rc, out] = run_command(tfcpp_bin() + " convert --model " + source_ + " --out " + tmp_ / "sharded" +
                                 " --max-shard-size 300KB 2>&1");
    ASSERT_EQ(rc, 0) << out;
    ASSERT_TRUE(fs::exists(tmp_ / "sharded/model.safetensors.index.json")) << out;
  }
  std::vector<std::string> shards() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp_ / "sharded"))
      if (e.path().extension() == ".safetensors") names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::string source_;
  TempDir tmp_;
};

TEST_F(ShardEscape, ASymlinkLeavingTheFolderIsRefused) {
  const std::string victim = shards().at(0);
  fs::rename(tmp_ / ("sharded/" + victim), tmp_ / "outside.safetensors");
  fs::create_symlink(tmp_ / "outside.safetensors", tmp_ / ("sharded/" + victim));
  try {
    AutoModelForCausalLM::from_pretrained(tmp_ / "sharded");
    FAIL() << "a shard linking outside the folder was loaded";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("is a link that leaves the model folder"), std::string::npos) << e.what();
  }
}

TEST_F(ShardEscape, HubCacheSnapshotLinksIntoBlobsAreAccepted) {
  // huggingface_hub's layout: <repo>/snapshots/<commit>/<file> -> ../../blobs/<etag>
  const fs::path repo = fs::path(tmp_.str()) / "models--org--name";
  const fs::path snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567";
  fs::create_directories(snapshot);
  fs::create_directories(repo / "blobs");
  int n = 0;
  for (const auto& e : fs::directory_iterator(tmp_ / "sharded")) {
    const std::string blob = "etag" + std::to_string(n++);
    fs::copy_file(e.path(), repo / "blobs" / blob);
    fs::create_symlink(fs::path("../../blobs") / blob, snapshot / e.path().filename());
  }
  auto from_cache = AutoModelForCausalLM::from_pretrained(snapshot.string());
  auto from_folder = AutoModelForCausalLM::from_pretrained(tmp_ / "sharded");
  auto a = from_cache->state_dict(), b = from_folder->state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;
}

// ---------------------------------------------------------------------------------------------------------------
// JSON bounds

TEST(JsonBounds, OversizedConfigIsRefusedBeforeReading) {
  TempDir tmp;
  const std::string path = tmp / "config.json";
  { std::ofstream(path) << "{}"; }
  fs::resize_file(path, (std::uintmax_t(256) << 20) + 1);  // sparse: costs no disk
  try {
    read_json_file(path);
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
  }
}

TEST(JsonBounds, DirectoryInsteadOfFile) {
  TempDir tmp;
  fs::create_directories(tmp / "config.json");
  EXPECT_THROW(read_json_file(tmp / "config.json"), ConfigError);
}

// ---------------------------------------------------------------------------------------------------------------
// Atomic saves

// The tensors as stored (dtype included), after checking the folder still loads as a model.
std::map<std::string, at::Tensor> weights_of(const std::string& dir) {
  AutoModelForCausalLM::from_pretrained(dir);
  std::map<std::string, at::Tensor> out;
  for (const auto& file : find_weight_files(dir, "").files)
    for (auto& [k, t] : safetensors::load_file(file)) out[k] = t.clone();
  return out;
}

bool same_weights(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, t] : a) {
    auto it = b.find(k);
    if (it == b.end() || t.scalar_type() != it->second.scalar_type() || !at::equal(t, it->second)) return false;
  }
  return true;
}

std::vector<std::string> staging_left(const std::string& parent) {
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(parent))
    if (e.path().filename().string().find(".tfcpp-staging-") != std::string::npos)
      left.push_back(e.path().filename().string());
  return left;
}

class AtomicSave : public testing::Test {
 protected:
  void SetUp() override {
    source_ = source_dir() + "/models/stories260K";
    dest_ = tmp_ / "ckpt";
    // The checkpoint a killed save must leave intact: fp32 in 3 shards, plus a file save_pretrained doesn't write.
    auto [rc, out] = run_command(tfcpp_bin() + " convert --model " + source_ + " --out " + dest_ +
                                 " --max-shard-size 300KB 2>&1");
    ASSERT_EQ(rc, 0) << out;
    { std::ofstream(dest_ + "/tokenizer.json") << "{\"kept\": true}"; }
    old_ = weights_of(dest_);
  }
  // The save being killed: bf16 in one file, with a new config.
  std::string new_save_command() const {
    return tfcpp_bin() + " convert --model " + source_ + " --out " + dest_ + " --dtype bfloat16";
  }
  void expect_old_or_new(const std::string& context, bool* is_new = nullptr) {
    auto now = weights_of(dest_);
    const bool old_intact = same_weights(now, old_);
    bool complete_new = true;
    for (const auto& [k, t] : now) complete_new = complete_new && t.scalar_type() == at::kBFloat16;
    EXPECT_TRUE(old_intact || complete_new) << context << ": the checkpoint is neither the old nor the new one";
    EXPECT_TRUE(fs::exists(dest_ + "/tokenizer.json")) << context;
    if (is_new) *is_new = complete_new && !old_intact;
  }
  std::string source_, dest_;
  std::map<std::string, at::Tensor> old_;
  TempDir tmp_;
};

TEST_F(AtomicSave, KeepsOtherFilesAndDropsStaleShards) {
  auto [rc, out] = run_command(new_save_command() + " 2>&1");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(fs::exists(dest_ + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(dest_ + "/model.safetensors.index.json"));
  for (const auto& e : fs::directory_iterator(dest_))
    EXPECT_EQ(e.path().filename().string().find("-of-"), std::string::npos) << e.path();
  EXPECT_EQ(read_json(dest_ + "/tokenizer.json").value("kept", false), true);
  EXPECT_TRUE(staging_left(tmp_.str()).empty());
}

TEST_F(AtomicSave, KilledAtEveryWriteTheOldCheckpointSurvives) {
  // TFCPP_FAULT_AFTER_WRITES=N ends the process abruptly at the N-th write point (each file renamed into the staging
  // folder, just before and just after the swap). Walk N up until a save gets through.
  int crashes = 0;
  bool finished = false;
  for (int n = 1; n <= 40 && !finished; ++n) {
    auto [rc, out] = run_command("TFCPP_FAULT_AFTER_WRITES=" + std::to_string(n) + " " + new_save_command() + " 2>&1");
    if (rc == 0) {
      finished = true;
      bool is_new = false;
      expect_old_or_new("after the save that finished", &is_new);
      EXPECT_TRUE(is_new);
      break;
    }
    ASSERT_EQ(rc, 86) << "fault point " << n << ": " << out;
    ++crashes;
    bool is_new = false;
    expect_old_or_new("killed at write " + std::to_string(n), &is_new);
    // Up to the swap, the destination is the old checkpoint; the very last point (after the swap) sees the new one.
    if (is_new) {
      EXPECT_FALSE(staging_left(tmp_.str()).empty()) << "killed after the swap: old contents still staged";
    }
  }
  EXPECT_TRUE(finished);
  EXPECT_GE(crashes, 4);  // config, generation config, weights, swap
  // The next save clears what killed saves left behind.
  auto [rc, out] = run_command(new_save_command() + " 2>&1");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(staging_left(tmp_.str()).empty());
}

TEST_F(AtomicSave, SigkillAtRandomMomentsLeavesOldOrNew) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> delay_us(0, 900000);
  int saw_new = 0;
  for (int round = 0; round < 6; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      execl("/bin/sh", "sh", "-c", (new_save_command() + " >/dev/null 2>&1").c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    ::kill(pid, SIGKILL);  // kills the shell; its tfcpp child is in the same process group
    ::kill(-pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    // Let an orphaned tfcpp (if the shell died first) finish or be killed.
    run_command("pkill -KILL -f -- '--out " + dest_ + " --dtype' 2>/dev/null");
    bool is_new = false;
    expect_old_or_new("SIGKILL round " + std::to_string(round), &is_new);
    saw_new += is_new;
  }
  RecordProperty("rounds_that_finished", saw_new);
}

TEST(AtomicDirectoryUnit, WithoutCommitNothingChanges) {
  TempDir tmp;
  const std::string dest = tmp / "out";
  fs::create_directories(dest);
  { std::ofstream(dest + "/a.txt") << "old"; }
  {
    AtomicDirectory staging(dest);
    { std::ofstream(staging.path() + "/b.txt") << "new"; }
    EXPECT_TRUE(fs::exists(staging.path() + "/a.txt"));  // staged as a hard link
  }
  EXPECT_FALSE(fs::exists(dest + "/b.txt"));
  EXPECT_TRUE(staging_left(tmp.str()).empty());
  {
    AtomicDirectory staging(dest);
    { std::ofstream(staging.path() + "/b.txt") << "new"; }
    staging.commit();
  }
  EXPECT_TRUE(fs::exists(dest + "/a.txt"));
  EXPECT_TRUE(fs::exists(dest + "/b.txt"));
  EXPECT_TRUE(staging_left(tmp.str()).empty());
}

TEST(AtomicDirectoryUnit, RefusesAFile) {
  TempDir tmp;
  { std::ofstream(tmp / "file") << "x"; }
  EXPECT_THROW(AtomicDirectory(tmp / "file"), CheckpointError);
}

// ---------------------------------------------------------------------------------------------------------------
// Concurrency: one loaded model, several threads generating at once.

TEST(Concurrency, OneModelManyThreadsGiveTheSameTokens) {
  auto model = AutoModelForCausalLM::from_pretrained(source_dir() + "/models/stories260K");
  GenerationConfig config = model->generation_config;
  config.max_new_tokens = 24;
  config.do_sample = false;
  std::vector<std::vector<int64_t>> prompts = {{1, 403, 407, 261}, {1, 172, 335}, {1, 365, 256, 412, 261, 100}};
  std::vector<at::Tensor> expected;
  for (const auto& p : prompts) expected.push_back(generate(*model, at::tensor(p).unsqueeze(0), config).sequences);
  std::vector<std::thread> threads;
  std::vector<int> ok(12, 0);
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&, t] {
      const auto& p = prompts[t % prompts.size()];
      at::Tensor got = generate(*model, at::tensor(p).unsqueeze(0), config).sequences;
      ok[t] = at::equal(got, expected[t % prompts.size()]);
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 12; ++t) EXPECT_TRUE(ok[t]) << "thread " << t;
}

}  // namespace
