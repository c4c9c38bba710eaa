// The Hub client (hub.h) against an in-process fake Hub on 127.0.0.1 (cpp-httplib): resolve with redirects to a
// CDN path, ETag / X-Repo-Commit / X-Linked-* headers, Range, error codes, fault injection; preupload, LFS batch,
// PUT, verify and commit endpoints. Checks the cache layout huggingface_hub uses.
// Debian's libcpp-httplib is built with these: the header must see the same ones.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#include <httplib.h>

#include "test_util.h"
#include "transformers/auto.h"
#include "transformers/errors.h"
#include "transformers/hub.h"

#include <openssl/evp.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using namespace transformers;
using tfcpp_test::TempDir;

namespace {

std::string digest_hex(const EVP_MD* md, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, md, nullptr);
  std::string hex;
  static const char* d = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) hex += {d[out[i] >> 4], d[out[i] & 15]};
  return hex;
}
std::string sha256(const std::string& data) { return digest_hex(EVP_sha256(), data); }
std::string git_sha1(const std::string& data) {
  return digest_hex(EVP_sha1(), "blob " + std::to_string(data.size()) + std::string(1, '\0') + data);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string base64_decode(const std::string& in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t val = 0;  // only the low bits matter: unsigned, so shifting out the old ones is defined (UBSan)
  int bits = -8;
  for (char c : in) {
    if (c == '=') break;
    auto pos = chars.find(c);
    if (pos == std::string::npos) continue;
    val = (val << 6) + static_cast<uint32_t>(pos);
    bits += 6;
    if (bits >= 0) {
      out += static_cast<char>((val >> bits) & 0xFF);
      bits -= 8;
    }
  }
  return out;
}

struct Logged {
  std::string method, path, range, authorization, body;
};

// A small Hub: repos of files by commit, refs, an LFS store, and a log of every request.
class FakeHub {
 public:
  using Files = std::map<std::string, std::string>;
  struct Repo {
    bool is_private = false, gated = false;
    std::map<std::string, std::string> refs;  // branch/tag -> commit
    std::map<std::string, Files> commits;
  };

  // Fault injection.
  std::atomic<int> drop_cdn_gets{0};   // the next N CDN GETs stop halfway and close the connection
  std::atomic<bool> corrupt_cdn{false};  // CDN serves wrong bytes (same length)
  std::atomic<int> cdn_delay_ms{0};
  const std::string token = "hf_valid_token";

  FakeHub() {
    server_.Get(R"(/cdn/([0-9a-f]{64}))", [this](const httplib::Request& req, httplib::Response& res) { cdn(req, res); });
    server_.Get(R"(/(?:(datasets|spaces)/)?([\w.-]+/[\w.-]+)/resolve/([^/]+)/(.+))",
                [this](const httplib::Request& req, httplib::Response& res) { resolve(req, res); });
    server_.Get(R"(/api/(models|datasets|spaces)/([\w.-]+/[\w.-]+)/revision/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) { revision_info(req, res); });
    server_.Post("/api/repos/create", [this](const httplib::Request& req, httplib::Response& res) { create(req, res); });
    server_.Post(R"(/api/(models|datasets|spaces)/([\w.-]+/[\w.-]+)/preupload/([^/]+))",
                 [this](const httplib::Request& req, httplib::Response& res) { preupload(req, res); });
    server_.Post(R"(/([\w.-]+/[\w.-]+)\.git/info/lfs/objects/batch)",
                 [this](const httplib::Request& req, httplib::Response& res) { batch(req, res); });
    server_.Put(R"(/lfs-upload/([0-9a-f]{64}))", [this](const httplib::Request& req, httplib::Response& res) {
      log(req);
      if (sha256(req.body) != req.matches[1].str()) return error(res, 400, "", "sha256 does not match the oid");
      std::lock_guard<std::mutex> lock(mu_);
      lfs_[req.matches[1].str()] = req.body;
    });
    server_.Post("/lfs-verify", [this](const httplib::Request& req, httplib::Response& res) {
      log(req);
      auto j = nlohmann::json::parse(req.body);
      std::lock_guard<std::mutex> lock(mu_);
      auto it = lfs_.find(j["oid"].get<std::string>());
      if (it == lfs_.end() || static_cast<int64_t>(it->second.size()) != j["size"].get<int64_t>())
        return error(res, 404, "", "object not uploaded");
      res.set_content("{}", "application/json");
    });
    server_.Post(R"(/api/(models|datasets|spaces)/([\w.-]+/[\w.-]+)/commit/([^/]+))",
                 [this](const httplib::Request& req, httplib::Response& res) { commit(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeHub() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // A commit on `branch` with the folder's files (replacing the branch's files). Returns the commit sha.
  std::string add_folder(const std::string& repo_id, const std::string& folder, const std::string& branch = "main") {
    Files files;
    for (const auto& e : fs::recursive_directory_iterator(folder))
      if (e.is_regular_file()) files[e.path().lexically_relative(folder).generic_string()] = read_all(e.path().string());
    return add_commit(repo_id, files, branch);
  }
  std::string add_commit(const std::string& repo_id, const Files& files, const std::string& branch = "main") {
    std::lock_guard<std::mutex> lock(mu_);
    std::string sha = digest_hex(EVP_sha1(), repo_id + std::to_string(++counter_));
    Repo& repo = repos_[repo_id];
    repo.commits[sha] = files;
    repo.refs[branch] = sha;
    for (const auto& [path, content] : files)
      if (is_lfs(path)) lfs_[sha256(content)] = content;
    return sha;
  }
  void set_ref(const std::string& repo_id, const std::string& ref, const std::string& sha) {
    std::lock_guard<std::mutex> lock(mu_);
    repos_[repo_id].refs[ref] = sha;
  }
  void set_private(const std::string& repo_id, bool is_private, bool gated = false) {
    std::lock_guard<std::mutex> lock(mu_);
    repos_[repo_id].is_private = is_private;
    repos_[repo_id].gated = gated;
  }

  std::vector<Logged> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }
  void clear_log() {
    std::lock_guard<std::mutex> lock(mu_);
    log_.clear();
  }
  int count(const std::string& method, const std::string& path_part = "") {
    int n = 0;
    for (const auto& r : requests())
      if (r.method == method && r.path.find(path_part) != std::string::npos) ++n;
    return n;
  }

  static bool is_lfs(const std::string& path) {
    auto ends = [&](const std::string& s) { return path.size() >= s.size() && path.compare(path.size() - s.size(), s.size(), s) == 0; };
    return ends(".safetensors") || ends(".bin");
  }

 private:
  void log(const httplib::Request& req) {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back({req.method, req.path, req.get_header_value("Range"), req.get_header_value("Authorization"),
                    req.body});
  }
  static void error(httplib::Response& res, int status, const std::string& code, const std::string& message) {
    res.status = status;
    if (!code.empty()) res.set_header("X-Error-Code", code);
    res.set_header("X-Error-Message", message);
    res.set_content(nlohmann::json({{"error", message}}).dump(), "application/json");
  }
  bool authorized(const httplib::Request& req) const { return req.get_header_value("Authorization") == "Bearer " + token; }

  void resolve(const httplib::Request& req, httplib::Response& res) {
    log(req);
    const std::string repo_id = req.matches[2].str(), revision = req.matches[3].str(), path = req.matches[4].str();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = repos_.find(repo_id);
    if (it == repos_.end() || (it->second.is_private && !authorized(req)))
      return error(res, 401, "RepoNotFound", "Repository not found");
    const Repo& repo = it->second;
    if (repo.gated && !authorized(req))
      return error(res, 403, "GatedRepo", "Access to model " + repo_id + " is restricted. You must be authenticated.");
    std::string sha = repo.refs.count(revision) ? repo.refs.at(revision) : revision;
    if (!repo.commits.count(sha)) return error(res, 404, "RevisionNotFound", "Invalid rev id: " + revision);
    res.set_header("X-Repo-Commit", sha);
    const Files& files = repo.commits.at(sha);
    auto f = files.find(path);
    if (f == files.end()) return error(res, 404, "EntryNotFound", "Entry not found");
    if (is_lfs(path)) {
      const std::string oid = sha256(f->second);
      res.set_header("X-Linked-Etag", "\"" + oid + "\"");
      res.set_header("X-Linked-Size", std::to_string(f->second.size()));
      res.set_header("ETag", "\"" + git_sha1("version https://git-lfs.github.com/spec/v1\noid sha256:" + oid) + "\"");
      res.set_redirect(url() + "/cdn/" + oid, 302);
      return;
    }
    res.set_header("ETag", "\"" + git_sha1(f->second) + "\"");
    res.set_content(f->second, "application/octet-stream");
  }

  void cdn(const httplib::Request& req, httplib::Response& res) {
    log(req);
    std::string content;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = lfs_.find(req.matches[1].str());
      if (it == lfs_.end()) return error(res, 404, "", "no such object");
      content = it->second;
    }
    if (corrupt_cdn) content[content.size() / 2] ^= 0x5a;
    const bool drop = drop_cdn_gets.fetch_sub(1) > 0;
    const int delay = cdn_delay_ms;
    res.set_content_provider(content.size(), "application/octet-stream",
                             [content, drop, delay](size_t offset, size_t length, httplib::DataSink& sink) {
                               if (delay) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
                               if (drop) {
                                 sink.write(content.data() + offset, length / 2);
                                 return false;  // closes the connection mid-body
                               }
                               sink.write(content.data() + offset, length);
                               return true;
                             });
  }

  void revision_info(const httplib::Request& req, httplib::Response& res) {
    log(req);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = repos_.find(req.matches[2].str());
    if (it == repos_.end() || (it->second.is_private && !authorized(req)))
      return error(res, 401, "RepoNotFound", "Repository not found");
    const std::string revision = req.matches[3].str();
    std::string sha = it->second.refs.count(revision) ? it->second.refs.at(revision) : revision;
    if (!it->second.commits.count(sha)) return error(res, 404, "RevisionNotFound", "Invalid rev id: " + revision);
    nlohmann::json siblings = nlohmann::json::array();
    for (const auto& [path, content] : it->second.commits.at(sha)) siblings.push_back({{"rfilename", path}});
    res.set_content(nlohmann::json({{"id", req.matches[2].str()}, {"sha", sha}, {"private", it->second.is_private},
                                    {"siblings", siblings}})
                        .dump(),
                    "application/json");
  }

  void create(const httplib::Request& req, httplib::Response& res) {
    log(req);
    if (!authorized(req)) return error(res, 401, "", "Invalid username or password.");
    auto j = nlohmann::json::parse(req.body);
    std::string id = (j["organization"].is_string() ? j["organization"].get<std::string>() + "/" : "") +
                     j["name"].get<std::string>();
    std::lock_guard<std::mutex> lock(mu_);
    if (repos_.count(id)) return error(res, 409, "", "You already created this model repo");
    repos_[id].is_private = j.value("private", false);
    res.set_content(nlohmann::json({{"url", url() + "/" + id}}).dump(), "application/json");
  }

  void preupload(const httplib::Request& req, httplib::Response& res) {
    log(req);
    if (!authorized(req)) return error(res, 401, "RepoNotFound", "Repository not found");
    auto j = nlohmann::json::parse(req.body);
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : j["files"])
      files.push_back({{"path", f["path"]},
                       {"uploadMode", is_lfs(f["path"].get<std::string>()) ? "lfs" : "regular"},
                       {"shouldIgnore", false}});
    res.set_content(nlohmann::json({{"files", files}}).dump(), "application/json");
  }

  void batch(const httplib::Request& req, httplib::Response& res) {
    log(req);
    if (!authorized(req)) return error(res, 401, "", "Unauthorized");
    auto j = nlohmann::json::parse(req.body);
    nlohmann::json objects = nlohmann::json::array();
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& o : j["objects"]) {
      nlohmann::json entry = {{"oid", o["oid"]}, {"size", o["size"]}};
      if (!lfs_.count(o["oid"].get<std::string>()))
        entry["actions"] = {{"upload", {{"href", url() + "/lfs-upload/" + o["oid"].get<std::string>()}}},
                            {"verify", {{"href", url() + "/lfs-verify"}}}};
      objects.push_back(entry);
    }
    res.set_content(nlohmann::json({{"transfer", "basic"}, {"objects", objects}}).dump(), "application/vnd.git-lfs+json");
  }

  void commit(const httplib::Request& req, httplib::Response& res) {
    log(req);
    if (!authorized(req)) return error(res, 401, "RepoNotFound", "Repository not found");
    const std::string repo_id = req.matches[2].str(), branch = req.matches[3].str();
    Files files;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = repos_.find(repo_id);
      if (it == repos_.end()) return error(res, 404, "RepoNotFound", "Repository not found");
      if (it->second.refs.count(branch)) files = it->second.commits.at(it->second.refs.at(branch));
      std::istringstream lines(req.body);
      std::string line;
      while (std::getline(lines, line)) {
        if (line.empty()) continue;
        auto op = nlohmann::json::parse(line);
        if (op["key"] == "file") {
          files[op["value"]["path"].get<std::string>()] = base64_decode(op["value"]["content"].get<std::string>());
        } else if (op["key"] == "lfsFile") {
          auto obj = lfs_.find(op["value"]["oid"].get<std::string>());
          if (obj == lfs_.end()) return error(res, 400, "", "LFS object not uploaded");
          files[op["value"]["path"].get<std::string>()] = obj->second;
        }
      }
    }
    std::string sha = add_commit(repo_id, files, branch);
    res.set_content(nlohmann::json({{"commitUrl", url() + "/" + repo_id + "/commit/" + sha},
                                    {"commitOid", sha},
                                    {"pullRequestUrl", nullptr}})
                        .dump(),
                    "application/json");
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::map<std::string, Repo> repos_;
  std::map<std::string, std::string> lfs_;
  std::vector<Logged> log_;
  int counter_ = 0;
};

std::string stories_dir() { return tfcpp_test::source_dir() + "/models/stories260K"; }

at::Tensor logits_of(PreTrainedModel& model) {
  ModelInputs in;
  in.input_ids = at::tensor(std::vector<int64_t>{1, 403, 407, 261, 378}, at::kLong).unsqueeze(0);
  return model.forward(in).logits;
}

// Environment of one test: HF_HOME / HF_HUB_CACHE in a temp folder, HF_ENDPOINT at the fake hub, no token, online.
class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                             "HUGGINGFACE_HUB_CACHE", "HF_HUB_DISABLE_IMPLICIT_TOKEN"})
      unsetenv(name);
    setenv("HF_HOME", (home / "hf").c_str(), 1);
    setenv("HF_HUB_CACHE", cache().c_str(), 1);
    setenv("HF_ENDPOINT", hub.url().c_str(), 1);
  }
  void TearDown() override {
    for (const char* name : {"HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN"}) unsetenv(name);
  }
  std::string cache() const { return home / "cache"; }
  fs::path repo_cache(const std::string& folder) const { return fs::path(cache()) / folder; }

  TempDir home;
  FakeHub hub;
};

