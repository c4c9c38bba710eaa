// Port of huggingface_hub 0.22 file_download.py (hf_hub_download, try_to_load_from_cache, get_hf_file_metadata,
// http_get), constants.py and utils/_token.py; and of transformers 4.40 utils/hub.py cached_file.
#include "transformers/hub.h"

#include "core/hub_http.h"
#include "transformers/errors.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace transformers::hub {

using detail::HttpRequest;
using detail::HttpResponse;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool is_true(const std::string& value) {
  std::string v = value;
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::toupper(c); });
  return v == "1" || v == "ON" || v == "YES" || v == "TRUE";
}

std::string expand_user(const std::string& path) {
  if (!path.empty() && path[0] == '~') return env("HOME") + path.substr(1);
  return path;
}

long env_timeout(const char* name, long fallback) {
  std::string v = env(name);
  if (v.empty()) return fallback;
  try {
    return std::stol(v);
  } catch (const std::exception&) {
    return fallback;
  }
}

const std::regex& commit_hash_re() {
  static const std::regex re("^[0-9a-f]{40}$");
  return re;
}

bool is_commit_hash(const std::string& revision) { return std::regex_match(revision, commit_hash_re()); }

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  fs::path tmp = path;
  tmp += ".tmp" + std::to_string(::getpid()) + "_" + std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw HubError("cannot write " + path.string() + ": check the cache folder's permissions");
  }
  fs::rename(tmp, path);
}

void touch(const fs::path& path) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::app);
}

// _normalize_etag: W/"x" and "x" -> x
std::string normalize_etag(std::string etag) {
  if (etag.rfind("W/", 0) == 0) etag = etag.substr(2);
  etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
  return etag;
}

