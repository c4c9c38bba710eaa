#include "test_util.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <sys/wait.h>

namespace tfcpp_test {

std::vector<std::string> fixture_cases(const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& root : {shared_dir() + "/fixtures/hf", source_dir() + "/tests/fixtures/hf"})
    for (const auto& entry : std::filesystem::directory_iterator(root))
      if (entry.is_directory() && entry.path().filename().string().rfind(prefix, 0) == 0)
        out.push_back(entry.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::pair<int, std::string> run_command(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {-1, ""};
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace tfcpp_test
