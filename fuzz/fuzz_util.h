// Shared bits of the libFuzzer targets: the input as a file (the loaders take paths), and which errors count as a
// clean refusal (anything derived from transformers::Error). Anything else escaping, a crash, a sanitizer report or
// a hang is a finding.
#pragma once

#include "transformers/errors.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace tfcpp_fuzz {

// The fuzz input in an anonymous in-memory file, addressed as /proc/self/fd/N.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("tfcpp-fuzz", 0);
    if (fd_ < 0) std::abort();
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Runs `body`; a transformers::Error is the expected way to refuse bad input.
template <typename F>
void expect_clean(F&& body) {
  try {
    body();
  } catch (const transformers::Error&) {
  }
}

}  // namespace tfcpp_fuzz
