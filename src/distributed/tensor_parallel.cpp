// Tensor parallelism: applies a family's declared plan (transformers' base_model_tp_plan / _tp_plan and
// integrations/tensor_parallel.py's ColwiseParallel / RowwiseParallel) to a model before its weights load.
#include "pch.h"

#include "transformers/distributed.h"
#include "transformers/errors.h"
#include "transformers/modeling_utils.h"

#include "distributed/plan_state.h"

#include <fmt/format.h>

#include <regex>
#include <set>

namespace transformers::distributed {

namespace {

std::regex pattern_regex(const std::string& pattern) {
  std::string re;
  for (char c : pattern) {
    if (c == '*') re += "[^.]+";
    else if (c == '.') re += "\\.";
    else re += c;
  }
  return std::regex(re);
}

std::string join(const std::string& prefix, const std::string& name) { return join_path(prefix, name); }

at::Tensor take(const at::Tensor& t, const Slice& s) {
  if (s.pieces.empty()) return t.narrow(s.dim, 0, 0);
  if (s.pieces.size() == 1) return t.narrow(s.dim, s.pieces[0].first, s.pieces[0].second);
  std::vector<at::Tensor> parts;
  for (const auto& [start, length] : s.pieces) parts.push_back(t.narrow(s.dim, start, length));
  return at::cat(parts, s.dim);
}

int64_t total(const Slice& s) {
  int64_t n = 0;
  for (const auto& p : s.pieces) n += p.second;
  return n;
}

// Sums a partial result over the ranks (bf16/half are reduced in float32).
at::Tensor reduce(at::Tensor y) {
  if (y.scalar_type() == at::kFloat || y.scalar_type() == at::kDouble) {
    y = y.contiguous();
    all_reduce(y);
    return y;
  }
  at::Tensor f = y.to(at::kFloat).contiguous();
  all_reduce(f);
  return f.to(y.scalar_type());
}

// Concatenates every rank's slice of the last dim (ranks' slices may differ by one: padded for the gather).
at::Tensor gather_last(const at::Tensor& y, const std::vector<int64_t>& sizes) {
  const int64_t widest = *std::max_element(sizes.begin(), sizes.end());
  at::Tensor padded = y;
  if (y.size(-1) < widest) {
    std::vector<int64_t> shape(y.sizes().begin(), y.sizes().end());
    shape.back() = widest - y.size(-1);
    padded = at::cat({y, at::zeros(shape, y.options())}, -1);
  }
  at::Tensor all = all_gather(padded.contiguous(), -1);
  std::vector<at::Tensor> parts;
  for (size_t r = 0; r < sizes.size(); ++r) parts.push_back(all.narrow(-1, static_cast<int64_t>(r) * widest, sizes[r]));
  return at::cat(parts, -1);
}

at::Tensor matmul_2d(const at::Tensor& x, const at::Tensor& w_in_out) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = w_in_out.size(1);
  return at::mm(x.reshape({-1, x.size(-1)}), w_in_out).view(shape);
}

// nn::Linear keeps W [out, in]; any other layer with a 2-D weight is pytorch_utils.Conv1D, W [in, out].
struct Layer {
  nn::Module* module;
  nn::Linear* linear;
  nn::Embedding* embedding;
  at::Tensor weight() const { return linear ? linear->weight : embedding ? embedding->weight : module->named_parameters(false)["weight"]; }
  int64_t out_dim() const { return linear ? 0 : 1; }
};

void replace(nn::Module& m, const std::string& name, const at::Tensor& like, const Slice& s,
             const std::string& key, PlanState& state) {
  std::vector<int64_t> shape(like.sizes().begin(), like.sizes().end());
  shape[s.dim] = total(s);
  m.replace_parameter(name, at::empty(shape, like.options()).set_requires_grad(false));
  state.slices[key] = s;
}

}  // namespace

