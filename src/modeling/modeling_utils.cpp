// Port of transformers/modeling_utils.py (4.40): PreTrainedModel loading/saving semantics.
#include "transformers/modeling_utils.h"

#include "transformers/atomic_dir.h"
#include "transformers/attention.h"
#include "transformers/checkpoint_files.h"
#include "transformers/compat.h"
#include "transformers/device_map.h"
#include "transformers/errors.h"
#include "transformers/logging.h"
#include "transformers/quantization.h"
#include "transformers/safetensors.h"
#include "transformers/torch_bin.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <unordered_map>

namespace fs = std::filesystem;

namespace transformers {

namespace {
thread_local bool no_init_weights = false;

std::string shape_str(at::IntArrayRef sizes) { return fmt::format("[{}]", fmt::join(sizes, ", ")); }

const void* storage_id(const at::Tensor& t) { return t.storage().data(); }

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// ("", root) then every submodule by dotted name. named_modules(include_self=true) needs the root in a shared_ptr,
// which it is not yet while a family constructor runs post_init.
std::vector<std::pair<std::string, torch::nn::Module*>> all_modules(const torch::nn::Module& root) {
  std::vector<std::pair<std::string, torch::nn::Module*>> out{{"", const_cast<torch::nn::Module*>(&root)}};
  for (const auto& item : root.named_modules("", false)) out.emplace_back(item.key(), item.value().get());
  return out;
}
}  // namespace

NoInitWeights::NoInitWeights() : previous_(no_init_weights) { no_init_weights = true; }
NoInitWeights::~NoInitWeights() { no_init_weights = previous_; }
bool NoInitWeights::active() { return no_init_weights; }

std::vector<std::pair<std::string, at::Tensor>> ModelOutput::named_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto add = [&](const std::string& name, const at::Tensor& t) {
    if (t.defined()) out.emplace_back(name, t);
  };
  add("loss", loss);
  add("logits", logits);
  add("last_hidden_state", last_hidden_state);
  add("pooler_output", pooler_output);
  if (past_key_values) {
    auto legacy = past_key_values->to_legacy_cache();
    for (size_t i = 0; i < legacy.size(); ++i)
      for (size_t j = 0; j < legacy[i].size(); ++j) add(fmt::format("past_key_values.{}.{}", i, j), legacy[i][j]);
  }
  auto add_all = [&](const char* name, const std::vector<at::Tensor>& list) {
    for (size_t i = 0; i < list.size(); ++i) add(fmt::format("{}.{}", name, i), list[i]);
  };
  add_all("hidden_states", hidden_states);
  add_all("attentions", attentions);
  add("encoder_last_hidden_state", encoder_last_hidden_state);
  add_all("encoder_hidden_states", encoder_hidden_states);
  add_all("encoder_attentions", encoder_attentions);
  add_all("decoder_hidden_states", decoder_hidden_states);
  add_all("decoder_attentions", decoder_attentions);
  add_all("cross_attentions", cross_attentions);
  for (const auto& [name, t] : extra) add(name, t);
  return out;
}

PreTrainedModel::PreTrainedModel(std::shared_ptr<PretrainedConfig> cfg, std::string name)
    : config(std::move(cfg)), class_name(std::move(name)) {
  if (!config) throw ValueError(class_name + ": config must not be null");
  name_or_path = config->name_or_path;
}

PreTrainedModel::~PreTrainedModel() = default;

std::shared_ptr<torch::nn::Module> PreTrainedModel::submodule(const std::string& name) const {
  for (const auto& child : named_children())
    if (child.key() == name) return child.value();
  return nullptr;
}

PreTrainedModel* PreTrainedModel::base_model() {
  if (base_model_prefix.empty()) return this;
  auto child = submodule(base_model_prefix);
  auto* base = dynamic_cast<PreTrainedModel*>(child.get());
  return base ? base : this;
}

std::shared_ptr<nn::Embedding> PreTrainedModel::get_input_embeddings() {
  PreTrainedModel* base = base_model();
  if (base != this) return base->get_input_embeddings();
  throw ValueError(class_name + " does not implement get_input_embeddings");
}

void PreTrainedModel::set_input_embeddings(std::shared_ptr<nn::Embedding> value) {
  PreTrainedModel* base = base_model();
  if (base != this) return base->set_input_embeddings(std::move(value));
  throw ValueError(class_name + " does not implement set_input_embeddings");
}

void PreTrainedModel::set_output_embeddings(std::shared_ptr<nn::Linear>) {
  throw ValueError(class_name + " has no output embeddings");
}

void PreTrainedModel::tie_weights() {
  if (!config->tie_word_embeddings) return;
  auto output = get_output_embeddings();
  if (!output) return;
  auto input = get_input_embeddings();
  // _tie_or_clone_weights: shared, or a copy when config.torchscript (TorchScript cannot export shared parameters).
  output->replace_parameter("weight", config->torchscript ? input->weight.detach().clone().set_requires_grad(
                                                                input->weight.requires_grad())
                                                          : input->weight);
  // A bias follows the new vocabulary size.
  if (output->bias.defined() && output->bias.size(0) != output->weight.size(0)) {
    at::Tensor bias = at::zeros({output->weight.size(0)}, output->bias.options());
    bias.narrow(0, 0, std::min(bias.size(0), output->bias.size(0)))
        .copy_(output->bias.narrow(0, 0, std::min(bias.size(0), output->bias.size(0))));
    output->replace_parameter("bias", bias);
  }
  output->out_features = input->num_embeddings;
}

