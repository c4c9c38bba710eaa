// tfcpp download / upload: the Hub (hub.h), as huggingface-cli download / upload; and hub ids for --model.
#include "cli/commands.h"

#include "transformers/errors.h"
#include "transformers/hub.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

namespace fs = std::filesystem;

namespace tfcpp {

using namespace transformers;

std::string resolve_model_arg(const std::string& model, const std::string& variant) {
  std::error_code ec;
  if (model.empty() || fs::exists(model, ec)) return model;
  return hub::resolve_pretrained_model(model, variant, {},
                                       {"tokenizer_config.json", "tokenizer.json", "special_tokens_map.json",
                                        "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt",
                                        "vocab.txt", "preprocessor_config.json"});
}

namespace {

struct DownloadFlags {
  std::string repo_id, revision, cache_dir, repo_type = "model", token;
  std::vector<std::string> filenames, include;
  bool force_download = false, local_files_only = false;
};

struct UploadFlags {
  std::string folder, repo_id, commit_message, revision, repo_type = "model", token;
  bool private_repo = false, create_pr = false;
};

}  // namespace

TFCPP_CLI_COMMAND("download", "Download files of a hub repo into the Hugging Face cache; prints the snapshot folder",
                  [](CLI::App* cmd) {
  auto f = std::make_shared<DownloadFlags>();
  cmd->add_option("repo_id", f->repo_id, "Repo id, e.g. org/name")->required();
  cmd->add_option("files", f->filenames, "Files to download (default: every file of the revision)");
  cmd->add_option("--filename,-f", f->filenames, "A file to download (repeatable)");
  cmd->add_option("--include", f->include, "Glob patterns of files to download (with no files given)");
  cmd->add_option("--revision,-r", f->revision, "Branch, tag or commit (default main)");
  cmd->add_option("--cache-dir", f->cache_dir, "Cache folder (default HF_HUB_CACHE or $HF_HOME/hub)");
  cmd->add_option("--repo-type", f->repo_type, "model | dataset | space")->check(CLI::IsMember({"model", "dataset", "space"}));
  cmd->add_option("--token", f->token, "Token (default HF_TOKEN or $HF_HOME/token)");
  cmd->add_flag("--force-download", f->force_download, "Download even if cached");
  cmd->add_flag("--local-files-only", f->local_files_only, "Only look in the cache");
  return [f] {
    hub::HubOptions o;
    o.revision = f->revision;
    o.cache_dir = f->cache_dir;
    o.repo_type = f->repo_type;
    if (!f->token.empty()) o.token = f->token;
    o.force_download = f->force_download;
    o.local_files_only = f->local_files_only;
    std::string folder;
    if (f->filenames.empty()) {
      folder = hub::snapshot_download(f->repo_id, o, f->include);
    } else {
      for (const auto& name : f->filenames) {
        std::string path = hub::hf_hub_download(f->repo_id, name, o);
        fs::path root(path);
        const fs::path relative(name);
        for (auto it = relative.begin(); it != relative.end(); ++it) root = root.parent_path();
        folder = root.string();
      }
    }
    std::cout << folder << std::endl;
    return 0;
  };
});

TFCPP_CLI_COMMAND("upload", "Upload a folder (a saved model) to a hub repo in one commit; prints the commit url",
                  [](CLI::App* cmd) {
  auto f = std::make_shared<UploadFlags>();
  cmd->add_option("--model,-m,--folder", f->folder, "Folder to upload (e.g. written by save_pretrained)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--repo-id", f->repo_id, "Repo id, e.g. org/name (created if missing)")->required();
  cmd->add_option("--commit-message", f->commit_message, "Commit message");
  cmd->add_option("--revision", f->revision, "Branch to commit to (default main)");
  cmd->add_option("--repo-type", f->repo_type, "model | dataset | space")->check(CLI::IsMember({"model", "dataset", "space"}));
  cmd->add_option("--token", f->token, "Token (default HF_TOKEN or $HF_HOME/token)");
  cmd->add_flag("--private", f->private_repo, "Create the repo as private");
  cmd->add_flag("--create-pr", f->create_pr, "Open a pull request instead of committing to the branch");
  return [f] {
    hub::PushToHubOptions o;
    o.commit_message = f->commit_message;
    o.revision = f->revision;
    o.repo_type = f->repo_type;
    o.private_repo = f->private_repo;
    o.create_pr = f->create_pr;
    if (!f->token.empty()) o.token = f->token;
    hub::CommitInfo info = hub::push_to_hub(f->repo_id, f->folder, o);
    std::cout << (info.pr_url.empty() ? info.commit_url : info.pr_url) << std::endl;
    return 0;
  };
});


// tfcpp cache ls / rm: huggingface-cli scan-cache / delete-cache, for the folders of the cache.
TFCPP_CLI_COMMAND("cache", "List (ls) or delete (rm) repos in the Hugging Face cache", [](CLI::App* cmd) {
  auto cache_dir = std::make_shared<std::string>();
  auto repo = std::make_shared<std::string>();
  auto repo_type = std::make_shared<std::string>("model");
  cmd->add_option("--cache-dir", *cache_dir, "Cache folder (default HF_HUB_CACHE or $HF_HOME/hub)");
  cmd->require_subcommand(1);
  CLI::App* ls = cmd->add_subcommand("ls", "Repos with their size on disk, files, refs and path");
  CLI::App* rm = cmd->add_subcommand("rm", "Delete a repo's cached files (blobs, snapshots, refs, locks)");
  rm->add_option("repo_id", *repo, "Repo id, e.g. org/name")->required();
  rm->add_option("--repo-type", *repo_type, "model | dataset | space")->check(CLI::IsMember({"model", "dataset", "space"}));
  return [=] {
    const fs::path cache = cache_dir->empty() ? fs::path(hub::hf_hub_cache()) : fs::path(*cache_dir);
    std::error_code ec;
    if (rm->parsed()) {
      const std::string folder = hub::repo_folder_name(*repo, *repo_type);
      if (!fs::is_directory(cache / folder, ec))
        throw HubError(*repo + " (" + *repo_type + ") is not in the cache " + cache.string());
      fs::remove_all(cache / folder, ec);
      fs::remove_all(cache / ".locks" / folder, ec);
      std::cout << "deleted " << (cache / folder).string() << std::endl;
      return 0;
    }
    (void)ls;
    std::cout << fmt::format("{:<40} {:<8} {:>12} {:>6}  {:<20} {}\n", "REPO ID", "TYPE", "SIZE ON DISK", "FILES",
                             "REFS", "LOCAL PATH");
    if (!fs::is_directory(cache, ec)) return 0;
    std::vector<fs::path> repos;
    for (const auto& e : fs::directory_iterator(cache, ec))
      if (e.is_directory() && e.path().filename().string().find("--") != std::string::npos) repos.push_back(e.path());
    std::sort(repos.begin(), repos.end());
    for (const auto& path : repos) {
      std::string name = path.filename().string();
      std::string type = name.substr(0, name.find("--"));
      std::string id = name.substr(name.find("--") + 2);
      auto sep = id.find("--");
      if (sep != std::string::npos) id.replace(sep, 2, "/");
      int64_t bytes = 0, files = 0;
      for (const auto& b : fs::directory_iterator(path / "blobs", ec))
        if (b.is_regular_file()) bytes += static_cast<int64_t>(b.file_size()), ++files;
      std::string refs;
      for (const auto& r : fs::directory_iterator(path / "refs", ec)) refs += (refs.empty() ? "" : ",") + r.path().filename().string();
      std::cout << fmt::format("{:<40} {:<8} {:>12} {:>6}  {:<20} {}\n", id, type.substr(0, type.size() - 1),
                               fmt::format("{:.1f}M", bytes / 1e6), files, refs, path.string());
    }
    return 0;
  };
});

}  // namespace tfcpp
