// The key/value cache of one self-attention layer for generation, and the attention step that
// reads and extends it: the prompt's rows through the tiled attention kernel (prefill), then each
// new token through the single-query kernel (ops::attention_decode). Note [KV cache].
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/nn/attention.h"

namespace strand::nn {

// Preallocated keys and values [B, Hkv, capacity, D] (Hkv = the layer's key/value heads, so a
// GQA layer caches Hkv heads, not Hq) and the global position of the key in each slot. The key
// at position p lives in slot p % capacity: a cache whose capacity covers a window's reach is a
// ring that overwrites keys no later query can attend.
class KvCache {
 public:
  KvCache(int64_t batch, int64_t kv_heads, int64_t head_dim, int64_t capacity, DType dtype);

  // Stores k, v [B, Hkv, n, D] as the keys of global positions first, ..., first + n - 1. Only
  // the last `capacity` rows are kept when n exceeds it (earlier ones would be overwritten).
  void write(const Tensor& k, const Tensor& v, int64_t first);

  const Tensor& keys() const { return k_; }
  const Tensor& values() const { return v_; }
  // [capacity]: the position held by each slot, -1 for a slot never written.
  std::span<const int64_t> positions() const { return positions_; }
  int64_t capacity() const { return capacity_; }
  // The next position to write (one past the newest key); 0 for an empty cache.
  int64_t length() const { return length_; }
  // Bytes of the key and value buffers.
  int64_t bytes() const { return static_cast<int64_t>(k_.nbytes() + v_.nbytes()); }

 private:
  int64_t capacity_;
  Tensor k_, v_;
  std::vector<int64_t> positions_;
  int64_t length_ = 0;
};

// How many positions back a query of `mask` can attend, counting its own: window_left + 1 for
// a causal sliding or dilated window (a ring of that many slots is enough, however long the
// stream), 0 for causal attention over every earlier key (the cache must hold the whole
// sequence). Other masks cannot be cached: ValueError naming the pattern (bidirectional masks
// let earlier tokens see later ones; longformer and bigbird reach fixed global or random
// positions that a ring would drop, and their cached form is not built).
int64_t cache_reach(const MaskSpec& mask);

// Self-attention of `attn` for new rows x [B, n, C] at global positions first, ..., first + n - 1,
// reading and extending `cache`. An empty cache takes the whole prompt at once (first = 0, any
// n: the tiled attention kernel over the prompt, whose keys are then stored); afterwards one row
// at a time at first = cache.length() (the single-query kernel over the cache). Records no
// gradient. Performer (linear) attention has no cached form here: ValueError.
Tensor cached_self_attention(const MultiHeadAttention& attn, const Tensor& x, int64_t first, KvCache& cache);

}  // namespace strand::nn