void PreTrainedModel::init_weights() {
  at::NoGradGuard no_grad;
  for (const auto& [name, module] : all_modules(*this)) _init_weights(*module);
  tie_weights();
}

std::shared_ptr<nn::Embedding> PreTrainedModel::resize_token_embeddings(std::optional<int64_t> new_num_tokens,
                                                                       std::optional<int64_t> pad_to_multiple_of) {
  at::NoGradGuard no_grad;
  auto old_embeddings = get_input_embeddings();
  if (!new_num_tokens && !pad_to_multiple_of) return old_embeddings;
  // _get_resized_embeddings
  if (pad_to_multiple_of) {
    if (*pad_to_multiple_of <= 0)
      throw ValueError("pad_to_multiple_of must be a positive integer, got " + std::to_string(*pad_to_multiple_of));
    int64_t n = new_num_tokens.value_or(old_embeddings->num_embeddings);
    new_num_tokens = (n + *pad_to_multiple_of - 1) / *pad_to_multiple_of * *pad_to_multiple_of;
  }
  if (*new_num_tokens <= 0) throw ValueError("new_num_tokens must be positive, got " + std::to_string(*new_num_tokens));
  const int64_t old_num_tokens = old_embeddings->num_embeddings, dim = old_embeddings->embedding_dim;
  const int64_t copy = std::min(old_num_tokens, *new_num_tokens);
  if (old_num_tokens != *new_num_tokens) {
    // transformers builds a plain nn.Embedding(new, dim): no padding_idx.
    auto resized = std::make_shared<nn::Embedding>(*new_num_tokens, dim);
    resized->weight.set_data(at::empty({*new_num_tokens, dim}, old_embeddings->weight.options()));
    _init_weights(*resized);
    resized->weight.narrow(0, 0, copy).copy_(old_embeddings->weight.narrow(0, 0, copy));
    set_input_embeddings(resized);
    // An untied head follows (_get_resized_lm_head).
    auto old_head = get_output_embeddings();
    if (old_head && !config->tie_word_embeddings && old_head->out_features != *new_num_tokens) {
      auto head = std::make_shared<nn::Linear>(old_head->in_features, *new_num_tokens, old_head->bias.defined());
      head->weight.set_data(at::empty({*new_num_tokens, old_head->in_features}, old_head->weight.options()));
      if (head->bias.defined()) head->bias.set_data(at::empty({*new_num_tokens}, old_head->bias.options()));
      _init_weights(*head);
      int64_t rows = std::min(old_head->out_features, *new_num_tokens);
      head->weight.narrow(0, 0, rows).copy_(old_head->weight.narrow(0, 0, rows));
      if (head->bias.defined()) head->bias.narrow(0, 0, rows).copy_(old_head->bias.narrow(0, 0, rows));
      set_output_embeddings(head);
    }
  }
  config->update({{"vocab_size", *new_num_tokens}});
  tie_weights();
  return get_input_embeddings();
}

void PreTrainedModel::set_attn_implementation(const std::string& requested) {
  std::string impl = requested;
  if (impl.empty()) {
#if TFCPP_TORCH_AT_LEAST(2, 1)
    impl = _supports_sdpa ? "sdpa" : "eager";
#else
    impl = "eager";  // 1.13 has no fused SDPA kernel; transformers 4.40 picks eager there too
#endif
  }
  if (impl == "sdpa" && !_supports_sdpa)
    throw ValueError(class_name + " does not support an attention implementation through "
                     "torch.nn.functional.scaled_dot_product_attention yet; use attn_implementation=\"eager\"");
  if (impl == "flash_attention_2" && !_supports_flash_attn_2)
    throw ValueError(class_name + " does not support Flash Attention 2.0 yet; use attn_implementation=\"eager\"");
  attention_function(impl);  // unknown names: ValueError listing the registered ones
  config->attn_implementation_internal = impl;
}

void PreTrainedModel::gradient_checkpointing_enable() {
  if (!supports_gradient_checkpointing)
    throw ValueError(class_name + " does not support gradient checkpointing.");
  for (const auto& [name, module] : all_modules(*this))
    if (auto* model = dynamic_cast<PreTrainedModel*>(module)) model->gradient_checkpointing = true;
}

void PreTrainedModel::gradient_checkpointing_disable() {
  for (const auto& [name, module] : all_modules(*this))
    if (auto* model = dynamic_cast<PreTrainedModel*>(module)) model->gradient_checkpointing = false;
}

void PreTrainedModel::enable_input_require_grads() { get_input_embeddings()->output_requires_grad = true; }
void PreTrainedModel::disable_input_require_grads() { get_input_embeddings()->output_requires_grad = false; }