TEST_F(HubTest, DownloadLoadsSameLogitsWithHuggingFaceCacheLayout) {
  const std::string commit = hub.add_folder("tfcpp/stories260K", stories_dir());
  auto local = AutoModelForCausalLM::from_pretrained(stories_dir());
  auto remote = AutoModelForCausalLM::from_pretrained("tfcpp/stories260K");
  EXPECT_TRUE(tfcpp_test::tensors_close("logits", logits_of(*remote), logits_of(*local), 0, 0));
  EXPECT_EQ(remote->generation_config.to_dict(), local->generation_config.to_dict());

  const fs::path repo = repo_cache("models--tfcpp--stories260K");
  EXPECT_EQ(read_all((repo / "refs" / "main").string()), commit);
  const fs::path snapshot = repo / "snapshots" / commit;
  // Regular files: blob named by the git sha1 etag; LFS: by the sha256; relative links into blobs/.
  const std::string config = read_all(stories_dir() + "/config.json");
  EXPECT_EQ(fs::read_symlink(snapshot / "config.json"), fs::path("../../blobs") / git_sha1(config));
  const std::string weights = read_all(stories_dir() + "/model.safetensors");
  EXPECT_EQ(fs::read_symlink(snapshot / "model.safetensors"), fs::path("../../blobs") / sha256(weights));
  EXPECT_EQ(read_all((repo / "blobs" / sha256(weights)).string()), weights);
  EXPECT_TRUE(fs::is_symlink(snapshot / "generation_config.json"));
  EXPECT_TRUE(fs::exists(fs::path(cache()) / ".locks" / "models--tfcpp--stories260K" / (sha256(weights) + ".lock")));
  for (const auto& e : fs::recursive_directory_iterator(repo)) EXPECT_NE(e.path().extension(), ".incomplete");

  hub::CacheLookup hit = hub::try_to_load_from_cache("tfcpp/stories260K", "config.json", cache());
  EXPECT_EQ(hit.status, hub::CacheLookup::kFound);
  EXPECT_EQ(hit.path, (snapshot / "config.json").string());
}