std::pair<int64_t, int64_t> balanced_slice(int64_t size, int rank, int world_size) {
  const int64_t base = size / world_size, extra = size % world_size;
  const int64_t start = rank * base + std::min<int64_t>(rank, extra);
  return {start, base + (rank < extra ? 1 : 0)};
}

void apply_tp_plan(PreTrainedModel& model, const std::string& tp_plan) {
  if (tp_plan != "auto")
    throw ValueError("tp_plan='" + tp_plan + "' is not supported: use \"auto\" (the plan " + model.class_name +
                     " declares)");
  if (!is_initialized() && env_requests_distributed()) init_process_group_from_env();
  const int rank = get_rank(), world = get_world_size();
  if (world == 1) return;
  if (model.is_quantized || model.hf_quantizer)
    throw ValueError("tp_plan='auto' cannot be combined with quantization yet");

  // Every PreTrainedModel in the tree contributes its declarations, prefixed with its path.
  std::vector<std::pair<std::string, std::string>> plan;
  std::vector<std::pair<std::string, const TPAttentionPlan*>> attention_plans;
  std::vector<std::pair<std::string, torch::nn::Module*>> modules{{"", &model}};
  for (const auto& item : model.named_modules("", false)) modules.emplace_back(item.key(), item.value().get());
  for (const auto& [path, m] : modules) {
    auto* pm = dynamic_cast<PreTrainedModel*>(m);
    if (!pm) continue;
    for (const auto& [p, style] : pm->base_model_tp_plan) plan.emplace_back(join(path, p), style);
    for (const auto& [p, style] : pm->_tp_plan) plan.emplace_back(join(path, p), style);
    for (const auto& a : pm->_tp_attention) attention_plans.emplace_back(join(path, a.pattern), &a);
  }
  if (plan.empty())
    throw ValueError(model.class_name + " declares no tensor-parallel plan (base_model_tp_plan / _tp_plan), so "
                     "tp_plan='auto' cannot shard it; load it without tp_plan");
  for (const auto& [p, style] : plan)
    if (style != "colwise" && style != "rowwise" && style != "colwise_rep" && style != "vocab")
      throw ValueError(model.class_name + ": unknown tensor-parallel style '" + style + "' for " + p +
                       " (colwise, rowwise, colwise_rep, vocab)");

  auto state = std::make_shared<PlanState>();
  state->base_prefix = model.base_model_prefix;
  state->renames = model.checkpoint_key_renames;

  // Attention modules: this rank's heads.
  struct HeadShare {
    TPHeads full, local;
    int64_t q0 = 0, kv0 = 0;
    const TPAttentionPlan* plan = nullptr;
  };
  std::map<std::string, HeadShare> shares;
  for (const auto& [pattern, ap] : attention_plans) {
    std::regex re = pattern_regex(pattern);
    for (const auto& [path, m] : modules) {
      if (!std::regex_match(path, re)) continue;
      HeadShare s;
      s.plan = ap;
      s.full = ap->get_heads(*m);
      const int64_t h = s.full.num_heads, kv = s.full.num_kv_heads;
      if (h % world != 0)
        throw ValueError(fmt::format("{}: {} has {} attention heads, which cannot be split over {} ranks (tp_plan="
                                     "'auto' needs num_heads divisible by the world size)",
                                     model.class_name, path, h, world));
      const int64_t qn = h / world, group = h / kv;
      s.q0 = rank * qn;
      s.kv0 = s.q0 / group;
      const int64_t kv_end = (s.q0 + qn - 1) / group + 1, kvn = kv_end - s.kv0;
      bool ok = qn % kvn == 0;
      for (int64_t i = 0; ok && i < qn; ++i) ok = (s.q0 + i) / group - s.kv0 == i / (qn / kvn);
      if (!ok)
        throw ValueError(fmt::format("{}: {} has {} query and {} key/value heads, which cannot be split over {} ranks",
                                     model.class_name, path, h, kv, world));
      s.local = {qn, kvn, s.full.head_dim};
      shares[path] = s;
    }
  }

  // The attention module a layer belongs to, and the layer's path inside it ("k_proj", "self.key").
  auto share_of = [&](const std::string& path, std::string* child) -> const HeadShare* {
    for (const auto& [attention, share] : shares)
      if (path.size() > attention.size() + 1 && path.compare(0, attention.size() + 1, attention + ".") == 0) {
        *child = path.substr(attention.size() + 1);
        return &share;
      }
    return nullptr;
  };
  auto contains = [](const std::vector<std::string>& list, const std::string& name) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };

  std::vector<std::pair<std::regex, std::string>> compiled;
  for (const auto& [p, st] : plan) compiled.emplace_back(pattern_regex(p), st);
  for (const auto& [path, m] : modules) {
    std::string style;
    for (const auto& [re, st] : compiled)
      if (std::regex_match(path, re)) {
        style = st;
        break;
      }
    if (style.empty()) continue;
    auto* module = dynamic_cast<nn::Module*>(m);
    if (!module) continue;
    Layer layer{module, dynamic_cast<nn::Linear*>(m), dynamic_cast<nn::Embedding*>(m)};
    const std::string wkey = join(path, "weight"), bkey = join(path, "bias");
    at::Tensor w = layer.weight();
    if (!w.defined() || w.dim() != 2)
      throw ValueError(model.class_name + ": tensor-parallel layer " + path + " has no 2-D weight");
    const bool has_bias = module->has_parameter("bias") && module->named_parameters(false)["bias"].defined() &&
                          module->named_parameters(false)["bias"].numel() > 0;
    at::Tensor b = has_bias ? module->named_parameters(false)["bias"] : at::Tensor();

    if (style == "vocab") {
      if (!layer.embedding) throw ValueError(model.class_name + ": 'vocab' style on " + path + ", not an Embedding");
      auto [start, rows] = balanced_slice(layer.embedding->num_embeddings, rank, world);
      replace(*module, "weight", w, Slice{0, {{start, rows}}}, wkey, *state);
      nn::Embedding* e = layer.embedding;
      e->num_embeddings = rows;
      e->tp_forward = [e, start = start, rows = rows](const at::Tensor& ids) {
        at::Tensor local = ids - start;
        at::Tensor outside = local.lt(0).logical_or(local.ge(rows));
        at::Tensor out = at::embedding(e->weight, local.masked_fill(outside, 0));
        out.masked_fill_(outside.unsqueeze(-1), 0);
        return reduce(out);
      };
      continue;
    }

    // Output / input ranges of this rank.
    const int64_t out_dim = layer.out_dim(), in_dim = 1 - out_dim;
    std::string child;
    const HeadShare* heads = share_of(path, &child);
    Slice out_slice{out_dim, {}}, in_slice{in_dim, {}};
    if (heads) {
      const int64_t hd = heads->full.head_dim, qn = heads->local.num_heads, kvn = heads->local.num_kv_heads;
      const int64_t e = heads->full.num_heads * hd, kve = heads->full.num_kv_heads * hd;
      if (contains(heads->plan->fused_qkv, child))
        out_slice.pieces = {{heads->q0 * hd, qn * hd}, {e + heads->kv0 * hd, kvn * hd},
                            {e + kve + heads->kv0 * hd, kvn * hd}};
      else if (contains(heads->plan->kv, child))
        out_slice.pieces = {{heads->kv0 * hd, kvn * hd}};
      else
        out_slice.pieces = {{heads->q0 * hd, qn * hd}};
      in_slice.pieces = {{heads->q0 * hd, qn * hd}};
    } else {
      auto o = balanced_slice(w.size(out_dim), rank, world);
      auto i = balanced_slice(w.size(in_dim), rank, world);
      out_slice.pieces = {o};
      in_slice.pieces = {i};
    }

    if (style == "colwise" || style == "colwise_rep") {
      replace(*module, "weight", w, out_slice, wkey, *state);
      if (has_bias) replace(*module, "bias", b, Slice{0, out_slice.pieces}, bkey, *state);
      if (layer.linear) layer.linear->out_features = total(out_slice);
      std::vector<int64_t> sizes;
      if (style == "colwise_rep") {
        if (heads) throw ValueError(model.class_name + ": colwise_rep on an attention projection " + path);
        for (int r = 0; r < world; ++r) sizes.push_back(balanced_slice(w.size(out_dim), r, world).second);
      }
      nn::Linear* linear = layer.linear;
      nn::Module* mod = module;
      const bool rep = style == "colwise_rep";
      if (!linear || rep)
        module->tp_forward = [linear, mod, rep, sizes](const at::Tensor& x) {
          at::Tensor y;
          if (linear) {
            y = at::linear(x, linear->weight, linear->bias);
          } else {
            auto params = mod->named_parameters(false);
            y = matmul_2d(x, params["weight"]);
            if (mod->has_parameter("bias")) y = y + params["bias"];
          }
          return rep ? gather_last(y, sizes) : y;
        };
    } else {  // rowwise: partial products summed over the ranks, then the bias
      replace(*module, "weight", w, in_slice, wkey, *state);
      if (layer.linear) layer.linear->in_features = total(in_slice);
      nn::Linear* linear = layer.linear;
      nn::Module* mod = module;
      module->tp_forward = [linear, mod](const at::Tensor& x) {
        if (linear) {
          at::Tensor y = reduce(at::linear(x, linear->weight));
          return linear->bias.defined() ? y + linear->bias : y;
        }
        auto params = mod->named_parameters(false);
        at::Tensor y = reduce(matmul_2d(x, params["weight"]));
        return mod->has_parameter("bias") ? y + params["bias"] : y;
      };
    }
  }

  // Head counts and per-head tables.
  for (const auto& [path, s] : shares) {
    torch::nn::Module* m = nullptr;
    for (const auto& [mp, mod] : modules)
      if (mp == path) m = mod;
    s.plan->set_heads(*m, s.local);
    for (const auto& name : s.plan->head_embeddings)
      for (const auto& child : m->named_children())
        if (child.key() == name)
          if (auto* e = dynamic_cast<nn::Embedding*>(child.value().get())) {
            replace(*e, "weight", e->weight, Slice{1, {{s.q0, s.local.num_heads}}}, join(join(path, name), "weight"),
                    *state);
            e->embedding_dim = s.local.num_heads;
          }
  }
  model._tp_state = state;
  model.tie_weights();
}