void PreTrainedModel::prune_heads(const std::map<int64_t, std::vector<int64_t>>& heads_to_prune) {
  const auto recorded_before = config->pruned_heads;
  for (const auto& [layer, heads] : heads_to_prune) {
    std::set<int64_t> merged(heads.begin(), heads.end());
    auto it = config->pruned_heads.find(layer);
    if (it != config->pruned_heads.end()) merged.insert(it->second.begin(), it->second.end());
    config->pruned_heads[layer] = std::vector<int64_t>(merged.begin(), merged.end());
  }
  PreTrainedModel* base = base_model();
  try {
    base->_prune_heads(heads_to_prune);
  } catch (...) {
    config->pruned_heads = recorded_before;  // a refused request (bad layer or head) records nothing
    throw;
  }
}

void PreTrainedModel::_prune_heads(const std::map<int64_t, std::vector<int64_t>>&) {
  throw ValueError(class_name + " does not support prune_heads");
}

void PreTrainedModel::post_init() {
  // init_weights in transformers prunes first; the heads a checkpoint was saved without come back pruned.
  if (!config->pruned_heads.empty() && base_model() == this) {
    at::NoGradGuard no_grad;
    _prune_heads(config->pruned_heads);
  }
  if (!NoInitWeights::active()) init_weights();
  else tie_weights();
  if (name_or_path.empty()) name_or_path = config->name_or_path;
  generation_config = GenerationConfig::from_model_config(*config);
}

std::vector<std::pair<std::string, at::Tensor>> PreTrainedModel::state_dict() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  auto* self = const_cast<PreTrainedModel*>(this);
  for (const auto& [name, module] : all_modules(*self)) {
    const std::string prefix = name.empty() ? "" : name + ".";
    auto* ours = dynamic_cast<nn::Module*>(module);
    for (const auto& p : module->named_parameters(false)) out.emplace_back(prefix + p.key(), p.value());
    for (const auto& b : module->named_buffers(false))
      if (!ours || ours->is_persistent(b.key())) out.emplace_back(prefix + b.key(), b.value());
  }
  return out;
}

c10::ScalarType PreTrainedModel::dtype() const {
  for (const auto& p : parameters())
    if (at::isFloatingType(p.scalar_type())) return p.scalar_type();
  return at::kFloat;
}

int64_t PreTrainedModel::num_parameters(bool only_trainable, bool exclude_embeddings) const {
  std::set<const void*> seen_embeddings, packed_4bit;
  auto* self = const_cast<PreTrainedModel*>(this);
  for (const auto& [name, module] : all_modules(*self)) {
    if (exclude_embeddings)
      if (auto* e = dynamic_cast<nn::Embedding*>(module)) seen_embeddings.insert(e->weight.unsafeGetTensorImpl());
    // transformers counts a 4-bit weight's packed storage twice (two values per byte, Params4bit numel * 2).
    if (auto* l = dynamic_cast<nn::Linear*>(module); l && l->quant_bits == 4)
      packed_4bit.insert(l->weight.unsafeGetTensorImpl());
  }
  std::set<const void*> counted;
  int64_t total = 0;
  for (const auto& p : parameters()) {
    const void* id = p.unsafeGetTensorImpl();
    if (!counted.insert(id).second) continue;  // tied: count once, as Python's parameters() dedupes
    if (only_trainable && !p.requires_grad()) continue;
    if (seen_embeddings.count(id)) continue;
    total += packed_4bit.count(id) ? 2 * p.numel() : p.numel();
  }
  return total;
}

void PreTrainedModel::add_model_tags(const std::vector<std::string>& tags) {
  for (const auto& tag : tags)
    if (std::find(model_tags.begin(), model_tags.end(), tag) == model_tags.end()) model_tags.push_back(tag);
}

namespace {

// The tensor of ModelInputs a forward argument name refers to (undefined when not given).
at::Tensor input_by_name(const ModelInputs& inputs, const std::string& name) {
  if (name == "input_ids") return inputs.input_ids;
  if (name == "inputs_embeds") return inputs.inputs_embeds;
  if (name == "attention_mask") return inputs.attention_mask;
  if (name == "decoder_input_ids") return inputs.decoder_input_ids;
  auto it = inputs.extra.find(name);
  return it == inputs.extra.end() ? at::Tensor() : it->second;
}

std::string optional_id(const std::optional<int64_t>& id) { return id ? std::to_string(*id) : "None"; }

}  // namespace

int64_t PreTrainedModel::floating_point_ops(const ModelInputs& inputs, bool exclude_embeddings) {
  // _estimate_tokens
  int64_t tokens = 0;
  if (at::Tensor main = input_by_name(inputs, main_input_name); main.defined()) {
    tokens = main.numel();
  } else if (!warnings_issued.count("estimate_tokens")) {
    logging::warning("Could not estimate the number of tokens of the input, floating-point operations will not be "
                     "computed");
    warnings_issued["estimate_tokens"] = true;
  }
  return 6 * tokens * num_parameters(false, exclude_embeddings);
}

ModelInputs PreTrainedModel::dummy_inputs() const {
  ModelInputs inputs;
  inputs.input_ids = at::tensor(std::vector<int64_t>{7, 6, 0, 0, 1, 1, 2, 3, 0, 0, 0, 0, 0, 4, 5}).view({3, 5});
  return inputs;
}

at::Tensor PreTrainedModel::get_extended_attention_mask(const at::Tensor& attention_mask,
                                                        at::IntArrayRef input_shape) const {
  return transformers::get_extended_attention_mask(attention_mask, input_shape, config->is_decoder, dtype());
}

