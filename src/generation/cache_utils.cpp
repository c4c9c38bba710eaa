// transformers/cache_utils.py DynamicCache, with amortised growth instead of torch.cat per step.
#include "transformers/cache_utils.h"

#include "transformers/errors.h"
#include "transformers/kernels.h"

#include <ATen/ATen.h>

namespace transformers {

std::shared_ptr<DynamicCache> DynamicCache::from_legacy_cache(
    const std::vector<std::pair<at::Tensor, at::Tensor>>& past) {
  auto cache = std::make_shared<DynamicCache>();
  for (size_t i = 0; i < past.size(); ++i) cache->update(past[i].first, past[i].second, static_cast<int64_t>(i));
  return cache;
}

std::pair<at::Tensor, at::Tensor> DynamicCache::update(const at::Tensor& key_states, const at::Tensor& value_states,
                                                       int64_t layer_idx) {
  if (layer_idx > static_cast<int64_t>(layers_.size()))
    throw ValueError("DynamicCache: layer " + std::to_string(layer_idx) + " updated before layer " +
                     std::to_string(layers_.size()));
  if (layer_idx == static_cast<int64_t>(layers_.size())) layers_.emplace_back();
  Layer& layer = layers_[layer_idx];
  int64_t incoming = key_states.size(2);
  int64_t needed = layer.length + incoming;
  if (!layer.keys.defined() || needed > layer.keys.size(2)) {
    int64_t capacity = std::max({needed, reserve_, layer.keys.defined() ? 2 * layer.keys.size(2) : int64_t{0}});
    auto grow = [&](const at::Tensor& old, const at::Tensor& like) {
      at::Tensor buffer = at::empty({like.size(0), like.size(1), capacity, like.size(3)}, like.options());
      if (old.defined() && layer.length > 0) buffer.narrow(2, 0, layer.length).copy_(old.narrow(2, 0, layer.length));
      return buffer;
    };
    layer.keys = grow(layer.keys, key_states);
    layer.values = grow(layer.values, value_states);
  }
  // Row copies straight into the buffers at inference (kernels.h); a strided copy_ otherwise.
  if (!kernels::write_cache_rows(layer.keys, layer.length, key_states))
    layer.keys.narrow(2, layer.length, incoming).copy_(key_states);
  if (!kernels::write_cache_rows(layer.values, layer.length, value_states))
    layer.values.narrow(2, layer.length, incoming).copy_(value_states);
  layer.length = needed;
  return {layer.keys.narrow(2, 0, needed), layer.values.narrow(2, 0, needed)};
}

int64_t DynamicCache::get_seq_length(int64_t layer_idx) const {
  if (layer_idx >= static_cast<int64_t>(layers_.size())) return 0;
  return layers_[layer_idx].length;
}

void DynamicCache::crop(int64_t max_length) {
  for (auto& layer : layers_) layer.length = std::max<int64_t>(0, std::min(layer.length, max_length));
}

void DynamicCache::reorder_cache(const at::Tensor& beam_idx) {
  for (auto& layer : layers_) {
    if (!layer.keys.defined()) continue;
    layer.keys = layer.keys.index_select(0, beam_idx);
    layer.values = layer.values.index_select(0, beam_idx);
  }
}

std::vector<std::vector<at::Tensor>> DynamicCache::to_legacy_cache() const {
  std::vector<std::vector<at::Tensor>> out;
  for (const auto& layer : layers_)
    out.push_back({layer.keys.narrow(2, 0, layer.length), layer.values.narrow(2, 0, layer.length)});
  return out;
}

StaticCache::StaticCache(int64_t max_cache_len) : max_cache_len_(max_cache_len) {
  if (max_cache_len <= 0)
    throw GenerationError("StaticCache: max_cache_len must be > 0, got " + std::to_string(max_cache_len));
  reserve_ = max_cache_len;
}

std::pair<at::Tensor, at::Tensor> StaticCache::update(const at::Tensor& key_states, const at::Tensor& value_states,
                                                      int64_t layer_idx) {
  int64_t seen = get_seq_length(layer_idx);
  if (seen + key_states.size(2) > max_cache_len_)
    throw GenerationError("StaticCache is full: layer " + std::to_string(layer_idx) + " holds " +
                          std::to_string(seen) + " positions and " + std::to_string(key_states.size(2)) +
                          " more do not fit in max_cache_len=" + std::to_string(max_cache_len_) +
                          " (raise max_length / max_new_tokens or use the dynamic cache)");
  return DynamicCache::update(key_states, value_states, layer_idx);
}

std::pair<at::Tensor, at::Tensor> StaticCache::buffers(int64_t layer_idx) const {
  if (layer_idx >= static_cast<int64_t>(layers_.size())) return {};
  return {layers_[layer_idx].keys, layers_[layer_idx].values};
}

std::vector<std::vector<at::Tensor>> EncoderDecoderCache::to_legacy_cache() const {
  auto out = self_attention_cache->to_legacy_cache();
  auto cross = cross_attention_cache->to_legacy_cache();
  for (size_t i = 0; i < out.size() && i < cross.size(); ++i) out[i].insert(out[i].end(), cross[i].begin(), cross[i].end());
  return out;
}

}  // namespace transformers