void shard_checkpoint(const PreTrainedModel& model, std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  auto state = std::static_pointer_cast<PlanState>(model._tp_state);
  if (!state) return;
  const std::string prefix = state->base_prefix.empty() ? "" : state->base_prefix + ".";
  for (auto& [key, t] : tensors) {
    std::string k = key;
    for (const auto& [from, to] : state->renames) {
      auto pos = k.find(from);
      if (pos != std::string::npos) {
        k.replace(pos, from.size(), to);
        break;
      }
    }
    auto it = state->slices.find(k);
    if (it == state->slices.end() && !prefix.empty()) {
      if (k.rfind(prefix, 0) == 0) it = state->slices.find(k.substr(prefix.size()));
      else it = state->slices.find(prefix + k);
    }
    if (it == state->slices.end()) continue;
    const Slice& s = it->second;
    if (t.dim() <= s.dim) continue;  // a mismatched checkpoint: load_state_dict reports it
    int64_t needed = 0;
    for (const auto& [start, length] : s.pieces) needed = std::max(needed, start + length);
    if (t.size(s.dim) < needed) continue;
    t = take(t, s).contiguous().clone();  // a copy: the rest of the mmapped file is not kept
  }
}

int64_t rank_weight_bytes(const PreTrainedModel& model) { return model.get_memory_footprint(); }

}  // namespace transformers::distributed
