// The few libtorch APIs that differ between Debian's 1.13 and official 2.x builds (LIBTORCH.md §4), in one place.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/version.h>

#define TFCPP_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace transformers::compat {

// Fused scaled-dot-product attention where libtorch has one (2.x); the plain math path on 1.13, whose
// `_scaled_dot_product_attention` is only the composite math path anyway. `mask` is additive or undefined.
at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const at::Tensor& mask, double dropout_p, bool is_causal, double scale);

// Physical cores (2.x's default); libtorch 1.13 defaults to hardware_concurrency()/2.
int physical_cores();

}  // namespace transformers::compat
