// How a raw kernel runs its rows: a caller's Part on the calling thread, or all of them over ATen's threads.
#pragma once

#include "transformers/kernels.h"

#include <ATen/Parallel.h>

namespace transformers::kernels {

// f(r0, r1) on the part's rows (none when it is empty), or over rows [0, n) by at::parallel_for at `grain`.
template <typename F>
void for_part(int64_t n, int64_t grain, Part part, const F& f) {
  if (part.all()) {
    at::parallel_for(0, n, grain, f);
  } else if (part.end > part.begin) {
    f(part.begin, part.end);
  }
}

}  // namespace transformers::kernels