std::optional<int64_t> int_or_none(const std::string& value) {
  if (value.empty()) return std::nullopt;
  try {
    size_t used = 0;
    int64_t v = std::stoll(value, &used);
    if (used != value.size()) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// _cache_commit_hash_for_specific_revision
void cache_commit_hash_for_revision(const fs::path& storage, const std::string& revision, const std::string& commit) {
  if (revision == commit) return;
  fs::path ref = storage / "refs" / revision;
  std::error_code ec;
  if (!fs::exists(ref, ec) || read_text(ref) != commit) write_text(ref, commit);
}

// _get_pointer_path: snapshots/<revision>/<file>, refusing paths that escape the snapshot folder.
fs::path pointer_path(const fs::path& storage, const std::string& revision, const std::string& relative_filename) {
  fs::path snapshots = fs::absolute(storage / "snapshots").lexically_normal();
  fs::path pointer = fs::absolute(storage / "snapshots" / revision / relative_filename).lexically_normal();
  auto rel = pointer.lexically_relative(snapshots);
  if (rel.empty() || *rel.begin() == ".." || rel == ".")
    throw ValueError("Invalid pointer path: cannot create pointer path in snapshot folder if storage_folder='" +
                     storage.string() + "', revision='" + revision + "' and relative_filename='" + relative_filename +
                     "'.");
  return storage / "snapshots" / revision / relative_filename;
}

// _create_symlink: a relative link dst -> src (so the cache can be moved).
void make_cache_symlink(const fs::path& src, const fs::path& dst) {
  std::error_code ec;
  fs::remove(dst, ec);
  fs::path abs_src = fs::absolute(src).lexically_normal(), abs_dst = fs::absolute(dst).lexically_normal();
  fs::path relative = abs_src.lexically_relative(abs_dst.parent_path());
  fs::create_directories(abs_dst.parent_path());
  fs::create_symlink(relative.empty() ? abs_src : relative, abs_dst, ec);
  if (ec) {
    // Created concurrently between remove and symlink: fine if it points at the same blob.
    std::error_code ec2;
    if (fs::is_symlink(abs_dst, ec2) && fs::equivalent(abs_dst, abs_src, ec2)) return;
    throw HubError("cannot create the cache link " + abs_dst.string() + " -> " + relative.string() + ": " +
                   ec.message());
  }
}

// An exclusive flock on .locks/<repo folder>/<etag>.lock for the lifetime of the object.
class FileLock {
 public:
  explicit FileLock(const fs::path& path) {
    fs::create_directories(path.parent_path());
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw HubError("cannot open the lock file " + path.string() + ": check the cache's permissions");
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        ::close(fd_);
        throw HubError("cannot lock " + path.string());
      }
    }
  }
  ~FileLock() {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// tqdm-like bar on stderr when it is a terminal: "name: 45%|####      | 12.3M/27.0M [00:02<00:03, 5.10MB/s]".
class ProgressBar {
 public:
  ProgressBar(std::string name, int64_t initial, std::optional<int64_t> total)
      : name_(std::move(name)), done_(initial), initial_(initial), total_(total) {
    const std::string disable = env("HF_HUB_DISABLE_PROGRESS_BARS");
    enabled_ = ::isatty(2) && !is_true(disable);
    if (name_.size() > 40) name_ = "(…)" + name_.substr(name_.size() - 40);
    start_ = last_ = std::chrono::steady_clock::now();
  }
  void update(int64_t n) {
    done_ += n;
    if (!enabled_) return;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    draw(false);
  }
  void close() {
    if (enabled_) draw(true);
  }

 private:
  static std::string human(double bytes) {
    const char* units[] = {"", "k", "M", "G", "T"};
    int u = 0;
    while (bytes >= 1000 && u < 4) bytes /= 1000, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.1f%s", bytes, units[u]);
    return buf;
  }
  static std::string clock(double s) {
    char buf[32];
    long t = static_cast<long>(s);
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", t / 60, t % 60);
    return buf;
  }
  void draw(bool final) {
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    double rate = elapsed > 0 ? (done_ - initial_) / elapsed : 0;
    std::string line = name_ + ": ";
    if (total_ && *total_ > 0) {
      int pct = static_cast<int>(100.0 * done_ / *total_);
      int filled = std::min(10, pct / 10);
      double eta = rate > 0 ? (*total_ - done_) / rate : 0;
      line += std::to_string(pct) + "%|" + std::string(filled, '#') + std::string(10 - filled, ' ') + "| " +
              human(done_) + "/" + human(*total_) + " [" + clock(elapsed) + "<" + clock(eta) + ", " + human(rate) +
              "B/s]";
    } else {
      line += human(done_) + " [" + clock(elapsed) + ", " + human(rate) + "B/s]";
    }
    std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
    std::fflush(stderr);
  }
  std::string name_;
  int64_t done_, initial_;
  std::optional<int64_t> total_;
  bool enabled_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

std::string sha256_hex(EVP_MD_CTX* ctx) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, digest, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

struct FileMetadata {
  std::string commit_hash, etag, location;
  std::optional<int64_t> size;
};

// get_hf_file_metadata: HEAD without redirects except relative ones (renamed repos); the CDN Location is kept.
HttpResponse head_following_relative(HttpRequest request) {
  for (int hops = 0; hops < 10; ++hops) {
    HttpResponse r = detail::perform(request);
    if (r.status >= 300 && r.status <= 399 && r.has_header("location")) {
      const std::string location = r.header("location");
      if (location.find("://") == std::string::npos && !location.empty() && location[0] == '/') {
        auto scheme = request.url.find("://");
        auto path_start = request.url.find('/', scheme + 3);
        request.url = request.url.substr(0, path_start) + location;
        continue;
      }
    }
    return r;
  }
  throw HubHTTPError("too many redirects for " + request.url);
}

std::string netloc(const std::string& url) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos) return "";
  auto end = url.find('/', scheme + 3);
  return url.substr(scheme + 3, end == std::string::npos ? std::string::npos : end - scheme - 3);
}

// http_get: streams into `incomplete` (appending from its current size with Range), retrying a dropped connection
// up to 5 times from where it stopped, then checks the size against expected_size.
void http_get(const std::string& url, const fs::path& incomplete, const std::map<std::string, std::string>& headers,
              std::optional<int64_t> expected_size, const std::string& displayed_filename) {
  std::error_code ec;
  auto current_size = [&] { return fs::exists(incomplete, ec) ? static_cast<int64_t>(fs::file_size(incomplete)) : 0; };
  int64_t resume_size = current_size();
  ProgressBar progress(displayed_filename, resume_size, expected_size);
  for (int retries = 5;;) {
    std::FILE* out = std::fopen(incomplete.c_str(), resume_size > 0 ? "ab" : "wb");
    if (!out) throw HubError("cannot write " + incomplete.string() + ": check the cache folder's permissions");
    HttpRequest request;
    request.url = url;
    request.headers = headers;
    if (resume_size > 0) request.headers["range"] = "bytes=" + std::to_string(resume_size) + "-";
    request.follow_redirects = true;
    request.timeout_s = env_timeout("HF_HUB_DOWNLOAD_TIMEOUT", 10);
    int64_t received = 0;
    bool write_failed = false;
    request.sink = [&](const char* data, size_t n) {
      if (std::fwrite(data, 1, n, out) != n) {
        write_failed = true;
        return false;
      }
      received += static_cast<int64_t>(n);
      progress.update(static_cast<int64_t>(n));
      return true;
    };
    HttpResponse r;
    std::string dropped;
    try {
      r = detail::perform(request);
    } catch (const HubConnectionError& e) {
      dropped = e.what();
    }
    std::fclose(out);
    if (write_failed) throw HubError("cannot write " + incomplete.string() + ": is the disk full?");
    if (dropped.empty()) {
      if (r.status == 416 && expected_size && resume_size == *expected_size) break;  // was already complete
      detail::raise_for_status(r);
      if (resume_size > 0 && r.status == 200) {
        // The server ignored Range and sent the whole file after the partial one: keep only the new copy.
        std::ifstream in(incomplete, std::ios::binary);
        in.seekg(resume_size);
        fs::path fresh = incomplete;
        fresh += ".restart";
        {
          std::ofstream copy(fresh, std::ios::binary | std::ios::trunc);
          copy << in.rdbuf();
        }
        fs::rename(fresh, incomplete);
      }
      break;
    }
    resume_size = current_size();
    if (received > 0) retries = 5;  // some data came: reset the retries, as huggingface_hub does
    if (--retries < 0)
      throw HubConnectionError("Error while downloading from " + url + ": " + dropped +
                               "\nMax retries exceeded. Run the same call again: the download resumes from " +
                               std::to_string(resume_size) + " bytes.");
    std::this_thread::sleep_for(std::chrono::milliseconds(received > 0 ? 10 : 1000));
  }
  progress.close();
  int64_t size = current_size();
  if (expected_size && *expected_size != size)
    throw HubError("Consistency check failed: file should be of size " + std::to_string(*expected_size) +
                   " but has size " + std::to_string(size) + " (" + displayed_filename +
                   ").\nPlease retry the download with force_download=true.");
}

fs::path storage_folder(const HubOptions& o, const std::string& repo_id) {
  std::string cache = o.cache_dir.empty() ? hf_hub_cache() : expand_user(o.cache_dir);
  return fs::path(cache) / repo_folder_name(repo_id, o.repo_type);
}

// validate_repo_id: "name" or "namespace/name" of [\w.-], no "--" or "..", not starting or ending with '-' or '.'.
bool valid_repo_id(const std::string& repo_id) {
  static const std::regex re(R"(^(\b[\w\-.]+\b/)?\b[\w\-.]{1,96}\b$)");
  return std::regex_match(repo_id, re) && repo_id.find("--") == std::string::npos &&
         repo_id.find("..") == std::string::npos;
}

void check_repo_type(const std::string& repo_type) {
  if (repo_type != "model" && repo_type != "dataset" && repo_type != "space")
    throw ValueError("Invalid repo type: " + repo_type + ". Accepted repo types are: model, dataset, space.");
}

}  // namespace

