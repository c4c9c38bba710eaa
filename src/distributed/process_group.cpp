// The process group: c10d's TCPStore rendezvous and ProcessGroupGloo, the only file that includes c10d (its headers
// cost ~20 s of compile time). torch.distributed's init_process_group("gloo", init_method="env://") in C++.
#include "pch.h"

#include "transformers/distributed.h"
#include "transformers/errors.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace transformers::distributed {

namespace {

struct State {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  ProcessGroupOptions options;
};

// Never destroyed: a Gloo group whose peer died must not be torn down (its destructor can wait on the dead peer)
// while the process exits with its error.
State& state() {
  static State* s = new State;
  return *s;
}

std::string seconds(double s) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g s", s);
  return buffer;
}

std::string where() {
  const auto& o = state().options;
  return "rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
}

// Runs a collective and waits; any failure (a peer's socket closed, the timeout) becomes a DistributedError.
template <typename F>
void run(const char* operation, F&& start) {
  if (!state().group) throw DistributedError(std::string(operation) + ": the process group is not initialized");
  try {
    c10::intrusive_ptr<c10d::Work> work = start(*state().group);
    work->wait(std::chrono::milliseconds(static_cast<int64_t>(state().options.timeout_s * 1000)));
  } catch (const DistributedError&) {
    throw;
  } catch (const c10::Error& e) {
    throw DistributedError(std::string(operation) + " failed on " + where() + ": another rank died or did not answer "
                           "within the timeout (" + seconds(state().options.timeout_s) + "): " +
                           e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw DistributedError(std::string(operation) + " failed on " + where() + ": another rank died or did not answer "
                           "within the timeout (" + seconds(state().options.timeout_s) + "): " + e.what());
  }
}

// Gloo writes results from its own threads, outside InferenceMode: the buffers it fills must be normal tensors.
at::Tensor gloo_buffer(const at::Tensor& t) {
  c10::InferenceMode normal(false);
  return t.is_inference() || !t.is_contiguous() ? t.clone(at::MemoryFormat::Contiguous) : t;
}

// c10d's store client sleeps a second after each refused connection; polling until rank 0 listens avoids it.
void wait_until_listening(const std::string& host, int port, std::chrono::milliseconds timeout) {
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found) return;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
    bool connected = fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0;
    if (fd >= 0) ::close(fd);
    if (connected) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::freeaddrinfo(found);
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long value = std::strtol(v, &end, 10);
  if (*end || value < 0 || value > 1 << 30)
    throw ValueError(std::string("environment variable ") + name + "='" + v + "' is not a non-negative integer");
  return static_cast<int>(value);
}

}  // namespace

ProcessGroupOptions options_from_env() {
  ProcessGroupOptions o;
  o.world_size = env_int("WORLD_SIZE", 1);
  o.rank = env_int("RANK", 0);
  if (o.world_size < 1) throw ValueError("WORLD_SIZE must be at least 1");
  if (o.rank >= o.world_size)
    throw ValueError("RANK=" + std::to_string(o.rank) + " is not below WORLD_SIZE=" + std::to_string(o.world_size));
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) o.master_addr = addr;
  o.master_port = env_int("MASTER_PORT", 29500);
  if (o.master_port < 1 || o.master_port > 65535)
    throw ValueError("MASTER_PORT=" + std::to_string(o.master_port) + " is not a TCP port");
  if (const char* t = std::getenv("TFCPP_DIST_TIMEOUT"); t && *t) {
    char* end = nullptr;
    double value = std::strtod(t, &end);
    if (*end || !(value > 0))
      throw ValueError(std::string("TFCPP_DIST_TIMEOUT='") + t + "' is not a positive number of seconds");
    o.timeout_s = value;
  }
  return o;
}

bool env_requests_distributed() { return env_int("WORLD_SIZE", 1) > 1; }

