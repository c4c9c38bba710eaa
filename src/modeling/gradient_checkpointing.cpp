#include "transformers/gradient_checkpointing.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

namespace transformers {

namespace {

struct FunctionHolder : torch::CustomClassHolder {
  std::function<at::Tensor(const at::Tensor&)> fn;
  at::Tensor rng_state;
};

// LIBTORCH.md §3.3: saved inputs + the closure in saved_data; backward re-runs under grad mode.
struct CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            c10::intrusive_ptr<FunctionHolder> holder) {
    ctx->save_for_backward({input});
    holder->rng_state = at::detail::getDefaultCPUGenerator().get_state();
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    return holder->fn(input);  // grad mode is off inside forward
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto capsule = ctx->saved_data["fn"].toCapsule();
    auto* holder = static_cast<FunctionHolder*>(capsule.get());
    at::Tensor input = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    at::Tensor current_rng = generator.get_state();
    generator.set_state(holder->rng_state);
    at::Tensor output;
    {
      at::AutoGradMode grad(true);
      output = holder->fn(input);
    }
    generator.set_state(current_rng);
    torch::autograd::backward({output}, {grad_outputs[0]});
    return {input.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor checkpoint(const std::function<at::Tensor(const at::Tensor&)>& fn, const at::Tensor& hidden_states) {
  auto holder = c10::make_intrusive<FunctionHolder>();
  holder->fn = fn;
  return CheckpointFunction::apply(hidden_states, holder);
}

}  // namespace transformers