// ---- constants.py ----------------------------------------------------------------------------------------------

std::string hf_home() {
  std::string home = env("HF_HOME");
  if (home.empty()) {
    std::string xdg = env("XDG_CACHE_HOME");
    home = (fs::path(xdg.empty() ? expand_user("~/.cache") : xdg) / "huggingface").string();
  }
  return expand_user(home);
}

std::string hf_hub_cache() {
  std::string cache = env("HF_HUB_CACHE");
  if (cache.empty()) cache = env("HUGGINGFACE_HUB_CACHE");
  if (cache.empty()) cache = (fs::path(hf_home()) / "hub").string();
  return expand_user(cache);
}

std::string endpoint() {
  std::string e = env("HF_ENDPOINT");
  if (e.empty()) e = is_true(env("HUGGINGFACE_CO_STAGING")) ? "https://hub-ci.huggingface.co" : "https://huggingface.co";
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

bool is_offline_mode() {
  std::string v = env("HF_HUB_OFFLINE");
  if (v.empty()) v = env("TRANSFORMERS_OFFLINE");
  return is_true(v);
}

std::optional<std::string> get_token() {
  auto clean = [](std::string t) {
    t.erase(std::remove_if(t.begin(), t.end(), [](char c) { return c == '\n' || c == '\r'; }), t.end());
    while (!t.empty() && t.back() == ' ') t.pop_back();
    return t;
  };
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}) {
    std::string t = clean(env(name));
    if (!t.empty()) return t;
  }
  std::error_code ec;
  fs::path file = fs::path(hf_home()) / "token";
  if (fs::is_regular_file(file, ec)) {
    std::string t = clean(read_text(file));
    if (!t.empty()) return t;
  }
  return std::nullopt;
}