TEST_F(HubTest, SecondLoadOnlyHeadsAndOfflineMakesNoRequest) {
  hub.add_folder("tfcpp/stories260K", stories_dir());
  auto first = AutoModelForCausalLM::from_pretrained("tfcpp/stories260K");
  EXPECT_GT(hub.count("GET", "/cdn/"), 0);
  hub.clear_log();
  auto second = AutoModelForCausalLM::from_pretrained("tfcpp/stories260K");
  EXPECT_EQ(hub.count("GET"), 0) << "a cached model must not be downloaded again";
  EXPECT_GT(hub.count("HEAD"), 0);
  hub.clear_log();
  setenv("HF_HUB_OFFLINE", "1", 1);
  auto offline = AutoModelForCausalLM::from_pretrained("tfcpp/stories260K");
  EXPECT_EQ(hub.requests().size(), 0u);
  EXPECT_TRUE(tfcpp_test::tensors_close("logits", logits_of(*offline), logits_of(*first), 0, 0));
  // Offline and never downloaded: a LocalEntryNotFoundError that says how to fix it.
  try {
    AutoModelForCausalLM::from_pretrained("tfcpp/other");
    FAIL() << "expected LocalEntryNotFoundError";
  } catch (const LocalEntryNotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find("HF_HUB_OFFLINE"), std::string::npos) << e.what();
  }
  unsetenv("HF_HUB_OFFLINE");
  setenv("TRANSFORMERS_OFFLINE", "1", 1);
  EXPECT_THROW(hub::hf_hub_download("tfcpp/other", "config.json"), LocalEntryNotFoundError);
  unsetenv("TRANSFORMERS_OFFLINE");
  hub::HubOptions local_only;
  local_only.local_files_only = true;
  EXPECT_EQ(fs::path(hub::hf_hub_download("tfcpp/stories260K", "config.json", local_only)).filename(), "config.json");
}