at::Tensor PreTrainedModel::invert_attention_mask(const at::Tensor& encoder_attention_mask) const {
  return transformers::invert_attention_mask(encoder_attention_mask, dtype());
}

void PreTrainedModel::warn_if_padding_and_no_attention_mask(const at::Tensor& input_ids,
                                                            const at::Tensor& attention_mask) const {
  if (attention_mask.defined() || !config->pad_token_id || !input_ids.defined() || input_ids.dim() != 2 ||
      input_ids.size(1) == 0)
    return;
  // Only the first and last input ids, to keep it cheap.
  const int64_t pad = *config->pad_token_id;
  at::Tensor ends = input_ids.index_select(1, at::tensor(std::vector<int64_t>{input_ids.size(1) - 1, 0}));
  if (!ends.eq(pad).any().item<bool>()) return;
  std::string warn_string =
      "We strongly recommend passing in an `attention_mask` since your input_ids may be padded. See "
      "https://huggingface.co/docs/transformers/troubleshooting#incorrect-output-when-padding-tokens-arent-masked.";
  const auto& c = *config;
  const bool eos_is_pad = c.eos_token_id && c.eos_token_id->size() == 1 && c.eos_token_id->front() == pad;
  if ((c.bos_token_id && *c.bos_token_id == pad) || eos_is_pad || (c.sep_token_id && *c.sep_token_id == pad)) {
    std::string eos = !c.eos_token_id ? "None"
                      : c.eos_token_id->size() == 1 ? std::to_string(c.eos_token_id->front())
                                                    : fmt::format("[{}]", fmt::join(*c.eos_token_id, ", "));
    warn_string += fmt::format(
        "\nYou may ignore this warning if your `pad_token_id` ({}) is identical to the `bos_token_id` ({}), "
        "`eos_token_id` ({}), or the `sep_token_id` ({}), and your input is not padded.",
        pad, optional_id(c.bos_token_id), eos, optional_id(c.sep_token_id));
  }
  logging::warning_once(warn_string);
}

int64_t PreTrainedModel::get_memory_footprint() const {
  std::set<const void*> seen;
  int64_t bytes = 0;
  for (const auto& [name, t] : state_dict())
    if (seen.insert(t.unsafeGetTensorImpl()).second) bytes += t.numel() * static_cast<int64_t>(t.element_size());
  return bytes;
}

ModelOutput PreTrainedModel::call_method(const std::string& method, const ModelInputs& inputs) {
  if (method == "forward") return forward(inputs);
  throw ValueError("method '" + method + "' is not supported by " + class_name + " (supported: forward)");
}

