// The Hugging Face Hub: downloads into the standard cache and uploads through the commit API, as huggingface_hub
// 0.22 (file_download.py, hf_api.py, lfs.py, constants.py) and transformers' utils/hub.py (cached_file).
// The cache is huggingface_hub's: <cache>/models--org--name/{blobs/<etag>, snapshots/<commit>/<path> -> ../../blobs,
// refs/<revision>, .no_exist/<commit>/<path>} and <cache>/.locks/models--org--name/<etag>.lock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace transformers {

class PreTrainedModel;
class PretrainedConfig;

namespace hub {

// constants.py: read from the environment on each call.
std::string hf_home();       // HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface
std::string hf_hub_cache();  // HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub
std::string endpoint();      // HF_ENDPOINT, else https://huggingface.co
bool is_offline_mode();      // HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE in {1, ON, YES, TRUE}
// HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else the file $HF_HOME/token; nullopt when neither is set.
std::optional<std::string> get_token();

struct HubOptions {
  std::string revision;              // branch, tag or full commit; "" = "main"
  std::string repo_type = "model";   // "model", "dataset", "space"
  std::string cache_dir;             // "" = hf_hub_cache()
  std::string endpoint;              // "" = hub::endpoint()
  std::optional<std::string> token;  // nullopt: get_token(); "" sends none
  std::string subfolder;
  bool local_files_only = false;     // also forced by is_offline_mode()
  bool force_download = false;
};

// "models--org--name"
std::string repo_folder_name(const std::string& repo_id, const std::string& repo_type = "model");
// {endpoint}/{datasets/|spaces/}{repo_id}/resolve/{revision}/{filename}, revision and filename url-quoted.
std::string hf_hub_url(const std::string& repo_id, const std::string& filename, const HubOptions& options = {});

// Downloads one file into the cache (or finds it there) and returns its snapshot path. Throws the HubError
// subclasses of errors.h: RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError, EntryNotFoundError
// (and records .no_exist), LocalEntryNotFoundError (offline / unreachable and not cached), HubHTTPError.
std::string hf_hub_download(const std::string& repo_id, const std::string& filename, const HubOptions& options = {});

struct CacheLookup {
  enum Status { kNotCached, kFound, kNoExist } status = kNotCached;
  std::string path;  // when kFound
};
// try_to_load_from_cache: never touches the network, never throws for a missing entry.
CacheLookup try_to_load_from_cache(const std::string& repo_id, const std::string& filename,
                                   const std::string& cache_dir = "", const std::string& revision = "",
                                   const std::string& repo_type = "model");

// transformers' cached_file: a local folder's file, or hf_hub_download. With raise_for_missing = false a missing
// file returns "" (as _raise_exceptions_for_missing_entries=False). `commit_hash` (from an earlier file of the same
// repo) is tried in the cache first, without any request.
std::string cached_file(const std::string& path_or_repo_id, const std::string& filename, const HubOptions& options = {},
                        bool raise_for_missing = true, const std::string& commit_hash = "");
// The commit of a snapshot path (".../snapshots/<commit>/file"), "" otherwise (transformers' extract_commit_hash).
std::string extract_commit_hash(const std::string& resolved_file);

// A hub id is anything that is not an existing local path.
bool is_local_path(const std::string& path_or_repo_id);

// What from_pretrained needs, fetched into one snapshot folder: config.json, the weights (model.safetensors, else
// its index and every shard, else pytorch_model.bin, else its index and shards; `variant` applied), and the optional
// generation_config.json plus `optional_files`. Returns the folder (or `path_or_repo_id` when it is local).
std::string resolve_pretrained_model(const std::string& path_or_repo_id, const std::string& variant = "",
                                     const HubOptions& options = {},
                                     const std::vector<std::string>& optional_files = {});
// Only `files` (required) and `optional_files`; returns the snapshot folder. For tokenizers and other file sets.
std::string resolve_files(const std::string& path_or_repo_id, const std::vector<std::string>& files,
                          const std::vector<std::string>& optional_files = {}, const HubOptions& options = {});
// The tokenizer files transformers looks for (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
// added_tokens.json, tokenizer.model, vocab/merges), all optional; returns the snapshot folder.
std::string resolve_tokenizer(const std::string& path_or_repo_id, const HubOptions& options = {});

// snapshot_download: every file of the revision (GET /api/{type}s/{repo_id}/revision/{revision}), filtered by
// fnmatch-style allow_patterns when given. Returns the snapshot folder.
std::string snapshot_download(const std::string& repo_id, const HubOptions& options = {},
                              const std::vector<std::string>& allow_patterns = {});

// ---- upload (hf_api.py create_repo / create_commit, lfs.py) ----

struct CommitInfo {
  std::string commit_url, commit_oid, pr_url;
  std::vector<std::string> lfs_files, regular_files;  // paths in the repo, as uploaded
};

struct PushToHubOptions {
  std::string commit_message;  // "" = "Upload folder using tfcpp" / "Upload <Class>"
  std::string commit_description;
  bool private_repo = false;
  std::string revision;        // branch; "" = "main"
  std::optional<std::string> token;
  std::string endpoint;
  std::string repo_type = "model";
  bool create_pr = false;
};

// POST /api/repos/create; exist_ok accepts 409. Returns the repo url.
std::string create_repo(const std::string& repo_id, const PushToHubOptions& options = {}, bool exist_ok = true);
// Every file under `folder` (hidden files and folders skipped) in one commit: preupload decides LFS vs regular,
// LFS files go through the batch API (upload + verify), then the NDJSON commit.
CommitInfo upload_folder(const std::string& repo_id, const std::string& folder, const PushToHubOptions& options = {});
// create_repo + upload_folder (PushToHubMixin.push_to_hub for a saved folder).
CommitInfo push_to_hub(const std::string& repo_id, const std::string& folder, const PushToHubOptions& options = {});
// Saves the model (config, generation config, weights, model card with its tags) to a temporary folder and pushes it.
CommitInfo push_to_hub(PreTrainedModel& model, const std::string& repo_id, const PushToHubOptions& options = {});
CommitInfo push_to_hub(const PretrainedConfig& config, const std::string& repo_id,
                       const PushToHubOptions& options = {});

// Lowercase hex SHA-256 of a file (OpenSSL).
std::string sha256_file(const std::string& path);

}  // namespace hub
}  // namespace transformers