TEST_F(HubTest, RevisionByBranchTagAndCommit) {
  hub::HubOptions o;
  FakeHub::Files v1{{"config.json", "{\"v\": 1}"}}, v2{{"config.json", "{\"v\": 2}"}};
  const std::string c1 = hub.add_commit("org/revs", v1);
  const std::string c2 = hub.add_commit("org/revs", v2);
  hub.set_ref("org/revs", "v1.0", c1);
  hub.add_commit("org/revs", {{"config.json", "{\"v\": 3}"}}, "dev");
  EXPECT_EQ(read_all(hub::hf_hub_download("org/revs", "config.json", o)), "{\"v\": 2}");
  o.revision = c1;
  const std::string pinned = hub::hf_hub_download("org/revs", "config.json", o);
  EXPECT_EQ(read_all(pinned), "{\"v\": 1}");
  EXPECT_NE(pinned.find("snapshots/" + c1), std::string::npos);
  hub.clear_log();
  EXPECT_EQ(hub::hf_hub_download("org/revs", "config.json", o), pinned);
  EXPECT_EQ(hub.requests().size(), 0u) << "a cached commit needs no request";
  o.revision = "v1.0";
  EXPECT_EQ(read_all(hub::hf_hub_download("org/revs", "config.json", o)), "{\"v\": 1}");
  EXPECT_EQ(read_all((repo_cache("models--org--revs") / "refs" / "v1.0").string()), c1);
  o.revision = "dev";
  EXPECT_EQ(read_all(hub::hf_hub_download("org/revs", "config.json", o)), "{\"v\": 3}");
  EXPECT_EQ(read_all((repo_cache("models--org--revs") / "refs" / "main").string()), c2);
  o.revision = "nope";
  EXPECT_THROW(hub::hf_hub_download("org/revs", "config.json", o), RevisionNotFoundError);
}