void init_process_group(const ProcessGroupOptions& options) {
  if (state().group) throw ValueError("init_process_group: the process group is already initialized");
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
    throw ValueError("init_process_group: rank " + std::to_string(options.rank) + " with world size " +
                     std::to_string(options.world_size));
  state().options = options;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000));
  const std::string rendezvous = options.master_addr + ":" + std::to_string(options.master_port);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(options.master_port);
    store_options.isServer = options.rank == 0;
    store_options.numWorkers = static_cast<std::size_t>(options.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = timeout;
    if (options.rank > 0) wait_until_listening(options.master_addr, options.master_port, timeout);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
    state().store = c10::make_intrusive<c10d::PrefixStore>("tfcpp", tcp);
    auto pg_options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (options.master_addr == "127.0.0.1" || options.master_addr == "localhost")
      pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      pg_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    state().group =
        c10::make_intrusive<c10d::ProcessGroupGloo>(state().store, options.rank, options.world_size, pg_options);
  } catch (const std::exception& e) {
    state().group.reset();
    state().store.reset();
    const char* what = e.what();
    if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) what = ce->what_without_backtrace();
    throw DistributedError("init_process_group: rank " + std::to_string(options.rank) + " of " +
                           std::to_string(options.world_size) + " could not join the rendezvous at " + rendezvous +
                           " within " + seconds(options.timeout_s) +
                           " (is every rank started, MASTER_ADDR/MASTER_PORT the same on all?): " + what);
  }
}

void init_process_group_from_env() { init_process_group(options_from_env()); }

bool is_initialized() { return static_cast<bool>(state().group); }
int get_rank() { return state().group ? state().options.rank : 0; }
int get_world_size() { return state().group ? state().options.world_size : 1; }

void destroy_process_group() {
  state().group.reset();
  state().store.reset();
}

void all_reduce(at::Tensor& tensor) {
  if (!state().group || state().options.world_size == 1) return;
  std::vector<at::Tensor> tensors{gloo_buffer(tensor)};
  run("all_reduce", [&](c10d::ProcessGroupGloo& g) { return g.allreduce(tensors); });
  if (!tensors[0].is_same(tensor)) tensor = tensors[0];
}

at::Tensor all_gather(const at::Tensor& tensor, int64_t dim) {
  if (!state().group || state().options.world_size == 1) return tensor;
  at::Tensor input = gloo_buffer(tensor);
  std::vector<std::vector<at::Tensor>> outputs(1);
  {
    c10::InferenceMode normal(false);
    for (int i = 0; i < state().options.world_size; ++i) outputs[0].push_back(at::empty_like(input));
  }
  std::vector<at::Tensor> inputs{input};
  run("all_gather", [&](c10d::ProcessGroupGloo& g) { return g.allgather(outputs, inputs); });
  return at::cat(outputs[0], dim);
}

void broadcast(at::Tensor& tensor, int src) {
  if (!state().group || state().options.world_size == 1) return;
  std::vector<at::Tensor> tensors{gloo_buffer(tensor)};
  c10d::BroadcastOptions opts;
  opts.rootRank = src;
  run("broadcast", [&](c10d::ProcessGroupGloo& g) { return g.broadcast(tensors, opts); });
  if (!tensors[0].is_same(tensor)) tensor = tensors[0];
}

void send(const at::Tensor& tensor, int dst) {
  std::vector<at::Tensor> tensors{gloo_buffer(tensor)};
  run("send", [&](c10d::ProcessGroupGloo& g) { return g.send(tensors, dst, 0); });
}

void recv(at::Tensor& tensor, int src) {
  std::vector<at::Tensor> tensors{gloo_buffer(tensor)};
  run("recv", [&](c10d::ProcessGroupGloo& g) { return g.recv(tensors, src, 0); });
  if (!tensors[0].is_same(tensor)) tensor = tensors[0];
}

void barrier() {
  if (!state().group || state().options.world_size == 1) return;
  run("barrier", [&](c10d::ProcessGroupGloo& g) { return g.barrier(); });
}

}  // namespace transformers::distributed