std::string repo_folder_name(const std::string& repo_id, const std::string& repo_type) {
  std::string out = repo_type + "s";
  std::stringstream ss(repo_id);
  std::string part;
  while (std::getline(ss, part, '/')) out += "--" + part;
  return out;
}

std::string hf_hub_url(const std::string& repo_id, const std::string& filename, const HubOptions& o) {
  check_repo_type(o.repo_type);
  std::string file = o.subfolder.empty() ? filename : o.subfolder + "/" + filename;
  std::string prefix = o.repo_type == "dataset" ? "datasets/" : o.repo_type == "space" ? "spaces/" : "";
  std::string revision = o.revision.empty() ? "main" : o.revision;
  std::string base = o.endpoint.empty() ? endpoint() : o.endpoint;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + "/" + prefix + repo_id + "/resolve/" + detail::url_quote(revision, "") + "/" +
         detail::url_quote(file, "/");
}

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw HubError("cannot read " + path);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx, buffer.data(), static_cast<size_t>(in.gcount()));
  }
  std::string out = sha256_hex(ctx);
  EVP_MD_CTX_free(ctx);
  return out;
}

// ---- file_download.py ------------------------------------------------------------------------------------------

CacheLookup try_to_load_from_cache(const std::string& repo_id, const std::string& filename,
                                   const std::string& cache_dir, const std::string& revision_in,
                                   const std::string& repo_type) {
  check_repo_type(repo_type);
  std::string revision = revision_in.empty() ? "main" : revision_in;
  fs::path repo_cache = fs::path(cache_dir.empty() ? hf_hub_cache() : expand_user(cache_dir)) /
                        repo_folder_name(repo_id, repo_type);
  std::error_code ec;
  if (!fs::is_directory(repo_cache, ec)) return {};
  fs::path revision_file = repo_cache / "refs" / revision;
  if (fs::is_regular_file(revision_file, ec)) revision = read_text(revision_file);
  if (fs::is_regular_file(repo_cache / ".no_exist" / revision / filename, ec)) return {CacheLookup::kNoExist, ""};
  if (!fs::is_directory(repo_cache / "snapshots" / revision, ec)) return {};
  fs::path cached = repo_cache / "snapshots" / revision / filename;
  if (fs::is_regular_file(cached, ec)) return {CacheLookup::kFound, cached.string()};
  return {};
}

