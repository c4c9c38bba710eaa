// AtomicDirectory: stage a folder beside its destination, then swap it in with one rename.
#include "transformers/atomic_dir.h"

#include "transformers/errors.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace fs = std::filesystem;

namespace transformers {

namespace {

const char kStagingTag[] = ".tfcpp-staging-";

// Staging folders of `name` in `parent` whose process is gone (killed mid-save).
void remove_stale_staging(const fs::path& parent, const std::string& name) {
  const std::string prefix = "." + name + kStagingTag;
  std::error_code ec;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string entry = it->path().filename().string();
    if (entry.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = std::strtol(entry.c_str() + prefix.size(), nullptr, 10);
    const bool ours = pid == static_cast<long>(::getpid());
    const bool owner_alive = pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH);
    if (ours || owner_alive) continue;  // a save in progress
    std::error_code ignored;
    fs::remove_all(it->path(), ignored);
  }
}

// Hard links of everything in `from` (copies where linking is impossible), symlinks kept as symlinks.
void link_contents(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  for (fs::directory_iterator it(from, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path target = to / it->path().filename();
    std::error_code copy_error;
    fs::copy(it->path(), target, fs::copy_options::recursive | fs::copy_options::create_hard_links |
                                     fs::copy_options::copy_symlinks, copy_error);
    if (copy_error) {
      std::error_code ignored;
      fs::remove_all(target, ignored);
      fs::copy(it->path(), target, fs::copy_options::recursive | fs::copy_options::copy_symlinks, copy_error);
      if (copy_error)
        throw CheckpointError("cannot stage " + it->path().string() + " for an atomic save: " + copy_error.message());
    }
  }
  if (ec) throw CheckpointError("cannot list " + from.string() + ": " + ec.message());
}

}  // namespace

AtomicDirectory::AtomicDirectory(const std::string& destination) {
  std::error_code ec;
  fs::path dest = fs::absolute(destination, ec).lexically_normal();
  if (ec) throw CheckpointError("cannot resolve " + destination + ": " + ec.message());
  if (dest.filename().empty()) dest = dest.parent_path();
  if (fs::is_symlink(dest)) dest = fs::canonical(dest, ec);  // swap the folder the link points to, not the link
  if (ec) throw CheckpointError("cannot resolve the link " + destination + ": " + ec.message());
  const bool exists = fs::exists(dest);
  if (exists && !fs::is_directory(dest)) throw CheckpointError(destination + " exists and is not a directory");
  const fs::path parent = dest.parent_path();
  fs::create_directories(parent, ec);
  if (ec) throw CheckpointError("cannot create directory " + parent.string() + ": " + ec.message());
  const std::string name = dest.filename().string();
  remove_stale_staging(parent, name);

  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path staging = parent / ("." + name + kStagingTag + std::to_string(::getpid()) + "-" +
                                 std::to_string(counter.fetch_add(1)));
    if (fs::create_directory(staging, ec)) {
      staging_ = staging.string();
      break;
    }
    if (ec) throw CheckpointError("cannot create a staging folder in " + parent.string() + ": " + ec.message());
  }
  if (staging_.empty()) throw CheckpointError("cannot create a staging folder in " + parent.string());
  destination_ = dest.string();
  try {
    if (exists) link_contents(dest, staging_);
  } catch (...) {
    fs::remove_all(staging_, ec);
    throw;
  }
}

AtomicDirectory::~AtomicDirectory() {
  if (committed_ || staging_.empty()) return;
  std::error_code ignored;
  fs::remove_all(staging_, ignored);
}

void AtomicDirectory::commit() {
  if (committed_) throw CheckpointError("AtomicDirectory::commit called twice for " + destination_);
  fault_point("commit");
  if (fs::exists(destination_)) {
    if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, destination_.c_str(), RENAME_EXCHANGE) != 0) {
      const int error = errno;
      if (error != EINVAL && error != ENOSYS)
        throw CheckpointError("cannot move the new " + destination_ + " into place: " + std::strerror(error));
      // A file system without RENAME_EXCHANGE: two renames, with a short window where only `<dest>.old` exists.
      const std::string old = staging_ + ".old";
      if (std::rename(destination_.c_str(), old.c_str()) != 0 || std::rename(staging_.c_str(), destination_.c_str()) != 0)
        throw CheckpointError("cannot move the new " + destination_ + " into place: " + std::strerror(errno));
      std::error_code ignored;
      fs::remove_all(old, ignored);
    }
  } else if (std::rename(staging_.c_str(), destination_.c_str()) != 0) {
    throw CheckpointError("cannot move the new " + destination_ + " into place: " + std::strerror(errno));
  }
  committed_ = true;
  fault_point("commit-done");
  std::error_code ignored;
  fs::remove_all(staging_, ignored);  // the old contents, after the exchange
}

void fault_point(const char* /*what*/) {
  static const long limit = [] {
    const char* value = std::getenv("TFCPP_FAULT_AFTER_WRITES");
    return value ? std::strtol(value, nullptr, 10) : 0L;
  }();
  static std::atomic<long> count{0};
  if (limit > 0 && count.fetch_add(1) + 1 == limit) std::_Exit(86);
}

}  // namespace transformers
