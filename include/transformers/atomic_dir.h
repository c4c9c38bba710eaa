// All-or-nothing writes of a whole folder (a checkpoint): the new contents are written into a staging folder beside
// the destination and swapped into place with one atomic rename, so a process killed at any moment leaves either
// the complete old folder or the complete new one, never a mix.
#pragma once

#include <string>

namespace transformers {

class AtomicDirectory {
 public:
  // Prepares a staging folder `.<name>.tfcpp-staging-<pid>-<n>` in the destination's parent, holding hard links (or
  // copies, across file systems) of what `destination` holds now, so files the caller doesn't rewrite are kept, as
  // with a save into an existing folder. Writers must replace files (write a temporary file, then rename), never
  // write into an existing one: every writer in this project does. Staging folders left by killed processes are
  // removed. CheckpointError when the destination exists and is not a folder, or the parent isn't writable.
  explicit AtomicDirectory(const std::string& destination);
  // Without commit(): removes the staging folder; the destination is untouched.
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  // Where to write.
  const std::string& path() const { return staging_; }
  const std::string& destination() const { return destination_; }
  // Swaps the staging folder into place (renameat2 RENAME_EXCHANGE over an existing folder, a plain rename
  // otherwise) and deletes the old contents. CheckpointError on failure, the destination then untouched.
  void commit();

 private:
  std::string destination_, staging_;
  bool committed_ = false;
};

// Test hook for kill-during-save tests: when the environment variable TFCPP_FAULT_AFTER_WRITES=N is set, the process
// exits abruptly (std::_Exit(86), no clean-up, like a kill) at the N-th call (counting from 1). Writers call it after
// each file they complete, and AtomicDirectory::commit calls it just before and just after the swap.
void fault_point(const char* what);

}  // namespace transformers