std::string hf_hub_download(const std::string& repo_id, const std::string& filename_in, const HubOptions& o) {
  check_repo_type(o.repo_type);
  if (!valid_repo_id(repo_id))
    throw ValueError("Repo id must be 'name' or 'namespace/name' (no '--' or '..'): '" + repo_id + "'");
  const std::string filename = o.subfolder.empty() ? filename_in : o.subfolder + "/" + filename_in;
  const std::string revision = o.revision.empty() ? "main" : o.revision;
  const std::string cache_dir = o.cache_dir.empty() ? hf_hub_cache() : expand_user(o.cache_dir);
  const fs::path storage = storage_folder(o, repo_id);
  const fs::path locks = fs::path(cache_dir) / ".locks";
  const bool local_files_only = o.local_files_only || is_offline_mode();
  std::error_code ec;

  // A commit hash already on disk: no request at all.
  if (is_commit_hash(revision)) {
    fs::path pointer = pointer_path(storage, revision, filename);
    if (fs::exists(pointer, ec)) return pointer.string();
  }

  HubOptions url_options = o;
  url_options.subfolder.clear();
  const std::string url = hf_hub_url(repo_id, filename, url_options);
  std::map<std::string, std::string> headers = detail::build_hf_headers(o.token);

  std::string url_to_download = url, etag, commit_hash;
  std::optional<int64_t> expected_size;
  std::exception_ptr head_call_error;
  bool head_error_is_repo = false;
  if (!local_files_only) {
    try {
      HttpRequest head;
      head.method = "HEAD";
      head.url = url;
      head.headers = headers;
      head.headers["accept-encoding"] = "identity";
      head.timeout_s = env_timeout("HF_HUB_ETAG_TIMEOUT", 10);
      HttpResponse r = head_following_relative(head);
      if (!r.ok() && !(r.status >= 300 && r.status <= 399)) {
        if (r.header("x-error-code") == "EntryNotFound") {
          // Cache the non-existence of the file, then raise.
          std::string commit = r.header("x-repo-commit");
          if (!commit.empty()) {
            touch(storage / ".no_exist" / commit / filename);
            cache_commit_hash_for_revision(storage, revision, commit);
          }
        }
        detail::raise_for_status(r);
      }
      commit_hash = r.header("x-repo-commit");
      if (commit_hash.empty())
        throw HubError("Distant resource does not seem to be on huggingface.co (no X-Repo-Commit header from " + url +
                       "). It is possible that a configuration issue prevents you from downloading resources from " +
                       "the Hub. Please check your firewall and proxy settings and HF_ENDPOINT.");
      etag = normalize_etag(r.has_header("x-linked-etag") ? r.header("x-linked-etag") : r.header("etag"));
      if (etag.empty())
        throw HubError("Distant resource does not have an ETag (" + url +
                       "), we won't be able to reliably ensure reproducibility.");
      expected_size = int_or_none(r.has_header("x-linked-size") ? r.header("x-linked-size") : r.header("content-length"));
      std::string location = r.has_header("location") ? r.header("location") : r.url;
      if (location != url) {
        url_to_download = location;
        // Downloading from a CDN: the url is signed, don't send the token there.
        if (netloc(url) != netloc(url_to_download)) headers.erase("authorization");
      }
    } catch (const RevisionNotFoundError&) {
      throw;
    } catch (const LocalEntryNotFoundError&) {
      throw;
    } catch (const EntryNotFoundError&) {
      throw;
    } catch (const RepositoryNotFoundError&) {
      head_call_error = std::current_exception();
      head_error_is_repo = true;
    } catch (const HubError&) {
      // No connection, Hub down (5xx), bad proxy, missing headers: fall back to the cache.
      head_call_error = std::current_exception();
    }
  }

  if (etag.empty()) {
    if (o.force_download) {
      if (local_files_only)
        throw ValueError("Cannot pass force_download=true and local_files_only=true (or offline mode) at the same time.");
      std::rethrow_exception(head_call_error);
    }
    std::string commit;
    if (is_commit_hash(revision)) {
      commit = revision;
    } else if (fs::is_regular_file(storage / "refs" / revision, ec)) {
      commit = read_text(storage / "refs" / revision);
    }
    if (!commit.empty()) {
      fs::path pointer = pointer_path(storage, commit, filename);
      if (fs::exists(pointer, ec)) return pointer.string();
    }
    if (local_files_only)
      throw LocalEntryNotFoundError(
          "Cannot find the requested file '" + filename + "' of '" + repo_id + "' (revision '" + revision +
          "') in the disk cache " + cache_dir + " and outgoing traffic has been disabled" +
          (is_offline_mode() ? " (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set)" : " (local_files_only)") +
          ". To enable look-ups and downloads online, unset HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE and pass "
          "local_files_only=false, or download the file first while online.");
    if (head_error_is_repo) std::rethrow_exception(head_call_error);
    std::string cause;
    try {
      std::rethrow_exception(head_call_error);
    } catch (const std::exception& e) {
      cause = e.what();
    }
    throw LocalEntryNotFoundError(
        "An error happened while trying to locate the file '" + filename + "' of '" + repo_id +
        "' on the Hub and we cannot find the requested file in the local cache (" + cache_dir +
        "). Please check your connection and try again or make sure your Internet connection is on.\n" + cause);
  }

  const fs::path blob = storage / "blobs" / etag;
  const fs::path pointer = pointer_path(storage, commit_hash, filename);
  fs::create_directories(blob.parent_path());
  fs::create_directories(pointer.parent_path());
  cache_commit_hash_for_revision(storage, revision, commit_hash);

  if (fs::exists(pointer, ec) && !o.force_download) return pointer.string();
  if (fs::exists(blob, ec) && !o.force_download) {
    make_cache_symlink(blob, pointer);
    return pointer.string();
  }

  FileLock lock(locks / repo_folder_name(repo_id, o.repo_type) / (etag + ".lock"));
  if (fs::exists(pointer, ec) && !o.force_download) return pointer.string();
  if (fs::exists(blob, ec) && !o.force_download) {  // another process finished it while we waited
    make_cache_symlink(blob, pointer);
    return pointer.string();
  }
  fs::path incomplete = blob;
  incomplete += ".incomplete";
  if (o.force_download) fs::remove(incomplete, ec);
  http_get(url_to_download, incomplete, headers, expected_size, filename);

  // LFS files are named by their sha256: check the bytes against it and never cache a corrupt blob.
  static const std::regex sha256_re("^[0-9a-f]{64}$");
  if (std::regex_match(etag, sha256_re)) {
    std::string actual = sha256_file(incomplete.string());
    if (actual != etag) {
      fs::remove(incomplete, ec);
      throw HubError("Checksum mismatch for '" + filename + "' of '" + repo_id + "' downloaded from " +
                     url_to_download + ": expected sha256 " + etag + ", got " + actual +
                     ". The partial file was removed; retry the download (the file may have been corrupted in "
                     "transit or by a proxy).");
    }
  }
  // _chmod_and_replace: the blob gets the cache folder's default mode, not 0600.
  {
    fs::path probe = storage / ("tmp_" + std::to_string(::getpid()) + "_" +
                                std::to_string(std::hash<std::thread::id>()(std::this_thread::get_id())));
    touch(probe);
    fs::perms mode = fs::status(probe, ec).permissions();
    fs::remove(probe, ec);
    if (mode != fs::perms::unknown) fs::permissions(incomplete, mode, ec);
  }
  fs::rename(incomplete, blob);
  make_cache_symlink(blob, pointer);
  return pointer.string();
}