ModelInputs PreTrainedModel::prepare_inputs_for_generation(const at::Tensor& input_ids, const ModelInputs& kwargs) {
  throw GenerationError(class_name + " cannot generate");
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

LoadingInfo PreTrainedModel::load_state_dict(const std::vector<std::pair<std::string, at::Tensor>>& input,
                                             const std::string& source, bool ignore_mismatched_sizes,
                                             bool init_missing) {
  at::NoGradGuard no_grad;
  // Legacy names (gamma/beta, ...) are data: the family's rename table.
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  tensors.reserve(input.size());
  for (const auto& [key, t] : input) {
    std::string fixed = key;
    for (const auto& [from, to] : checkpoint_key_renames) {
      auto pos = fixed.find(from);
      if (pos != std::string::npos) {
        fixed.replace(pos, from.size(), to);
        break;
      }
    }
    tensors.emplace_back(fixed, t);
  }
  _prepare_for_checkpoint(tensors);

  auto model_state = state_dict();
  std::unordered_map<std::string, at::Tensor> model_tensors(model_state.begin(), model_state.end());
  std::set<std::string> expected;
  for (const auto& [k, t] : model_state) expected.insert(k);
  std::set<std::string> loaded;
  for (const auto& [k, t] : tensors) loaded.insert(k);

  const std::string prefix = base_model_prefix;
  const std::string dotted = prefix + ".";
  bool has_prefix_module = false, expects_prefix_module = false;
  if (!prefix.empty()) {
    has_prefix_module = std::any_of(loaded.begin(), loaded.end(), [&](const std::string& s) { return starts_with(s, prefix); });
    expects_prefix_module = std::any_of(expected.begin(), expected.end(), [&](const std::string& s) { return starts_with(s, prefix); });
  }
  const bool remove_prefix_from_model = !has_prefix_module && expects_prefix_module;
  const bool add_prefix_to_model = has_prefix_module && !expects_prefix_module;

  // Model key names in checkpoint naming, and back.
  auto to_ckpt = [&](const std::string& model_key) {
    if (remove_prefix_from_model) return starts_with(model_key, dotted) ? model_key.substr(dotted.size()) : model_key;
    if (add_prefix_to_model) return dotted + model_key;
    return model_key;
  };
  std::unordered_map<std::string, std::string> ckpt_to_model;
  for (const auto& k : expected) ckpt_to_model[to_ckpt(k)] = k;

  LoadingInfo info;
  std::set<std::string> expected_ckpt;
  for (const auto& k : expected) expected_ckpt.insert(to_ckpt(k));
  for (const auto& k : expected_ckpt)
    if (!loaded.count(k)) info.missing_keys.push_back(k);
  std::set<std::string> buffers;
  for (const auto& b : named_buffers(true)) buffers.insert(to_ckpt(b.key()));
  for (const auto& k : loaded)
    if (!expected_ckpt.count(k) && !buffers.count(k)) info.unexpected_keys.push_back(k);

  // Tied groups: a key missing because its twin was loaded is not missing.
  std::map<const void*, std::vector<std::string>> groups;
  for (const auto& [k, t] : model_state) groups[t.unsafeGetTensorImpl()].push_back(to_ckpt(k));
  for (const auto& group : groups) {
    const std::vector<std::string>& names = group.second;
    if (names.size() < 2) continue;
    size_t missing_in_group = std::count_if(names.begin(), names.end(), [&](const std::string& n) {
      return std::find(info.missing_keys.begin(), info.missing_keys.end(), n) != info.missing_keys.end();
    });
    if (missing_in_group > 0 && missing_in_group < names.size())
      info.missing_keys.erase(std::remove_if(info.missing_keys.begin(), info.missing_keys.end(),
                                             [&](const std::string& k) { return std::find(names.begin(), names.end(), k) != names.end(); }),
                              info.missing_keys.end());
  }
  auto drop_matching = [](std::vector<std::string>& keys, const std::vector<std::string>& patterns) {
    for (const auto& pattern : patterns) {
      std::regex re(pattern);
      keys.erase(std::remove_if(keys.begin(), keys.end(), [&](const std::string& k) { return std::regex_search(k, re); }), keys.end());
    }
  };
  drop_matching(info.missing_keys, _keys_to_ignore_on_load_missing);
  drop_matching(info.unexpected_keys, _keys_to_ignore_on_load_unexpected);

  // Shapes.
  std::vector<std::pair<at::Tensor, at::Tensor>> assignments;  // (model tensor, checkpoint tensor)
  std::set<std::string> assigned_model_keys;
  for (const auto& [key, t] : tensors) {
    auto it = ckpt_to_model.find(key);
    if (it == ckpt_to_model.end()) continue;
    at::Tensor& target = model_tensors[it->second];
    if (target.sizes() != t.sizes()) {
      std::string what = fmt::format("{}: checkpoint {} vs model {}", key, shape_str(t.sizes()), shape_str(target.sizes()));
      if (!ignore_mismatched_sizes)
        throw CheckpointError(fmt::format(
            "{}: size mismatch for {}: copying a param with shape {} from checkpoint, the shape in current model "
            "({}) is {}. Pass ignore_mismatched_sizes to load the rest and re-initialise this one.",
            source, key, shape_str(t.sizes()), class_name, shape_str(target.sizes())));
      info.mismatched_keys.push_back(what);
      continue;
    }
    assignments.emplace_back(target, t);
    assigned_model_keys.insert(it->second);
  }

  // Init modules whose weights the checkpoint does not fully provide (set_initialized_submodules + _init_weights),
  // before assigning, so an init of a tied module never overwrites loaded values.
  if (init_missing) {
    std::shared_ptr<nn::Linear> output;
    if (config->tie_word_embeddings) output = get_output_embeddings();
    for (const auto& [name, module_ptr] : all_modules(*this)) {
      torch::nn::Module& module = *module_ptr;
      if (output && &module == output.get() && !output->bias.defined()) continue;
      const std::string p = name.empty() ? "" : name + ".";
      bool complete = true;
      for (const auto& [k, t] : model_state)
        if (starts_with(k, p) && !assigned_model_keys.count(k)) {
          // only keys that belong to this module's subtree
          complete = false;
          break;
        }
      if (!complete) _init_weights(module);
    }
  }
  for (auto& [target, t] : assignments) {
    if (t.scalar_type() == target.scalar_type() && t.device() == target.device()) target.set_data(t);
    else target.set_data(t.to(target.device(), target.scalar_type()));
  }
  tie_weights();
  return info;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Every tensor of one weights file (safetensors zero-copy; torch.save zip through the restricted unpickler).
std::vector<std::pair<std::string, at::Tensor>> read_weights(const std::string& path) {
  if (ends_with(path, ".bin")) return load_torch_bin(path);
  return safetensors::load_file(path);
}

}  // namespace

LoadingInfo PreTrainedModel::load_pretrained_weights(const std::string& dir, const FromPretrainedOptions& options) {
  WeightFiles weights = find_weight_files(dir, options.variant);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& path : weights.files) {
    auto file_tensors = read_weights(path);
    tensors.insert(tensors.end(), file_tensors.begin(), file_tensors.end());
  }
  if (_tp_state) distributed::shard_checkpoint(*this, tensors);  // each rank keeps only its slices
  loading_info = load_state_dict(tensors, weights.description, options.ignore_mismatched_sizes);
  return loading_info;
}

// ---------------------------------------------------------------------------------------------------------------
// Saving

namespace {

void write_model_card(const std::string& dir, const std::string& class_name, const std::vector<std::string>& tags) {
  std::string card = "---\nlibrary_name: transformers\ntags:\n";
  for (const auto& tag : tags) card += "- " + tag + "\n";
  card += "---\n\n# Model Card for " + class_name + "\n\n<!-- Provide a quick summary of what the model is/does. -->\n";
  std::string path = (fs::path(dir) / "README.md").string(), tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << card;
    if (!out) throw CheckpointError("cannot write " + path);
  }
  fs::rename(tmp, path);
}

}  // namespace