TEST_F(HubTest, InterruptedDownloadResumesWithRange) {
  hub.add_folder("tfcpp/stories260K", stories_dir());
  const std::string weights = read_all(stories_dir() + "/model.safetensors");
  // The connection drops halfway: the same call resumes from where it stopped.
  hub.drop_cdn_gets = 1;
  std::string path = hub::hf_hub_download("tfcpp/stories260K", "model.safetensors");
  EXPECT_EQ(read_all(path), weights);
  auto log = hub.requests();
  std::vector<std::string> ranges;
  for (const auto& r : log)
    if (r.method == "GET" && r.path.find("/cdn/") != std::string::npos) ranges.push_back(r.range);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], "");
  EXPECT_EQ(ranges[1], "bytes=" + std::to_string(weights.size() / 2) + "-");

  // A process killed mid-download leaves blobs/<etag>.incomplete: the next call sends Range from its size.
  const fs::path blobs = repo_cache("models--tfcpp--stories260K") / "blobs";
  fs::remove_all(repo_cache("models--tfcpp--stories260K"));
  fs::create_directories(blobs);
  {
    std::ofstream part(blobs / (sha256(weights) + ".incomplete"), std::ios::binary);
    part.write(weights.data(), 1000);
  }
  hub.clear_log();
  path = hub::hf_hub_download("tfcpp/stories260K", "model.safetensors");
  EXPECT_EQ(read_all(path), weights);
  EXPECT_EQ(hub.count("GET", "/cdn/"), 1);
  EXPECT_EQ(hub.requests().back().range, "bytes=1000-");
  EXPECT_FALSE(fs::exists(blobs / (sha256(weights) + ".incomplete")));
}