// ---- transformers utils/hub.py ---------------------------------------------------------------------------------

bool is_local_path(const std::string& path_or_repo_id) {
  std::error_code ec;
  return fs::is_directory(path_or_repo_id, ec);
}

std::string extract_commit_hash(const std::string& resolved_file) {
  static const std::regex re(R"(snapshots/([^/]+)/)");
  std::smatch m;
  std::string path = fs::path(resolved_file).generic_string();
  if (!std::regex_search(path, m, re)) return "";
  return is_commit_hash(m[1].str()) ? m[1].str() : "";
}

std::string cached_file(const std::string& path_or_repo_id, const std::string& filename, const HubOptions& options,
                        bool raise_for_missing, const std::string& commit_hash) {
  const std::string full_filename = options.subfolder.empty() ? filename : options.subfolder + "/" + filename;
  const std::string revision = options.revision.empty() ? "main" : options.revision;
  std::error_code ec;
  if (fs::is_directory(path_or_repo_id, ec)) {
    fs::path resolved = fs::path(path_or_repo_id) / full_filename;
    if (!fs::is_regular_file(resolved, ec)) {
      if (!raise_for_missing) return "";
      throw EntryNotFoundError(path_or_repo_id + " does not appear to have a file named " + full_filename + ".");
    }
    return resolved.string();
  }
  if (!valid_repo_id(path_or_repo_id))
    throw ConfigError("Incorrect path_or_model_id: '" + path_or_repo_id +
                      "'. Please provide either the path to a local folder or the repo_id of a model on the Hub "
                      "(namespace/name).");
  if (!commit_hash.empty() && !options.force_download) {
    CacheLookup hit = try_to_load_from_cache(path_or_repo_id, full_filename, options.cache_dir, commit_hash,
                                             options.repo_type);
    if (hit.status == CacheLookup::kFound) return hit.path;
    if (hit.status == CacheLookup::kNoExist) {
      if (!raise_for_missing) return "";
      throw EntryNotFoundError("Could not locate " + full_filename + " inside " + path_or_repo_id + ".");
    }
  }
  const std::string hub = options.endpoint.empty() ? endpoint() : options.endpoint;
  try {
    return hf_hub_download(path_or_repo_id, filename, options);
  } catch (const GatedRepoError& e) {
    throw GatedRepoError("You are trying to access a gated repo.\nMake sure to have access to it at " + hub + "/" +
                         path_or_repo_id + ".\n" + e.what());
  } catch (const RepositoryNotFoundError& e) {
    throw RepositoryNotFoundError(
        path_or_repo_id + " is not a local folder and is not a valid model identifier listed on '" + hub +
        "/models'\nIf this is a private repository, make sure to pass a token having permission to this repo either "
        "by logging in with `huggingface-cli login` (the token file $HF_HOME/token), HF_TOKEN, or the token "
        "option.\n" + e.what());
  } catch (const RevisionNotFoundError& e) {
    throw RevisionNotFoundError(revision + " is not a valid git identifier (branch name, tag name or commit id) that "
                                "exists for this model name. Check the model page at '" + hub + "/" +
                                path_or_repo_id + "' for available revisions.\n" + e.what());
  } catch (const LocalEntryNotFoundError& e) {
    if (!raise_for_missing) return "";
    throw LocalEntryNotFoundError(
        "We couldn't connect to '" + hub + "' to load this file, couldn't find it in the cached files and it looks "
        "like " + path_or_repo_id + " is not the path to a directory containing a file named " + full_filename +
        ".\nCheck your internet connection or see how to run the library in offline mode at "
        "'https://huggingface.co/docs/transformers/installation#offline-mode'.\n" + e.what());
  } catch (const EntryNotFoundError& e) {
    if (!raise_for_missing) return "";
    throw EntryNotFoundError(path_or_repo_id + " does not appear to have a file named " + full_filename +
                             ". Checkout '" + hub + "/" + path_or_repo_id + "/tree/" + revision +
                             "' for available files.\n" + e.what());
  }
}

