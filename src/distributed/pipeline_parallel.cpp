// Pipeline parallelism: the family's base_model_pp_plan cut into one stage of consecutive layers per rank
// (transformers' _pp_plan). Hidden states go from stage to stage with send/recv; the last stage's logits are
// broadcast so that every rank's generate() picks the same token.
#include "pch.h"

#include "transformers/distributed.h"
#include "transformers/errors.h"
#include "transformers/modeling_utils.h"

#include "distributed/plan_state.h"

#include <fmt/format.h>

namespace transformers::distributed {

namespace {

torch::nn::Module* find_module(const std::vector<std::pair<std::string, torch::nn::Module*>>& modules,
                               const std::string& path) {
  for (const auto& [p, m] : modules)
    if (p == path) return m;
  return nullptr;
}

// Replaces every parameter under `root` by an empty one (the loader then reads nothing for it).
void drop_weights(torch::nn::Module& root, const std::string& path, PlanState& state) {
  std::vector<std::pair<std::string, torch::nn::Module*>> subs{{path, &root}};
  for (const auto& item : root.named_modules("", false)) subs.emplace_back(join_path(path, item.key()), item.value().get());
  for (const auto& [p, m] : subs) {
    auto* mod = dynamic_cast<nn::Module*>(m);
    if (!mod) continue;
    for (const auto& param : m->named_parameters(false)) {
      at::Tensor t = param.value();
      if (!t.defined() || t.dim() == 0) continue;
      std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
      shape[0] = 0;
      mod->replace_parameter(param.key(), at::empty(shape, t.options()).set_requires_grad(false));
      state.slices[join_path(p, param.key())] = Slice{0, {}};
    }
  }
}

}  // namespace

void apply_pp_plan(PreTrainedModel& model, const std::string& pp_plan) {
  if (pp_plan != "auto")
    throw ValueError("pp_plan='" + pp_plan + "' is not supported: use \"auto\" (the plan " + model.class_name +
                     " declares)");
  if (!is_initialized() && env_requests_distributed()) init_process_group_from_env();
  const int rank = get_rank(), world = get_world_size();
  if (world == 1) return;
  if (model._tp_state) throw ValueError("tp_plan and pp_plan cannot be combined yet");
  if (model.is_quantized || model.hf_quantizer) throw ValueError("pp_plan='auto' cannot be combined with quantization yet");

  std::vector<std::pair<std::string, torch::nn::Module*>> modules{{"", &model}};
  for (const auto& item : model.named_modules("", false)) modules.emplace_back(item.key(), item.value().get());
  std::string base_path, head_path;
  const PPPlan* plan = nullptr;
  for (const auto& [path, m] : modules)
    if (auto* pm = dynamic_cast<PreTrainedModel*>(m)) {
      if (!pm->base_model_pp_plan.layers.empty() && !plan) {
        plan = &pm->base_model_pp_plan;
        base_path = path;
      }
      if (!pm->_pp_plan.head.empty() && head_path.empty()) head_path = join_path(path, pm->_pp_plan.head);
    }
  if (!plan)
    throw ValueError(model.class_name + " declares no pipeline-parallel plan (base_model_pp_plan), so pp_plan='auto' "
                     "cannot split it; use tp_plan or load it whole");
  if (head_path.empty())
    throw ValueError(model.class_name + " has no head in its pipeline plan (_pp_plan.head): pipeline parallelism "
                     "needs a model that ends in logits, such as a *ForCausalLM class");
  auto* layers = find_module(modules, join_path(base_path, plan->layers));
  auto* input = dynamic_cast<nn::Embedding*>(find_module(modules, join_path(base_path, plan->input)));
  auto* output = dynamic_cast<nn::Module*>(find_module(modules, join_path(base_path, plan->output)));
  auto* head = dynamic_cast<nn::Linear*>(find_module(modules, head_path));
  if (!layers || !input || !output || !head)
    throw ValueError(model.class_name + ": its pipeline plan names modules it does not have");

  auto children = layers->named_children();
  const int64_t n = static_cast<int64_t>(children.size());
  if (n < world)
    throw ValueError(fmt::format("{}: {} layers cannot be split into {} pipeline stages", model.class_name, n, world));
  auto [first, count] = balanced_slice(n, rank, world);
  auto state = std::make_shared<PlanState>();
  state->base_prefix = model.base_model_prefix;
  state->renames = model.checkpoint_key_renames;
  for (int64_t i = 0; i < n; ++i) {
    const bool kept = i >= first && i < first + count;
    plan->set_stage(*children[i].value(), kept, i - first);
    if (!kept) drop_weights(*children[i].value(), join_path(join_path(base_path, plan->layers), children[i].key()), *state);
  }

  const int last = world - 1;
  const bool tied = model.config->tie_word_embeddings && head->weight.is_same(input->weight);
  const int64_t hidden = input->embedding_dim, vocab = head->out_features;
  const auto dtype = input->weight.scalar_type();
  if (rank > 0) {
    // The previous stage's hidden states stand in for the embeddings.
    if (!(tied && rank == last)) drop_weights(*input, join_path(base_path, plan->input), *state);
    input->tp_forward = [hidden, dtype, rank](const at::Tensor& ids) {
      std::vector<int64_t> shape(ids.sizes().begin(), ids.sizes().end());
      shape.push_back(hidden);
      at::Tensor h = at::empty(shape, at::TensorOptions(dtype));
      recv(h, rank - 1);
      return h;
    };
  }
  if (rank < last) {
    drop_weights(*output, join_path(base_path, plan->output), *state);
    output->tp_forward = [rank](const at::Tensor& h) {
      send(h, rank + 1);
      return h;
    };
    if (!(tied && rank == 0)) drop_weights(*head, head_path, *state);
    head->tp_forward = [vocab, last](const at::Tensor& h) {
      std::vector<int64_t> shape(h.sizes().begin(), h.sizes().end());
      shape.back() = vocab;
      at::Tensor logits = at::empty(shape, h.options());
      broadcast(logits, last);
      return logits;
    };
  } else {
    head->tp_forward = [head, last](const at::Tensor& h) {
      at::Tensor logits = at::linear(h, head->weight, head->bias).contiguous();
      broadcast(logits, last);
      return logits;
    };
  }
  model._tp_state = state;
}

}  // namespace transformers::distributed