void PreTrainedModel::save_pretrained(const std::string& save_directory, const SavePretrainedOptions& options) {
  // Everything is written into a staging copy of the folder and swapped in at the end (atomic_dir.h): a save killed
  // at any point leaves the previous checkpoint intact.
  AtomicDirectory staging(save_directory);
  const std::string& dir = staging.path();

  auto state = state_dict();
  // Tensors sharing storage: drop the names matching _tied_weights_keys, keep one.
  std::map<const void*, std::vector<std::string>> shared;
  for (const auto& [k, t] : state) shared[storage_id(t)].push_back(k);
  std::set<std::string> to_delete;
  for (auto& [id, names] : shared) {
    if (names.size() < 2) continue;
    std::sort(names.begin(), names.end());
    size_t found = 0;
    for (const auto& name : names) {
      bool tied = std::any_of(_tied_weights_keys.begin(), _tied_weights_keys.end(),
                              [&](const std::string& pat) { return std::regex_search(name, std::regex(pat)); });
      if (tied && ++found < names.size()) to_delete.insert(name);
    }
    if (names.size() - std::count_if(names.begin(), names.end(), [&](const std::string& n) { return to_delete.count(n) > 0; }) > 1)
      throw CheckpointError(fmt::format("save_pretrained({}): tensors {} share memory but are not declared in "
                                        "_tied_weights_keys of {}",
                                        save_directory, fmt::join(names, ", "), class_name));
  }
  std::vector<std::pair<std::string, at::Tensor>> to_save;
  // _keep_in_fp32_modules: as from_pretrained(torch_dtype=float16) keeps them, a float16 save keeps them float32.
  auto keep_in_fp32 = [&](const std::string& key) {
    std::stringstream parts(key);
    for (std::string part; std::getline(parts, part, '.');)
      if (std::find(_keep_in_fp32_modules.begin(), _keep_in_fp32_modules.end(), part) != _keep_in_fp32_modules.end())
        return true;
    return false;
  };
  std::optional<c10::ScalarType> cast;
  if (!options.dtype.empty()) cast = dtype_from_name(options.dtype);
  for (auto& [k, t] : state) {
    if (to_delete.count(k)) continue;
    at::Tensor value = t.detach();
    if (cast && at::isFloatingType(value.scalar_type()) && !(*cast == at::kHalf && keep_in_fp32(k)))
      value = value.to(*cast);
    to_save.emplace_back(k, value);
  }

  // shard_checkpoint
  const std::string weights_name = add_variant("model.safetensors", options.variant);
  const int64_t max_shard = convert_file_size_to_int(options.max_shard_size);
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> blocks(1);
  int64_t last_block_size = 0, total_size = 0;
  for (auto& item : to_save) {
    int64_t size = item.second.numel() * static_cast<int64_t>(item.second.element_size());
    if (last_block_size + size > max_shard && !blocks.back().empty()) {
      blocks.emplace_back();
      last_block_size = 0;
    }
    blocks.back().push_back(item);
    last_block_size += size;
    total_size += size;
  }
  std::vector<std::string> shard_names;
  if (blocks.size() == 1) {
    shard_names.push_back(weights_name);
  } else {
    const std::string stem = weights_name.substr(0, weights_name.size() - std::string(".safetensors").size());
    for (size_t i = 0; i < blocks.size(); ++i)
      shard_names.push_back(fmt::format("{}-{:05d}-of-{:05d}.safetensors", stem, i + 1, blocks.size()));
  }

  // Remove stale shards of an earlier save with the same name stem.
  const std::string stem_no_suffix = weights_name.substr(0, weights_name.size() - std::string(".safetensors").size());
  const std::regex shard_re(R"((.*?)-\d{5}-of-\d{5})");
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string filename = entry.path().filename().string();
    std::string no_suffix = filename;
    auto pos = no_suffix.rfind(".safetensors");
    if (pos != std::string::npos) no_suffix = no_suffix.substr(0, pos);
    if (starts_with(filename, stem_no_suffix) && entry.is_regular_file() &&
        std::find(shard_names.begin(), shard_names.end(), filename) == shard_names.end() &&
        std::regex_match(no_suffix, shard_re))
      fs::remove(entry.path());
  }

  for (size_t i = 0; i < blocks.size(); ++i)
    safetensors::save_file(blocks[i], (fs::path(dir) / shard_names[i]).string());
  const std::string index_name = add_variant("model.safetensors.index.json", options.variant);
  if (blocks.size() > 1) {
    json index;
    index["metadata"] = {{"total_size", total_size}};
    json weight_map = json::object();
    for (size_t i = 0; i < blocks.size(); ++i)
      for (const auto& [k, t] : blocks[i]) weight_map[k] = shard_names[i];
    index["weight_map"] = weight_map;
    write_json_file(index, (fs::path(dir) / index_name).string());
  } else if (fs::exists(fs::path(dir) / index_name)) {
    fs::remove(fs::path(dir) / index_name);
  }

  if (options.save_config) {
    config->architectures = std::vector<std::string>{class_name};
    c10::ScalarType saved = cast.value_or(dtype());
    config->torch_dtype = dtype_name(saved);
    config->save_pretrained(dir);
    if (can_generate()) generation_config.save_pretrained(dir);
  }
  if (!model_tags.empty()) write_model_card(dir, class_name, model_tags);
  staging.commit();
  if (options.push_to_hub) {  // hub.h
    hub::PushToHubOptions push = options.hub;
    if (push.commit_message.empty()) push.commit_message = "Upload " + class_name;
    fs::path folder = fs::absolute(save_directory).lexically_normal();
    if (folder.filename().empty()) folder = folder.parent_path();
    hub::push_to_hub(options.repo_id.empty() ? folder.filename().string() : options.repo_id, save_directory, push);
  }
}