namespace {

// The folder holding a resolved snapshot file (for a file in a subfolder, the snapshot root).
std::string snapshot_root(const std::string& resolved, const std::string& filename) {
  fs::path p(resolved);
  const fs::path name(filename);
  for (auto it = name.begin(); it != name.end(); ++it) p = p.parent_path();
  return p.string();
}

std::string add_variant(const std::string& name, const std::string& variant) {
  if (variant.empty()) return name;
  auto dot = name.rfind('.');
  return name.substr(0, dot) + "." + variant + name.substr(dot);
}

}  // namespace

std::string resolve_files(const std::string& path_or_repo_id, const std::vector<std::string>& files,
                          const std::vector<std::string>& optional_files, const HubOptions& options) {
  if (is_local_path(path_or_repo_id)) return path_or_repo_id;
  std::string root, commit;
  auto take = [&](const std::string& file, bool required) {
    std::string resolved = cached_file(path_or_repo_id, file, options, required, commit);
    if (resolved.empty()) return;
    if (commit.empty()) commit = extract_commit_hash(resolved);
    if (root.empty()) root = snapshot_root(resolved, options.subfolder.empty() ? file : options.subfolder + "/" + file);
  };
  for (const auto& f : files) take(f, true);
  for (const auto& f : optional_files) take(f, false);
  if (root.empty()) {
    // Nothing found: the snapshot folder of the revision's commit, when one is known.
    HubOptions o = options;
    std::string revision = o.revision.empty() ? "main" : o.revision;
    fs::path storage = storage_folder(o, path_or_repo_id);
    std::error_code ec;
    std::string c = is_commit_hash(revision) ? revision
                    : fs::is_regular_file(storage / "refs" / revision, ec) ? read_text(storage / "refs" / revision)
                                                                           : "";
    if (c.empty())
      throw LocalEntryNotFoundError("none of " + std::to_string(optional_files.size()) + " files could be found in " +
                                    path_or_repo_id + " at revision " + revision);
    root = (storage / "snapshots" / c).string();
    fs::create_directories(root);
  }
  return options.subfolder.empty() ? root : (fs::path(root) / options.subfolder).string();
}

