// kernels::sgemm_packed (float32 prompt GEMM on weights packed once) and kernels::sgemm (the same, packing on the
// fly: same bits) against at::linear across shapes with row,
// output and input tails (and inputs past one pass over C), bias or none, 1 and 2 threads; and nn::Linear's use of
// it: the packed copy is rebuilt when the weight is replaced or written in place; training mode, autograd and
// TFCPP_PREPACK=0 keep at::linear.
#include "test_util.h"

#include "transformers/kernels.h"
#include "transformers/nn.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

using namespace transformers;
using namespace tfcpp_test;

namespace {

struct PrepackSettings : KernelSettings {
  bool prepack = kernels::prepack_enabled();
  ~PrepackSettings() { kernels::set_prepack(prepack); }
};

// at::linear in float64: the reference every float32 summation order is compared with.
at::Tensor reference(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return at::linear(x.to(at::kDouble), w.to(at::kDouble), b.defined() ? b.to(at::kDouble) : at::Tensor())
      .to(at::kFloat);
}

// An nn::Linear with N(0, 1) weights and the given bias values (its parameters require grad, as a model's do).
std::shared_ptr<nn::Linear> random_linear(int64_t in, int64_t out, bool zero_bias) {
  auto layer = std::make_shared<nn::Linear>(in, out);
  at::NoGradGuard no_grad;
  layer->weight.normal_();
  zero_bias ? layer->bias.zero_() : layer->bias.normal_();
  return layer;
}

}  // namespace

TEST(KernelsSgemm, PackedProductMatchesLinearAcrossShapes) {
  if (!kernels::sgemm_supported()) GTEST_SKIP() << "no AVX-512F on this CPU: Linear keeps at::linear";
  PrepackSettings restore;
  at::manual_seed(0);
  // rows: tails of the 14-row micro-kernel; outputs: tails of the 32-wide panel; inputs: 1, odd, more than one pass.
  const int64_t rows[] = {2, 13, 14, 15, 29, 128};
  const int64_t outs[] = {1, 16, 17, 32, 33, 100};
  const int64_t ins[] = {1, 7, 64, 1030, 2100};
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (int64_t m : rows)
      for (int64_t out : outs)
        for (int64_t in : ins) {
          if (m * out * in > (int64_t{1} << 24)) continue;
          at::Tensor x = at::randn({m, in}), w = at::randn({out, in}), b = at::randn({out});
          at::Tensor packed = kernels::pack_sgemm_weight(w);
          ASSERT_EQ(packed.sizes(), (at::IntArrayRef{(out + 31) / 32, in, 32}));
          const double tol = 1e-5 * std::sqrt(static_cast<double>(in)) + 1e-6;
          const std::string name = "m" + std::to_string(m) + " out" + std::to_string(out) + " in" +
                                   std::to_string(in) + " threads" + std::to_string(threads);
          EXPECT_TRUE(tensors_close(name + " bias", kernels::sgemm_packed(x, packed, out, b), reference(x, w, b), tol, 1e-5));
          EXPECT_TRUE(tensors_close(name, kernels::sgemm_packed(x, packed, out, {}), reference(x, w, {}), tol, 1e-5));
          // From the weight itself (panels packed on the fly): the same bits.
          EXPECT_TRUE(at::equal(kernels::sgemm(x, w, b), kernels::sgemm_packed(x, packed, out, b))) << name;
        }
  }
}

TEST(KernelsSgemm, KeepsLeadingDimensionsAndReadsStridedInput) {
  if (!kernels::sgemm_supported()) GTEST_SKIP() << "no AVX-512F on this CPU";
  at::manual_seed(1);
  at::Tensor w = at::randn({40, 24}), b = at::randn({40});
  at::Tensor x = at::randn({3, 24, 5}).transpose(1, 2);  // [3, 5, 24], not contiguous
  at::Tensor y = kernels::sgemm_packed(x, kernels::pack_sgemm_weight(w), 40, b);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{3, 5, 40}));
  EXPECT_TRUE(tensors_close("strided", y, reference(x, w, b), 1e-5, 1e-5));
  EXPECT_THROW(kernels::sgemm_packed(at::randn({4, 23}), kernels::pack_sgemm_weight(w), 40, b), c10::Error);
}

TEST(KernelsSgemm, LinearRepacksWhenTheWeightChanges) {
  if (!kernels::sgemm_supported()) GTEST_SKIP() << "no AVX-512F on this CPU";
  PrepackSettings restore;
  kernels::set_prepack(true);
  at::manual_seed(2);
  const auto owner = random_linear(48, 70, /*zero_bias=*/false);
  nn::Linear& layer = *owner;
  layer.eval();
  at::Tensor x = at::randn({2, 9, 48});
  c10::InferenceMode guard;
  // Bit for bit what the packed kernel gives, on the first forward (panels packed on the fly, no copy kept) and from
  // the second on (the kept copy).
  auto packed_product = [&] { return kernels::sgemm_packed(x, kernels::pack_sgemm_weight(layer.weight), 70, layer.bias); };
  EXPECT_TRUE(at::equal(layer.forward(x), packed_product()));
  EXPECT_TRUE(at::equal(layer.forward(x), packed_product()));
  EXPECT_TRUE(tensors_close("first", layer.forward(x), reference(x, layer.weight, layer.bias), 1e-5, 1e-5));
  // Written in place (the version counter moves): the stale panels would give the old product.
  {
    c10::InferenceMode off(false);
    at::NoGradGuard no_grad;
    layer.weight.mul_(-2.0);
  }
  EXPECT_TRUE(at::equal(layer.forward(x), packed_product()));
  EXPECT_TRUE(at::equal(layer.forward(x), packed_product()));
  EXPECT_TRUE(tensors_close("after mul_", layer.forward(x), reference(x, layer.weight, layer.bias), 1e-5, 1e-5));
  // Another tensor bound as the weight.
  layer.weight = at::randn({70, 48});
  EXPECT_TRUE(at::equal(layer.forward(x), packed_product()));
  EXPECT_TRUE(at::equal(layer.forward(x), packed_product()));
  EXPECT_TRUE(tensors_close("replaced", layer.forward(x), reference(x, layer.weight, layer.bias), 1e-5, 1e-5));
  // Training mode: at::linear, so that gradient checkpointing's passes sum alike.
  layer.train();
  EXPECT_TRUE(at::equal(layer.forward(x), at::linear(x, layer.weight, layer.bias)));
  layer.eval();
  // The packed path off: at::linear, same numbers up to summation order.
  kernels::set_prepack(false);
  EXPECT_TRUE(at::equal(layer.forward(x), at::linear(x, layer.weight, layer.bias)));
}

TEST(KernelsSgemm, AutogradStillFlowsThroughLinear) {
  PrepackSettings restore;
  kernels::set_prepack(true);
  at::manual_seed(3);
  const auto owner = random_linear(16, 20, /*zero_bias=*/true);
  nn::Linear& layer = *owner;
  ASSERT_TRUE(layer.weight.requires_grad());
  at::Tensor x = at::randn({6, 16});
  at::Tensor y = layer.forward(x);
  ASSERT_TRUE(y.requires_grad());
  y.sum().backward();
  ASSERT_TRUE(layer.weight.grad().defined());
  EXPECT_TRUE(tensors_close("dW", layer.weight.grad(), x.sum(0).expand({20, 16}), 1e-5, 1e-5));
}