TEST_F(HubTest, ChecksumMismatchIsAnErrorAndLeavesNoBlob) {
  hub.add_folder("tfcpp/stories260K", stories_dir());
  const std::string oid = sha256(read_all(stories_dir() + "/model.safetensors"));
  hub.corrupt_cdn = true;
  try {
    hub::hf_hub_download("tfcpp/stories260K", "model.safetensors");
    FAIL() << "expected a checksum error";
  } catch (const HubError& e) {
    EXPECT_NE(std::string(e.what()).find("Checksum mismatch"), std::string::npos) << e.what();
  }
  const fs::path repo = repo_cache("models--tfcpp--stories260K");
  EXPECT_FALSE(fs::exists(repo / "blobs" / oid));
  EXPECT_FALSE(fs::exists(repo / "blobs" / (oid + ".incomplete")));
  for (const auto& e : fs::recursive_directory_iterator(repo / "snapshots"))
    EXPECT_NE(e.path().filename(), "model.safetensors");
  hub.corrupt_cdn = false;
  EXPECT_EQ(sha256(read_all(hub::hf_hub_download("tfcpp/stories260K", "model.safetensors"))), oid);
}

TEST_F(HubTest, MissingOptionalFileIsRecordedInNoExist) {
  TempDir folder;
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(stories_dir() + "/" + f, folder / f);
  const std::string commit = hub.add_folder("tfcpp/nogen", folder.str());
  auto model = AutoModelForCausalLM::from_pretrained("tfcpp/nogen");
  const fs::path marker = repo_cache("models--tfcpp--nogen") / ".no_exist" / commit / "generation_config.json";
  EXPECT_TRUE(fs::is_regular_file(marker));
  EXPECT_EQ(hub::try_to_load_from_cache("tfcpp/nogen", "generation_config.json", cache()).status,
            hub::CacheLookup::kNoExist);
  hub.clear_log();
  AutoModelForCausalLM::from_pretrained("tfcpp/nogen");
  EXPECT_EQ(hub.count("HEAD", "generation_config.json"), 0) << ".no_exist must spare the request";
  EXPECT_THROW(hub::hf_hub_download("tfcpp/nogen", "tokenizer.json"), EntryNotFoundError);
  EXPECT_THROW(hub::cached_file("tfcpp/nogen", "tokenizer.json"), EntryNotFoundError);
  EXPECT_EQ(hub::cached_file("tfcpp/nogen", "tokenizer.json", {}, /*raise_for_missing=*/false), "");
}

TEST_F(HubTest, ShardedCheckpointThroughTheIndex) {
  TempDir saved;
  auto local = AutoModelForCausalLM::from_pretrained(stories_dir());
  SavePretrainedOptions so;
  so.max_shard_size = "300KB";
  local->save_pretrained(saved.str(), so);
  ASSERT_TRUE(fs::exists(saved / "model.safetensors.index.json"));
  const std::string commit = hub.add_folder("tfcpp/sharded", saved.str());
  auto remote = AutoModelForCausalLM::from_pretrained("tfcpp/sharded");
  EXPECT_TRUE(tfcpp_test::tensors_close("logits", logits_of(*remote), logits_of(*local), 0, 0));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(repo_cache("models--tfcpp--sharded") / "snapshots" / commit))
    if (e.path().filename().string().rfind("model-0", 0) == 0) ++shards;
  EXPECT_GE(shards, 2);
  EXPECT_EQ(hub.count("HEAD", "/model.safetensors.index.json"), 1);
}