std::string resolve_pretrained_model(const std::string& path_or_repo_id, const std::string& variant,
                                     const HubOptions& options, const std::vector<std::string>& optional_files) {
  if (is_local_path(path_or_repo_id)) return path_or_repo_id;
  // PretrainedConfig.from_pretrained: config.json first; its commit pins every later file (_commit_hash).
  std::string config = cached_file(path_or_repo_id, "config.json", options);
  const std::string commit = extract_commit_hash(config);
  const std::string root = snapshot_root(config, options.subfolder.empty() ? "config.json"
                                                                           : options.subfolder + "/config.json");
  // PreTrainedModel.from_pretrained (use_safetensors=None): safetensors, its index, then pytorch_model.bin and its index.
  auto fetch_index = [&](const std::string& index_name) {
    std::string index = cached_file(path_or_repo_id, index_name, options, false, commit);
    if (index.empty()) return false;
    // get_checkpoint_shard_files: every shard the weight_map names.
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw HubError(index + ": invalid JSON in the checkpoint index: " + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw HubError(index + ": the checkpoint index has no weight_map");
    std::vector<std::string> shards;
    for (auto& [k, v] : j["weight_map"].items())
      if (v.is_string() && std::find(shards.begin(), shards.end(), v.get<std::string>()) == shards.end())
        shards.push_back(v.get<std::string>());
    std::sort(shards.begin(), shards.end());
    for (const auto& shard : shards) cached_file(path_or_repo_id, shard, options, true, commit);
    return true;
  };
  bool found = !cached_file(path_or_repo_id, add_variant("model.safetensors", variant), options, false, commit).empty() ||
               fetch_index(add_variant("model.safetensors.index.json", variant)) ||
               !cached_file(path_or_repo_id, add_variant("pytorch_model.bin", variant), options, false, commit).empty() ||
               fetch_index(add_variant("pytorch_model.bin.index.json", variant));
  if (!found)
    throw EntryNotFoundError(path_or_repo_id + " does not appear to have a file named " +
                             add_variant("model.safetensors", variant) + " or " +
                             add_variant("pytorch_model.bin", variant) + " (nor their sharded indexes)" +
                             (variant.empty() ? "" : " for variant '" + variant + "'") + ".");
  cached_file(path_or_repo_id, "generation_config.json", options, false, commit);
  for (const auto& f : optional_files) cached_file(path_or_repo_id, f, options, false, commit);
  return options.subfolder.empty() ? root : (fs::path(root) / options.subfolder).string();
}

std::string resolve_tokenizer(const std::string& path_or_repo_id, const HubOptions& options) {
  return resolve_files(path_or_repo_id, {},
                       {"tokenizer_config.json", "tokenizer.json", "special_tokens_map.json", "added_tokens.json",
                        "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt"},
                       options);
}

// ---- _snapshot_download.py -------------------------------------------------------------------------------------

namespace {

// fnmatch with '*' and '?' (as huggingface_hub's filter_repo_objects, where '*' also matches '/').
bool fnmatch(const char* pattern, const char* text) {
  if (*pattern == '\0') return *text == '\0';
  if (*pattern == '*') return fnmatch(pattern + 1, text) || (*text && fnmatch(pattern, text + 1));
  if (*text && (*pattern == '?' || *pattern == *text)) return fnmatch(pattern + 1, text + 1);
  return false;
}

}  // namespace

std::string snapshot_download(const std::string& repo_id, const HubOptions& options,
                              const std::vector<std::string>& allow_patterns) {
  check_repo_type(options.repo_type);
  const std::string revision = options.revision.empty() ? "main" : options.revision;
  const fs::path storage = storage_folder(options, repo_id);
  const bool offline = options.local_files_only || is_offline_mode();
  std::error_code ec;
  auto from_cache = [&](const std::string& reason) {
    std::string commit = is_commit_hash(revision) ? revision
                         : fs::is_regular_file(storage / "refs" / revision, ec) ? read_text(storage / "refs" / revision)
                                                                                : "";
    if (!commit.empty() && fs::is_directory(storage / "snapshots" / commit, ec))
      return (storage / "snapshots" / commit).string();
    throw LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder for '" + repo_id +
                                  "' at revision '" + revision + "' in " + storage.string() + " (" + reason +
                                  "). Connect to the Hub (unset HF_HUB_OFFLINE) or download it first.");
  };
  if (offline) return from_cache("outgoing traffic has been disabled");
  std::string prefix = options.repo_type + "s";
  std::string base = options.endpoint.empty() ? endpoint() : options.endpoint;
  HttpRequest request;
  request.url = base + "/api/" + prefix + "/" + repo_id + "/revision/" + detail::url_quote(revision, "");
  request.headers = detail::build_hf_headers(options.token);
  HttpResponse r;
  try {
    r = detail::perform(request);
  } catch (const HubConnectionError& e) {
    return from_cache(e.what());
  }
  detail::raise_for_status(r);
  nlohmann::json info;
  try {
    info = nlohmann::json::parse(r.body);
  } catch (const std::exception& e) {
    throw HubError(request.url + ": invalid JSON in the repo info: " + e.what());
  }
  if (!info.contains("sha") || !info["sha"].is_string() || !info.contains("siblings") || !info["siblings"].is_array())
    throw HubError(request.url + ": the repo info has no 'sha' or 'siblings'");
  const std::string commit = info["sha"].get<std::string>();
  cache_commit_hash_for_revision(storage, revision, commit);
  HubOptions pinned = options;
  pinned.revision = commit;
  for (const auto& sibling : info["siblings"]) {
    if (!sibling.contains("rfilename") || !sibling["rfilename"].is_string()) continue;
    std::string name = sibling["rfilename"].get<std::string>();
    bool allowed = allow_patterns.empty();
    for (const auto& p : allow_patterns) allowed = allowed || fnmatch(p.c_str(), name.c_str());
    if (allowed) hf_hub_download(repo_id, name, pinned);
  }
  fs::create_directories(storage / "snapshots" / commit);
  return (storage / "snapshots" / commit).string();
}

}  // namespace transformers::hub
