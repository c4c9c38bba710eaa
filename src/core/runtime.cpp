#include "transformers/runtime.h"

#include "transformers/compat.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace transformers {

namespace {

bool cpu_has_flag(const std::string& flag) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line);
    std::string w;
    while (words >> w)
      if (w == flag) return true;
    return false;
  }
  return false;
}

}  // namespace

bool prepare_environment() {
  bool changed = false;
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    changed = true;
  }
  if (!std::getenv("OPENBLAS_CORETYPE") && cpu_has_flag("avx512f")) {
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    changed = true;
  }
  return changed;
}

RuntimeInfo init_runtime(int threads) {
  RuntimeInfo info;
  if (threads <= 0) {
    if (const char* env = std::getenv("TFCPP_NUM_THREADS")) threads = std::atoi(env);
  }
  if (threads <= 0) threads = compat::physical_cores();
  info.threads = threads;
  at::set_num_threads(threads);
  using SetThreads = void (*)(int);
  using CoreName = char* (*)();
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
  if (auto core = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) {
    info.blas_core = core();
    if ((info.blas_core == "Prescott" || info.blas_core == "Core2" || info.blas_core == "Nehalem") &&
        cpu_has_flag("avx512f"))
      info.warning = "OpenBLAS picked the " + info.blas_core +
                     " kernel on an AVX-512 CPU (5-6x slower GEMM); set OPENBLAS_CORETYPE=SkylakeX";
  }
  if (info.warning.empty() && !std::getenv("OMP_WAIT_POLICY") && threads > 1)
    info.warning = "OMP_WAIT_POLICY is not set: idle OpenMP threads spin and starve OpenBLAS (up to 10x slower on "
                   "small models); export OMP_WAIT_POLICY=PASSIVE before starting the program";
  return info;
}

}  // namespace transformers
