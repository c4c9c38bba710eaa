// KV caches, as transformers/cache_utils.py. DynamicCache grows its buffers geometrically instead of torch.cat on
// every step, and hands out views of the filled part.
#pragma once

#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

namespace transformers {

class Cache {
 public:
  virtual ~Cache() = default;
  // Appends key/value states [B, H, T, D] of `layer_idx` and returns the full keys/values for that layer.
  virtual std::pair<at::Tensor, at::Tensor> update(const at::Tensor& key_states, const at::Tensor& value_states,
                                                   int64_t layer_idx) = 0;
  virtual int64_t get_seq_length(int64_t layer_idx = 0) const = 0;
  virtual int64_t num_layers() const = 0;
  // Selects batch rows (beam search): every buffer is index_select'ed on dim 0.
  virtual void reorder_cache(const at::Tensor& beam_idx) = 0;
  // Per layer (key, value[, cross key, cross value]), each [B, H, T, D] — transformers' legacy tuple format.
  virtual std::vector<std::vector<at::Tensor>> to_legacy_cache() const = 0;
};

class DynamicCache : public Cache {
 public:
  DynamicCache() = default;
  static std::shared_ptr<DynamicCache> from_legacy_cache(const std::vector<std::pair<at::Tensor, at::Tensor>>& past);

  std::pair<at::Tensor, at::Tensor> update(const at::Tensor& key_states, const at::Tensor& value_states,
                                           int64_t layer_idx) override;
  int64_t get_seq_length(int64_t layer_idx = 0) const override;
  int64_t num_layers() const override { return static_cast<int64_t>(layers_.size()); }
  void reorder_cache(const at::Tensor& beam_idx) override;
  std::vector<std::vector<at::Tensor>> to_legacy_cache() const override;
  // Reserve room for `tokens` positions in every layer that exists or is created later (avoids regrowth).
  void reserve(int64_t tokens) { reserve_ = tokens; }
  // Keeps the first `max_length` positions of every layer (transformers' DynamicCache.crop).
  void crop(int64_t max_length);

 protected:
  struct Layer {
    at::Tensor keys, values;  // [B, H, capacity, D]
    int64_t length = 0;
  };
  std::vector<Layer> layers_;
  int64_t reserve_ = 0;
};

// transformers' StaticCache: every layer holds one preallocated [batch, heads, max_cache_len, head_dim] key and value
// buffer (allocated at the layer's first update, with that update's batch, heads, head_dim, dtype and device) that is
// never reallocated; update() writes in place and hands out views of the filled part, so attention sees exactly what
// it sees with a DynamicCache. An update past max_cache_len raises a GenerationError. generate() creates one, sized
// max_length, for cache_implementation="static".
class StaticCache : public DynamicCache {
 public:
  explicit StaticCache(int64_t max_cache_len);
  std::pair<at::Tensor, at::Tensor> update(const at::Tensor& key_states, const at::Tensor& value_states,
                                           int64_t layer_idx) override;
  int64_t get_max_length() const { return max_cache_len_; }
  // The preallocated buffers of a layer ([B, H, max_cache_len, D]); undefined before its first update.
  std::pair<at::Tensor, at::Tensor> buffers(int64_t layer_idx) const;

 private:
  int64_t max_cache_len_;
};

// Self-attention and cross-attention caches of an encoder-decoder (or cross-attending decoder) model. The legacy
// format has four tensors per layer: self key, self value, cross key, cross value.
class EncoderDecoderCache : public Cache {
 public:
  EncoderDecoderCache() : self_attention_cache(std::make_shared<DynamicCache>()),
                          cross_attention_cache(std::make_shared<DynamicCache>()) {}
  EncoderDecoderCache(std::shared_ptr<DynamicCache> self_attention, std::shared_ptr<DynamicCache> cross_attention)
      : self_attention_cache(std::move(self_attention)), cross_attention_cache(std::move(cross_attention)) {}
  // Self-attention update (the Cache interface); cross-attention states go through cross_attention_cache.
  std::pair<at::Tensor, at::Tensor> update(const at::Tensor& key_states, const at::Tensor& value_states,
                                           int64_t layer_idx) override {
    return self_attention_cache->update(key_states, value_states, layer_idx);
  }
  int64_t get_seq_length(int64_t layer_idx = 0) const override { return self_attention_cache->get_seq_length(layer_idx); }
  int64_t num_layers() const override { return self_attention_cache->num_layers(); }
  void reorder_cache(const at::Tensor& beam_idx) override {
    self_attention_cache->reorder_cache(beam_idx);
    cross_attention_cache->reorder_cache(beam_idx);
  }
  // Whether layer `layer_idx` already holds its (fixed) cross-attention keys/values.
  bool has_cross(int64_t layer_idx) const { return cross_attention_cache->num_layers() > layer_idx; }
  std::vector<std::vector<at::Tensor>> to_legacy_cache() const override;

  std::shared_ptr<DynamicCache> self_attention_cache, cross_attention_cache;
};

}  // namespace transformers