// ---------------------------------------------------------------------------------------------------------------

namespace {

// Sets the default dtype while a model is built, so parameters are allocated in the target dtype.
class DefaultDtypeGuard {
 public:
  explicit DefaultDtypeGuard(c10::ScalarType type) : previous_(c10::get_default_dtype()) {
    c10::set_default_dtype(c10::scalarTypeToTypeMeta(type));
  }
  ~DefaultDtypeGuard() { c10::set_default_dtype(previous_); }

 private:
  caffe2::TypeMeta previous_;
};

c10::ScalarType resolve_dtype(const std::string& requested, const PretrainedConfig& config, const std::string& dir,
                              const std::string& variant) {
  std::string name = requested;
  if (name == "auto") {
    if (config.torch_dtype) {
      name = *config.torch_dtype;
    } else {
      WeightFiles files = find_weight_files(dir, variant);
      name = "float32";
      for (const auto& [key, t] : read_weights(files.files.front()))
        if (at::isFloatingType(t.scalar_type())) {
          name = dtype_name(t.scalar_type());
          break;
        }
    }
  }
  if (name.empty()) return at::kFloat;
  c10::ScalarType type = dtype_from_name(name);
  // No CPU half kernels in libtorch 1.13: compute in float32 (LIBTORCH.md §0.5).
  if (type == at::kHalf) return at::kFloat;
  return type;
}

}  // namespace

std::shared_ptr<PreTrainedModel> from_pretrained_with(const std::string& path_or_repo_id, const std::string& class_name,
                                                      const ModelFactory& factory,
                                                      std::shared_ptr<PretrainedConfig> config,
                                                      const FromPretrainedOptions& options) {
  // A hub id: config, weights (with the variant) and generation config fetched into the cache's snapshot folder.
  const std::string path = hub::resolve_pretrained_model(path_or_repo_id, options.variant, options.hub);
  if (!fs::is_directory(path))
    throw ConfigError("model path " + path + " is not a directory (expected config.json and weights)");
  json dict = read_json_file((fs::path(path) / "config.json").string());
  if (dict.is_object())
    for (auto& [k, v] : options.config_overrides.items()) dict[k] = v;
  config->from_dict(dict, (fs::path(path) / "config.json").string());
  config->name_or_path = path;
  const std::string requested_attn =
      !options.attn_implementation.empty() ? options.attn_implementation : config->attn_implementation_internal;
  c10::ScalarType dtype = resolve_dtype(options.dtype, *config, path, options.variant);
  // quantization.h: config.json's quantization_config (a quantized checkpoint), else the one passed.
  std::shared_ptr<HfQuantizer> hf_quantizer = AutoHfQuantizer::for_loading(*config, options.quantization_config);
  if (hf_quantizer) dtype = hf_quantizer->update_torch_dtype(dtype);

  std::shared_ptr<PreTrainedModel> model;
  {
    NoInitWeights no_init;
    DefaultDtypeGuard guard(dtype);
    model = factory(config);
  }
  model->name_or_path = path;
  model->set_attn_implementation(requested_attn);
  if (hf_quantizer) hf_quantizer->preprocess_model(*model);
  if (!options.tp_plan.empty()) distributed::apply_tp_plan(*model, options.tp_plan);  // distributed.h
  if (!options.pp_plan.empty()) distributed::apply_pp_plan(*model, options.pp_plan);
  model->load_pretrained_weights(path, options);
  if (hf_quantizer) {
    hf_quantizer->postprocess_model(*model);
    model->hf_quantizer = hf_quantizer;
  }
  if (!options.device_map.is_null()) dispatch_model(*model, options.device_map, options);  // device_map.h
  model->eval();
  if (model->can_generate() && fs::exists(fs::path(path) / "generation_config.json"))
    model->generation_config = GenerationConfig::from_pretrained(path);
  return model;
}

double finfo_min(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return -3.3895313892515355e+38;
    case at::kHalf: return -65504.0;
    case at::kDouble: return std::numeric_limits<double>::lowest();
    default: return std::numeric_limits<float>::lowest();
  }
}

