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

// OpenBLAS's kernel for this process ("" when the BLAS is not OpenBLAS).
std::string openblas_core() {
  using CoreName = char* (*)();
  auto core = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return core ? core() : "";
}

bool weak_kernel(const std::string& core) { return core == "Prescott" || core == "Core2" || core == "Nehalem"; }

}  // namespace

bool prepare_environment() {
  bool changed = false;
  // libgomp's idle threads spin 300,000 rounds (~1 ms here) before sleeping by default, starving OpenBLAS's threads
  // on a small machine; OMP_WAIT_POLICY=PASSIVE sleeps at once, but then every parallel region of a decode step (a
  // few per layer) pays a futex wake-up. 30,000 rounds (tens of µs) spans the gap between two kernels of a step:
  // measured on 2 cores against PASSIVE, 110M decode int8 280 vs 174 tok/s, bf16 135 vs 91, fp32 prefill 879 vs 735.
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) {
    setenv("GOMP_SPINCOUNT", "30000", 1);
    changed = true;
  }
  // OpenBLAS's own threads spin for 2^28 cycles (~0.1 s) after each call before they sleep; between two GEMMs the
  // process runs libtorch's OpenMP ops and our kernels on the same cores, which those spinning threads then starve.
  // The shortest timeout (2^4 cycles) measured +16 % on 110M fp32 pp128 with 2 threads (bench/README.md).
  if (!std::getenv("OPENBLAS_THREAD_TIMEOUT")) {
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    changed = true;
  }
  // Only override OpenBLAS when it actually misdetected this CPU (0.3.21 does on some AVX-512 parts).
  if (!std::getenv("OPENBLAS_CORETYPE") && weak_kernel(openblas_core())) {
    if (cpu_has_flag("avx512f")) setenv("OPENBLAS_CORETYPE", "SkylakeX", 1), changed = true;
    else if (cpu_has_flag("avx2")) setenv("OPENBLAS_CORETYPE", "Haswell", 1), changed = true;
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
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
  info.blas_core = openblas_core();
  if (weak_kernel(info.blas_core) && (cpu_has_flag("avx512f") || cpu_has_flag("avx2")))
    info.warning = "OpenBLAS picked the " + info.blas_core +
                   " kernel on an AVX2/AVX-512 CPU (5-6x slower GEMM); set OPENBLAS_CORETYPE=SkylakeX (or Haswell)";
  if (info.warning.empty() && !std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT") && threads > 1)
    info.warning = "neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set: idle OpenMP threads spin ~1 ms and starve "
                   "OpenBLAS (up to 10x slower on small models); export GOMP_SPINCOUNT=30000 (or "
                   "OMP_WAIT_POLICY=PASSIVE) before starting the program";
  return info;
}

}  // namespace transformers
