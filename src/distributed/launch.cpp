// Local launcher (`tfcpp ... --nproc N`): torchrun --standalone for one machine, without Python.
#include "transformers/compat.h"
#include "transformers/distributed.h"
#include "transformers/errors.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace transformers::distributed {

namespace {

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw DistributedError(std::string("cannot open a socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw DistributedError(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

}  // namespace

int launch_local(int nproc, const std::vector<std::string>& args) {
  if (nproc < 1) throw ValueError("--nproc must be at least 1, got " + std::to_string(nproc));
  const int port = free_port();
  double timeout_s = 60.0;
  if (const char* t = std::getenv("TFCPP_DIST_TIMEOUT"); t && *t) timeout_s = std::atof(t);

  // The environment of every rank: ours without the torchrun variables, then this rank's.
  std::vector<std::string> base;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    if (key == "RANK" || key == "WORLD_SIZE" || key == "LOCAL_RANK" || key == "LOCAL_WORLD_SIZE" ||
        key == "MASTER_ADDR" || key == "MASTER_PORT")
      continue;
    base.push_back(kv);
  }
  // Local ranks share the cores: unless told otherwise, each gets its part.
  const bool threads_given = std::getenv("TFCPP_NUM_THREADS") != nullptr;
  const int threads = std::max(1, compat::physical_cores() / nproc);
  std::vector<pid_t> pids(nproc, -1);
  for (int rank = 0; rank < nproc; ++rank) {
    std::vector<std::string> env = base;
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("LOCAL_RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
    if (!threads_given) env.push_back("TFCPP_NUM_THREADS=" + std::to_string(threads));
    std::vector<char*> envp, argv;
    for (auto& s : env) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> a = args;
    a[0] = "/proc/self/exe";
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (rank > 0) posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGKILL);
      for (pid_t p : pids)
        if (p > 0) ::waitpid(p, nullptr, 0);
      throw DistributedError("cannot start rank " + std::to_string(rank) + ": " + std::strerror(rc));
    }
    pids[rank] = pid;
  }

  // Wait for every rank. After the first failure the others get the timeout (plus a margin) to notice it and exit
  // with their own error; then they are killed.
  int result = 0, running = nproc;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  while (running > 0) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, deadline ? WNOHANG : 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pid == 0) {  // only polling after a failure
      if (std::chrono::steady_clock::now() > *deadline) {
        for (int r = 0; r < nproc; ++r)
          if (pids[r] > 0) {
            std::fprintf(stderr, "error: rank %d did not stop within %.0f s after rank failure; killing it\n", r,
                         timeout_s + 5);
            ::kill(pids[r], SIGKILL);
          }
        deadline = std::chrono::steady_clock::now() + std::chrono::hours(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    int rank = -1;
    for (int r = 0; r < nproc; ++r)
      if (pids[r] == pid) rank = r;
    if (rank < 0) continue;
    pids[rank] = -1;
    --running;
    const bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (failed && result == 0) {
      std::fprintf(stderr, "error: rank %d of %d %s; stopping the other ranks\n", rank, nproc, describe(status).c_str());
      result = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
      if (result == 0) result = 1;
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>((timeout_s + 5) * 1000));
    } else if (failed) {
      std::fprintf(stderr, "error: rank %d of %d %s\n", rank, nproc, describe(status).c_str());
    }
  }
  return result;
}

std::vector<std::string> command_line_without(const std::string& option) {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  size_t start = 0;
  while (start < all.size()) {
    size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    args.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  std::vector<std::string> kept;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == option) {
      ++i;  // and its value
      continue;
    }
    if (args[i].rfind(option + "=", 0) == 0) continue;
    kept.push_back(args[i]);
  }
  return kept;
}

}  // namespace transformers::distributed