at::Tensor get_extended_attention_mask(const at::Tensor& attention_mask, at::IntArrayRef input_shape, bool is_decoder,
                                       c10::ScalarType dtype) {
  at::Tensor extended_attention_mask;
  if (attention_mask.dim() == 3) {
    extended_attention_mask = attention_mask.unsqueeze(1);
  } else if (attention_mask.dim() == 2) {
    if (is_decoder) {
      // create_extended_attention_mask_for_decoder: causal, with the cached prefix fully visible
      int64_t batch_size = input_shape[0], seq_length = input_shape[1];
      at::Tensor seq_ids = at::arange(seq_length, at::TensorOptions(at::kLong).device(attention_mask.device()));
      at::Tensor causal_mask = seq_ids.unsqueeze(0).unsqueeze(0).repeat({batch_size, seq_length, 1})
                                   .le(seq_ids.unsqueeze(0).unsqueeze(-1))
                                   .to(attention_mask.scalar_type());
      if (causal_mask.size(1) < attention_mask.size(1)) {
        int64_t prefix_seq_len = attention_mask.size(1) - causal_mask.size(1);
        causal_mask = at::cat({at::ones({batch_size, seq_length, prefix_seq_len}, causal_mask.options()), causal_mask},
                              -1);
      }
      extended_attention_mask = causal_mask.unsqueeze(1) * attention_mask.unsqueeze(1).unsqueeze(1);
    } else {
      extended_attention_mask = attention_mask.unsqueeze(1).unsqueeze(1);
    }
  } else {
    throw ValueError("Wrong shape for input_ids (shape [" + std::to_string(input_shape[0]) + ", " +
                     std::to_string(input_shape[1]) + "]) or attention_mask (" +
                     std::to_string(attention_mask.dim()) + "-D): expected a 2-D or 3-D attention_mask");
  }
  extended_attention_mask = extended_attention_mask.to(dtype);
  return (1.0 - extended_attention_mask) * finfo_min(dtype);
}

at::Tensor invert_attention_mask(const at::Tensor& encoder_attention_mask, c10::ScalarType dtype) {
  at::Tensor extended;
  if (encoder_attention_mask.dim() == 3) extended = encoder_attention_mask.unsqueeze(1);
  else if (encoder_attention_mask.dim() == 2) extended = encoder_attention_mask.unsqueeze(1).unsqueeze(1);
  else
    throw ValueError("encoder_attention_mask must be 2-D or 3-D, got " + std::to_string(encoder_attention_mask.dim()) +
                     "-D");
  extended = extended.to(dtype);
  return (1.0 - extended) * finfo_min(dtype);
}

std::vector<at::Tensor> get_head_mask(const at::Tensor& head_mask, int64_t num_hidden_layers, c10::ScalarType dtype) {
  std::vector<at::Tensor> out(num_hidden_layers);
  if (!head_mask.defined()) return out;
  at::Tensor mask;  // [layers, 1, heads, 1, 1]
  if (head_mask.dim() == 1)
    mask = head_mask.unsqueeze(0).unsqueeze(0).unsqueeze(-1).unsqueeze(-1).expand({num_hidden_layers, -1, -1, -1, -1});
  else if (head_mask.dim() == 2)
    mask = head_mask.unsqueeze(1).unsqueeze(-1).unsqueeze(-1);  // a head_mask for each layer
  else
    throw ValueError("head_mask must be [num_heads] or [num_hidden_layers, num_heads], got " +
                     std::to_string(head_mask.dim()) + "-D");
  if (mask.size(0) != num_hidden_layers)
    throw ValueError("head_mask has " + std::to_string(mask.size(0)) + " layers, the model " +
                     std::to_string(num_hidden_layers));
  mask = mask.to(dtype);
  for (int64_t i = 0; i < num_hidden_layers; ++i) out[i] = mask[i];
  return out;
}

int64_t convert_file_size_to_int(const std::string& size) {
  static const std::regex re(R"(^\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|[KMGT]?B)?\s*$)", std::regex::icase);
  std::smatch m;
  if (!std::regex_match(size, m, re))
    throw ValueError("max_shard_size '" + size + "' is not an integer or a size like '5GB' or '200MB'");
  double value = std::stod(m[1].str());
  std::string unit = m[2].str();
  std::transform(unit.begin(), unit.end(), unit.begin(), ::toupper);
  static const std::map<std::string, double> units{
      {"", 1},      {"B", 1},        {"KB", 1e3},     {"MB", 1e6},          {"GB", 1e9},
      {"TB", 1e12}, {"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
  int64_t bytes = static_cast<int64_t>(value * units.at(unit));
  // transformers: "5GB" with a trailing "b" means bits.
  if (!unit.empty() && size.back() == 'b' && unit != "B") bytes /= 8;
  return bytes;
}

c10::ScalarType dtype_from_name(const std::string& raw) {
  std::string name = starts_with(raw, "torch.") ? raw.substr(6) : raw;
  static const std::map<std::string, c10::ScalarType> table{
      {"float32", at::kFloat}, {"float", at::kFloat},  {"float16", at::kHalf},   {"half", at::kHalf},
      {"fp32", at::kFloat},    {"fp16", at::kHalf},    {"bf16", at::kBFloat16},
      {"bfloat16", at::kBFloat16}, {"float64", at::kDouble}, {"double", at::kDouble}, {"int64", at::kLong},
      {"int32", at::kInt},     {"int8", at::kChar},    {"uint8", at::kByte},    {"bool", at::kBool}};
  auto it = table.find(name);
  if (it == table.end())
    throw ValueError("unknown dtype '" + raw + "'; use float32, bfloat16, float16, float64 or auto");
  return it->second;
}

std::string dtype_name(c10::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(type);
  }
}

}  // namespace transformers