TEST_F(HubTest, ErrorKinds) {
  hub.add_folder("org/private", stories_dir());
  hub.set_private("org/private", true);
  hub.add_folder("org/gated", stories_dir());
  hub.set_private("org/gated", false, /*gated=*/true);
  EXPECT_THROW(hub::hf_hub_download("org/missing", "config.json"), RepositoryNotFoundError);
  try {
    AutoModelForCausalLM::from_pretrained("org/private");
    FAIL() << "expected RepositoryNotFoundError";
  } catch (const RepositoryNotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find("token"), std::string::npos) << e.what();
  }
  EXPECT_THROW(hub::hf_hub_download("org/gated", "config.json"), GatedRepoError);
  // HF_TOKEN, then the token file $HF_HOME/token, then an explicit token.
  setenv("HF_TOKEN", hub.token.c_str(), 1);
  EXPECT_NO_THROW(hub::hf_hub_download("org/private", "config.json"));
  EXPECT_EQ(hub.requests().back().authorization, "Bearer " + hub.token);
  unsetenv("HF_TOKEN");
  fs::create_directories(home / "hf");
  std::ofstream(home / "hf/token") << hub.token << "\n";
  EXPECT_EQ(hub::get_token(), hub.token);
  EXPECT_NO_THROW(hub::hf_hub_download("org/gated", "model.safetensors"));
  // The signed CDN url gets no token when it is on another host; here it is the same host, so it is kept.
  fs::remove(home / "hf/token");
  hub::HubOptions explicit_token;
  explicit_token.token = hub.token;
  explicit_token.force_download = true;
  EXPECT_NO_THROW(hub::hf_hub_download("org/private", "config.json", explicit_token));
  EXPECT_THROW(hub::hf_hub_download("org/private", "missing.json", explicit_token), EntryNotFoundError);
  // Unreachable endpoint and nothing cached: LocalEntryNotFoundError naming the connection.
  hub::HubOptions down;
  down.endpoint = "http://127.0.0.1:1";
  try {
    hub::hf_hub_download("org/unreachable", "config.json", down);
    FAIL() << "expected LocalEntryNotFoundError";
  } catch (const LocalEntryNotFoundError& e) {
    EXPECT_NE(std::string(e.what()).find("connection"), std::string::npos) << e.what();
  }
  // Unreachable but cached: the cached file.
  down.token = hub.token;
  EXPECT_NO_THROW(hub::hf_hub_download("org/private", "config.json", down));
}

TEST_F(HubTest, ConcurrentDownloadsOfOneFileMakeOneBlob) {
  hub.add_folder("tfcpp/stories260K", stories_dir());
  const std::string weights = read_all(stories_dir() + "/model.safetensors");
  hub.cdn_delay_ms = 300;
  std::string a, b;
  std::thread t1([&] { a = hub::hf_hub_download("tfcpp/stories260K", "model.safetensors"); });
  std::thread t2([&] { b = hub::hf_hub_download("tfcpp/stories260K", "model.safetensors"); });
  t1.join();
  t2.join();
  EXPECT_EQ(a, b);
  EXPECT_EQ(read_all(a), weights);
  EXPECT_EQ(hub.count("GET", "/cdn/"), 1) << "the lock makes the second caller wait for the first blob";
  int blobs = 0;
  for (const auto& e : fs::directory_iterator(repo_cache("models--tfcpp--stories260K") / "blobs")) ++blobs, (void)e;
  EXPECT_EQ(blobs, 1);

  // Two processes: the flock in .locks/ serialises them the same way.
  hub.add_folder("tfcpp/again", stories_dir());
  hub.clear_log();
  const std::string download = tfcpp_test::tfcpp_bin() + " download tfcpp/again model.safetensors > /dev/null";
  auto [rc, out] = tfcpp_test::run_command("(" + download + " & p=$!; " + download + "; b=$?; wait $p; a=$?; " +
                                           "exit $((a | b))) 2>&1");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(hub.count("GET", "/cdn/"), 1) << out;
  EXPECT_EQ(sha256(read_all((repo_cache("models--tfcpp--again") / "blobs" / sha256(weights)).string())),
            sha256(weights));
}

