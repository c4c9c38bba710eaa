// Uploads, as huggingface_hub 0.22: hf_api.py create_repo / create_commit / upload_folder, _commit_api.py
// (_fetch_upload_modes, _prepare_commit_payload), lfs.py (post_lfs_batch_info, lfs_upload); and transformers'
// PushToHubMixin.push_to_hub (utils/hub.py).
#include "core/hub_http.h"
#include "transformers/config.h"
#include "transformers/errors.h"
#include "transformers/hub.h"
#include "transformers/modeling_utils.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace fs = std::filesystem;

namespace transformers::hub {

using detail::HttpRequest;
using detail::HttpResponse;
using njson = nlohmann::json;

namespace {

std::string api_endpoint(const PushToHubOptions& o) {
  std::string e = o.endpoint.empty() ? endpoint() : o.endpoint;
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

HttpResponse post_json(const std::string& url, const njson& body, std::map<std::string, std::string> headers,
                       const std::string& content_type = "application/json") {
  HttpRequest r;
  r.method = "POST";
  r.url = url;
  r.headers = std::move(headers);
  r.headers["content-type"] = content_type;
  r.body = body.dump();
  r.timeout_s = 60;
  return detail::perform(r);
}

njson parse_json(const HttpResponse& r, const std::string& what) {
  try {
    return njson::parse(r.body);
  } catch (const std::exception& e) {
    throw HubHTTPError("Malformed response from the " + what + " endpoint (" + r.url + "): " + e.what());
  }
}

struct Addition {
  std::string path_in_repo, local_path, sha256, sample;
  int64_t size = 0;
  std::string upload_mode = "regular";
  bool should_ignore = false;
};

std::string read_file(const std::string& path, size_t limit = std::string::npos) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw HubError("cannot read " + path);
  if (limit == std::string::npos) {
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string out(limit, '\0');
  in.read(out.data(), static_cast<std::streamsize>(limit));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

// PUT `size` bytes of `path` from `offset` to `url`; returns the response (its etag for multipart parts).
HttpResponse put_file(const std::string& url, const std::string& path, int64_t offset, int64_t size) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw HubError("cannot read " + path);
  std::fseek(f, static_cast<long>(offset), SEEK_SET);
  HttpRequest r;
  r.method = "PUT";
  r.url = url;
  r.upload_file = f;
  r.upload_size = size;
  r.timeout_s = 60;
  HttpResponse resp;
  try {
    resp = detail::perform(r);
  } catch (...) {
    std::fclose(f);
    throw;
  }
  std::fclose(f);
  detail::raise_for_status(resp, "lfs upload");
  return resp;
}

// lfs.py lfs_upload: nothing when the object is already there, else single or multi-part PUT, then verify.
void lfs_upload(const Addition& op, const njson& action, const std::map<std::string, std::string>& headers) {
  if (!action.contains("actions") || action["actions"].is_null()) return;
  const njson& actions = action["actions"];
  if (!actions.contains("upload") || !actions["upload"].contains("href"))
    throw HubHTTPError("Malformed response from the LFS batch endpoint: no upload action for " + op.path_in_repo);
  const njson& upload = actions["upload"];
  const std::string href = upload["href"].get<std::string>();
  njson header = upload.value("header", njson::object());
  if (header.contains("chunk_size")) {
    int64_t chunk = 0;
    try {
      chunk = header["chunk_size"].is_string() ? std::stoll(header["chunk_size"].get<std::string>())
                                               : header["chunk_size"].get<int64_t>();
    } catch (const std::exception&) {
      throw HubHTTPError("Malformed response from LFS batch endpoint: `chunk_size` should be an integer.");
    }
    std::vector<std::pair<int, std::string>> parts;
    for (auto& [k, v] : header.items())
      if (!k.empty() && std::all_of(k.begin(), k.end(), ::isdigit)) parts.emplace_back(std::stoi(k), v.get<std::string>());
    std::sort(parts.begin(), parts.end());
    if (chunk <= 0 || static_cast<int64_t>(parts.size()) != (op.size + chunk - 1) / chunk)
      throw HubHTTPError("Invalid server response to upload large LFS file " + op.path_in_repo);
    njson completion = {{"oid", op.sha256}, {"parts", njson::array()}};
    for (size_t i = 0; i < parts.size(); ++i) {
      int64_t offset = static_cast<int64_t>(i) * chunk;
      HttpResponse r = put_file(parts[i].second, op.local_path, offset, std::min(chunk, op.size - offset));
      if (r.header("etag").empty())
        throw HubHTTPError("Invalid etag returned for part " + std::to_string(i + 1) + " of " + op.path_in_repo);
      completion["parts"].push_back({{"partNumber", i + 1}, {"etag", r.header("etag")}});
    }
    HttpResponse done = post_json(href, completion, {{"accept", "application/vnd.git-lfs+json"}},
                                  "application/vnd.git-lfs+json");
    detail::raise_for_status(done, "lfs multipart completion");
  } else {
    put_file(href, op.local_path, 0, op.size);
  }
  if (actions.contains("verify") && actions["verify"].contains("href")) {
    HttpResponse v = post_json(actions["verify"]["href"].get<std::string>(), {{"oid", op.sha256}, {"size", op.size}},
                               headers);
    detail::raise_for_status(v, "lfs verify");
  }
}

std::string temp_folder() {
  std::random_device rd;
  fs::path p = fs::temp_directory_path() / ("tfcpp_push_" + std::to_string(rd()) + std::to_string(rd()));
  fs::create_directories(p);
  return p.string();
}

struct RemoveOnExit {
  std::string path;
  ~RemoveOnExit() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

std::string create_repo(const std::string& repo_id, const PushToHubOptions& o, bool exist_ok) {
  auto slash = repo_id.find('/');
  njson body = {{"name", slash == std::string::npos ? repo_id : repo_id.substr(slash + 1)},
                {"organization", slash == std::string::npos ? njson(nullptr) : njson(repo_id.substr(0, slash))},
                {"private", o.private_repo}};
  if (o.repo_type != "model") body["type"] = o.repo_type;
  auto headers = detail::build_hf_headers(o.token, /*is_write_action=*/true);
  HttpResponse r = post_json(api_endpoint(o) + "/api/repos/create", body, headers);
  if (exist_ok && r.status == 409) {
    std::string prefix = o.repo_type == "model" ? "" : o.repo_type + "s/";
    return api_endpoint(o) + "/" + prefix + repo_id;
  }
  detail::raise_for_status(r, "create_repo");
  njson j = parse_json(r, "create_repo");
  return j.value("url", api_endpoint(o) + "/" + repo_id);
}

CommitInfo upload_folder(const std::string& repo_id, const std::string& folder, const PushToHubOptions& o) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw HubError("upload_folder: " + folder + " is not a folder");
  const std::string revision = o.revision.empty() ? "main" : o.revision;
  const std::string quoted_revision = detail::url_quote(revision, "");
  const std::string base = api_endpoint(o);
  const std::string type_path = o.repo_type + "s";
  const std::string type_prefix = o.repo_type == "model" ? "" : o.repo_type + "s/";
  auto headers = detail::build_hf_headers(o.token, /*is_write_action=*/true);

  // CommitOperationAdd for every file; hidden files and folders (.git, .cache) are skipped, as upload_folder's
  // default ignore patterns.
  std::vector<Addition> additions;
  for (auto it = fs::recursive_directory_iterator(folder); it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    Addition a;
    a.local_path = it->path().string();
    a.path_in_repo = it->path().lexically_relative(folder).generic_string();
    a.size = static_cast<int64_t>(it->file_size());
    a.sha256 = sha256_file(a.local_path);
    a.sample = read_file(a.local_path, 512);
    additions.push_back(std::move(a));
  }
  std::sort(additions.begin(), additions.end(),
            [](const Addition& a, const Addition& b) { return a.path_in_repo < b.path_in_repo; });
  if (additions.empty()) throw HubError("upload_folder: " + folder + " has no files to upload");

  // _fetch_upload_modes: the Hub says which files go through LFS (by size, extension and .gitattributes).
  std::string create_pr_query = o.create_pr ? "?create_pr=1" : "";
  for (size_t start = 0; start < additions.size(); start += 256) {
    njson payload = {{"files", njson::array()}};
    for (size_t i = start; i < std::min(additions.size(), start + 256); ++i)
      payload["files"].push_back({{"path", additions[i].path_in_repo},
                                  {"sample", detail::base64_encode(additions[i].sample)},
                                  {"size", additions[i].size},
                                  {"sha", additions[i].sha256}});
    HttpResponse r = post_json(base + "/api/" + type_path + "/" + repo_id + "/preupload/" + quoted_revision +
                                   create_pr_query,
                               payload, headers);
    detail::raise_for_status(r, "preupload");
    njson info = parse_json(r, "preupload");
    if (!info.contains("files") || !info["files"].is_array())
      throw HubHTTPError("Malformed response from the preupload endpoint (" + r.url + "): no 'files' list");
    for (const auto& f : info["files"]) {
      if (!f.contains("path") || !f.contains("uploadMode")) continue;
      for (auto& a : additions)
        if (a.path_in_repo == f["path"].get<std::string>()) {
          a.upload_mode = f["uploadMode"].get<std::string>();
          a.should_ignore = f.value("shouldIgnore", false);
        }
    }
  }
  for (auto& a : additions)
    if (a.size == 0) a.upload_mode = "regular";  // S3 refuses empty LFS objects

  // upload_lfs_files: one batch request, then each object's actions.
  std::vector<const Addition*> lfs;
  for (const auto& a : additions)
    if (a.upload_mode == "lfs" && !a.should_ignore) lfs.push_back(&a);
  if (!lfs.empty()) {
    njson payload = {{"operation", "upload"},
                     {"transfers", {"basic", "multipart"}},
                     {"objects", njson::array()},
                     {"hash_algo", "sha256"},
                     {"ref", {{"name", revision}}}};
    for (const Addition* a : lfs) payload["objects"].push_back({{"oid", a->sha256}, {"size", a->size}});
    auto lfs_headers = headers;
    lfs_headers["accept"] = "application/vnd.git-lfs+json";
    HttpResponse r = post_json(base + "/" + type_prefix + repo_id + ".git/info/lfs/objects/batch", payload,
                               lfs_headers, "application/vnd.git-lfs+json");
    detail::raise_for_status(r, "lfs batch");
    njson batch = parse_json(r, "LFS batch");
    if (!batch.contains("objects") || !batch["objects"].is_array())
      throw HubHTTPError("Malformed response from the LFS batch endpoint (" + r.url + ")");
    for (const auto& object : batch["objects"]) {
      if (object.contains("error"))
        throw HubHTTPError("Encountered an error for the LFS object " + object.value("oid", std::string()) + ": " +
                           object["error"].dump());
      const std::string oid = object.value("oid", std::string());
      for (const Addition* a : lfs)
        if (a->sha256 == oid) lfs_upload(*a, object, headers);
    }
  }

  // _prepare_commit_payload as NDJSON.
  CommitInfo info;
  std::string body;
  const std::string message = o.commit_message.empty() ? "Upload folder using tfcpp" : o.commit_message;
  body += njson({{"key", "header"}, {"value", {{"summary", message}, {"description", o.commit_description}}}}).dump();
  body += "\n";
  for (const auto& a : additions) {
    if (a.should_ignore) continue;
    if (a.upload_mode == "lfs") {
      body += njson({{"key", "lfsFile"},
                     {"value", {{"path", a.path_in_repo}, {"algo", "sha256"}, {"oid", a.sha256}, {"size", a.size}}}})
                  .dump();
      info.lfs_files.push_back(a.path_in_repo);
    } else {
      body += njson({{"key", "file"},
                     {"value",
                      {{"content", detail::base64_encode(read_file(a.local_path))},
                       {"path", a.path_in_repo},
                       {"encoding", "base64"}}}})
                  .dump();
      info.regular_files.push_back(a.path_in_repo);
    }
    body += "\n";
  }
  HttpRequest commit;
  commit.method = "POST";
  commit.url = base + "/api/" + type_path + "/" + repo_id + "/commit/" + quoted_revision + create_pr_query;
  commit.headers = headers;
  commit.headers["content-type"] = "application/x-ndjson";
  commit.body = std::move(body);
  commit.timeout_s = 60;
  HttpResponse r = detail::perform(commit);
  try {
    detail::raise_for_status(r, "commit");
  } catch (const RepositoryNotFoundError& e) {
    throw RepositoryNotFoundError(std::string(e.what()) +
                                  "\nNote: Creating a commit assumes that the repo already exists on the Hub. Use "
                                  "create_repo (or push_to_hub, which creates it) first.");
  }
  njson j = parse_json(r, "commit");
  info.commit_url = j.value("commitUrl", std::string());
  info.commit_oid = j.value("commitOid", std::string());
  if (o.create_pr && j.contains("pullRequestUrl") && j["pullRequestUrl"].is_string())
    info.pr_url = j["pullRequestUrl"].get<std::string>();
  return info;
}

CommitInfo push_to_hub(const std::string& repo_id, const std::string& folder, const PushToHubOptions& options) {
  create_repo(repo_id, options, /*exist_ok=*/true);
  return upload_folder(repo_id, folder, options);
}

CommitInfo push_to_hub(PreTrainedModel& model, const std::string& repo_id, const PushToHubOptions& options) {
  RemoveOnExit tmp{temp_folder()};
  model.save_pretrained(tmp.path);
  PushToHubOptions o = options;
  if (o.commit_message.empty()) o.commit_message = "Upload " + model.class_name;
  return push_to_hub(repo_id, tmp.path, o);
}

CommitInfo push_to_hub(const PretrainedConfig& config, const std::string& repo_id, const PushToHubOptions& options) {
  RemoveOnExit tmp{temp_folder()};
  config.save_pretrained(tmp.path);
  PushToHubOptions o = options;
  if (o.commit_message.empty()) o.commit_message = "Upload config";
  return push_to_hub(repo_id, tmp.path, o);
}

}  // namespace transformers::hub

namespace transformers {

hub::CommitInfo PreTrainedModel::push_to_hub(const std::string& repo_id, const hub::PushToHubOptions& options) {
  return hub::push_to_hub(*this, repo_id, options);
}

}  // namespace transformers
