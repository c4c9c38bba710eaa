// Process-wide threading setup (LIBTORCH.md §0.1-0.2): libtorch defaults to 1 intra-op thread here and OpenBLAS
// keeps its own pool, so both are set together to the physical core count unless overridden.
#pragma once

#include <string>

namespace transformers {

struct RuntimeInfo {
  int threads = 0;
  std::string blas_core;  // OpenBLAS's detected kernel ("SkylakeX", "Haswell", "Prescott", ...); "" if not OpenBLAS
  std::string warning;    // set when the BLAS kernel looks wrong for this CPU
};

// threads <= 0: TFCPP_NUM_THREADS if set, else the number of physical cores.
RuntimeInfo init_runtime(int threads = 0);

// Environment the CLI wants before libgomp/OpenBLAS load: GOMP_SPINCOUNT=30000 (idle OpenMP threads spin tens of µs,
// not ~1 ms, unless OMP_WAIT_POLICY is set), OPENBLAS_THREAD_TIMEOUT=4 (its
// threads sleep right after a call instead of spinning on the cores OpenMP needs next) and, when OpenBLAS 0.3.21
// picked a pre-AVX kernel on an AVX2/AVX-512 CPU, OPENBLAS_CORETYPE=SkylakeX/Haswell. Returns true if anything had
// to change (then the caller re-executes itself, since all are read only when the libraries load).
bool prepare_environment();

}  // namespace transformers