TEST_F(HubTest, PushToHubCommitPayloadAndRoundTrip) {
  auto model = AutoModelForCausalLM::from_pretrained(stories_dir());
  model->add_model_tags({"tfcpp-test"});
  hub::PushToHubOptions o;
  o.token = hub.token;
  o.commit_message = "first upload";
  hub::CommitInfo info = model->push_to_hub("me/pushed", o);
  EXPECT_FALSE(info.commit_oid.empty());
  EXPECT_EQ(info.lfs_files, std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(hub.count("POST", "/api/repos/create"), 1);
  EXPECT_EQ(hub.count("POST", "/preupload/main"), 1);
  EXPECT_EQ(hub.count("POST", "me/pushed.git/info/lfs/objects/batch"), 1);
  EXPECT_EQ(hub.count("PUT", "/lfs-upload/"), 1);
  EXPECT_EQ(hub.count("POST", "/lfs-verify"), 1);
  std::string body;
  for (const auto& r : hub.requests())
    if (r.path == "/api/models/me/pushed/commit/main") body = r.body;
  std::istringstream lines(body);
  std::string line;
  std::map<std::string, nlohmann::json> ops;
  std::getline(lines, line);
  auto header = nlohmann::json::parse(line);
  EXPECT_EQ(header["key"], "header");
  EXPECT_EQ(header["value"]["summary"], "first upload");
  while (std::getline(lines, line)) {
    auto op = nlohmann::json::parse(line);
    ops[op["value"]["path"].get<std::string>()] = op;
  }
  ASSERT_TRUE(ops.count("model.safetensors") && ops.count("config.json") && ops.count("README.md"));
  EXPECT_EQ(ops["model.safetensors"]["key"], "lfsFile");
  EXPECT_EQ(ops["model.safetensors"]["value"]["algo"], "sha256");
  EXPECT_EQ(ops["config.json"]["key"], "file");
  EXPECT_EQ(ops["config.json"]["value"]["encoding"], "base64");
  auto pushed_config = nlohmann::json::parse(base64_decode(ops["config.json"]["value"]["content"].get<std::string>()));
  EXPECT_EQ(pushed_config["model_type"], "llama");
  EXPECT_NE(base64_decode(ops["README.md"]["value"]["content"].get<std::string>()).find("tfcpp-test"),
            std::string::npos);

  // Download it back.
  setenv("HF_TOKEN", hub.token.c_str(), 1);
  auto back = AutoModelForCausalLM::from_pretrained("me/pushed");
  EXPECT_TRUE(tfcpp_test::tensors_close("logits", logits_of(*back), logits_of(*model), 0, 0));
  const std::string oid = ops["model.safetensors"]["value"]["oid"].get<std::string>();
  EXPECT_TRUE(fs::exists(repo_cache("models--me--pushed") / "blobs" / oid));

  // A second push of the same weights skips the LFS upload (the batch answers without actions).
  hub.clear_log();
  TempDir saved;
  SavePretrainedOptions so;
  so.push_to_hub = true;
  so.repo_id = "me/pushed";
  so.hub.token = hub.token;
  model->save_pretrained(saved.str(), so);
  EXPECT_EQ(hub.count("PUT"), 0);
  EXPECT_EQ(hub.count("POST", "/commit/main"), 1);
}

TEST_F(HubTest, CliDownloadUploadAndHubModelIds) {
  const std::string commit = hub.add_folder("tfcpp/stories260K", stories_dir());
  const std::string bin = tfcpp_test::tfcpp_bin();
  auto [rc, out] = tfcpp_test::run_command(bin + " download tfcpp/stories260K --include '*.json'");
  ASSERT_EQ(rc, 0) << out;
  const fs::path snapshot = repo_cache("models--tfcpp--stories260K") / "snapshots" / commit;
  EXPECT_EQ(out, snapshot.string() + "\n");
  EXPECT_TRUE(fs::exists(snapshot / "tokenizer.json"));
  EXPECT_FALSE(fs::exists(snapshot / "model.safetensors"));
  std::tie(rc, out) = tfcpp_test::run_command(bin + " generate --model tfcpp/stories260K --prompt 'Once upon a time' "
                                                    "--max-new-tokens 8 2>/dev/null");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.rfind("Once upon a time", 0), 0u) << out;
  std::tie(rc, out) = tfcpp_test::run_command(bin + " info --model tfcpp/missing 2>&1");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("not a valid model identifier"), std::string::npos) << out;
  std::tie(rc, out) = tfcpp_test::run_command("HF_TOKEN=" + hub.token + " " + bin + " upload --model " +
                                              stories_dir() + " --repo-id me/cli --commit-message 'from the cli'");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("/me/cli/commit/"), std::string::npos) << out;
  EXPECT_EQ(hub.count("PUT", "/lfs-upload/"), 0) << "the weights are already in the LFS store";
  std::tie(rc, out) = tfcpp_test::run_command(bin + " cache ls");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("tfcpp/stories260K"), std::string::npos) << out;
  EXPECT_NE(out.find(snapshot.parent_path().parent_path().string()), std::string::npos) << out;
  std::tie(rc, out) = tfcpp_test::run_command(bin + " cache rm tfcpp/stories260K");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_FALSE(fs::exists(repo_cache("models--tfcpp--stories260K")));
  EXPECT_EQ(tfcpp_test::run_command(bin + " cache rm tfcpp/stories260K 2>/dev/null").first, 1);
}

}  // namespace
