// The per-layer KV cache and the cached self-attention step.
//
// Note [KV cache]
// Generation runs the prompt once through every layer (prefill: the tiled attention kernel over
// the prompt's rows, as training does) and keeps each layer's keys and values; each new token
// then computes its own q, k, v, stores k and v, and attends over the cache with one query row.
// Keys are cached after rotation (RoPE rotates a key by its own position only, so a stored key
// never changes), and the query is rotated by its true global position, which keeps counting
// past a ring's wrap. The cache is allocated once: [B, Hkv, capacity, D] per layer, with
// capacity the window's reach for sliding and dilated patterns (memory stays flat however long
// the stream) or the whole sequence for full causal attention. The single-query kernel decides
// the mask per slot from the slot's global position, so the ring needs no reordering.
#include "framework/nn/kv_cache.h"

#include <algorithm>

#include "framework/autograd/grad_mode.h"
#include "framework/backend/attention_mask.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/attention_decode.h"
#include "framework/ops/join.h"
#include "framework/ops/rope.h"
#include "framework/ops/view.h"

namespace strand::nn {
namespace {

// [B, T, H * D] -> [B, H, T, D], a view (as MultiHeadAttention splits its heads).
Tensor split_heads(const Tensor& x, int64_t heads, int64_t head_dim) {
  return ops::transpose(ops::reshape(x, {x.size(0), x.size(1), heads, head_dim}), 1, 2);
}

// Rows [row, row + n) of a [B, H, N, D] tensor, as a view.
Tensor rows_of(const Tensor& t, int64_t row, int64_t n) {
  return t.as_strided({t.size(0), t.size(1), n, t.size(3)}, t.strides(), t.offset() + row * t.strides()[2]);
}

}  // namespace

KvCache::KvCache(int64_t batch, int64_t kv_heads, int64_t head_dim, int64_t capacity, DType dtype)
    : capacity_(capacity) {
  STRAND_CHECK(batch > 0 && kv_heads > 0 && head_dim > 0 && capacity > 0, ValueError, "kv_cache: batch ", batch,
               ", kv heads ", kv_heads, ", head dim ", head_dim, " and capacity ", capacity, " must be positive");
  k_ = Tensor::zeros({batch, kv_heads, capacity, head_dim}, dtype);
  v_ = Tensor::zeros({batch, kv_heads, capacity, head_dim}, dtype);
  positions_.assign(static_cast<size_t>(capacity), -1);
}

void KvCache::write(const Tensor& k, const Tensor& v, int64_t first) {
  STRAND_CHECK(k.dim() == 4 && v.shape() == k.shape() && k.size(0) == k_.size(0) && k.size(1) == k_.size(1) &&
                   k.size(3) == k_.size(3),
               ShapeError, "kv_cache: rows ", describe(k), " and ", describe(v), " do not fit the cache ",
               describe(k_));
  STRAND_CHECK(first == length_, ValueError, "kv_cache: rows must follow the cached ones: position ", first,
               " written after ", length_, " positions");
  const int64_t n = k.size(2);
  const int64_t skip = std::max<int64_t>(0, n - capacity_);  // rows a later row would overwrite
  // At most two runs of consecutive slots: up to the end of the buffer, then from its start.
  for (int64_t r = skip; r < n;) {
    const int64_t slot = (first + r) % capacity_;
    const int64_t run = std::min(n - r, capacity_ - slot);
    rows_of(k_, slot, run).copy_from(rows_of(k, r, run));
    rows_of(v_, slot, run).copy_from(rows_of(v, r, run));
    for (int64_t i = 0; i < run; ++i) positions_[static_cast<size_t>(slot + i)] = first + r + i;
    r += run;
  }
  length_ = first + n;
}

int64_t cache_reach(const MaskSpec& mask) {
  const bool plain = mask.key_lengths.empty() && mask.cu_seqlens.empty();
  if (mask.causal && plain) {
    if (mask.kind == MaskKind::None) return 0;
    if (mask.kind == MaskKind::Sliding || mask.kind == MaskKind::Dilated) return mask.window_left + 1;
  }
  throw ValueError(detail::concat("kv_cache: attention pattern ", mask_pattern_name(mask),
                                  mask.causal ? "" : " (bidirectional)",
                                  " has no cached form (generation supports causal, sliding and dilated)"));
}

Tensor cached_self_attention(const MultiHeadAttention& attn, const Tensor& x, int64_t first, KvCache& cache) {
  autograd::NoGradGuard no_grad;
  const AttentionOptions& options = attn.options();
  STRAND_CHECK(!options.linear, ValueError,
               "kv_cache: attention pattern linear (Performer) has no cached form");
  STRAND_CHECK(x.dim() == 3, ShapeError, "kv_cache: x must be [B, n, C], got ", describe(x));
  const int64_t n = x.size(1), H = attn.n_head(), Hkv = attn.n_kv_head(), D = attn.head_dim();
  STRAND_CHECK(first == cache.length() && (n == 1 || first == 0), ValueError, "kv_cache: ", n,
               " rows at position ", first, " after ", cache.length(),
               " cached positions (the prompt goes first, then one token at a time)");
  // A ring smaller than the window's reach would drop keys a query still attends.
  const int64_t reach = cache_reach(options.mask);
  STRAND_CHECK(first + n <= cache.capacity() || (reach > 0 && cache.capacity() >= reach), ValueError,
               "kv_cache: position ", first + n - 1, " does not fit a cache of ", cache.capacity(), " slots",
               reach > 0 ? detail::concat(" (the window reaches ", reach, " positions)") : std::string());
  std::vector<Tensor> qkv = ops::split(attn.c_attn().forward(x), {H * D, Hkv * D, Hkv * D}, -1);
  Tensor q = split_heads(qkv[0], H, D);
  Tensor k = split_heads(qkv[1], Hkv, D);
  Tensor v = split_heads(qkv[2], Hkv, D);
  if (options.rope) {
    std::vector<double> at(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) at[static_cast<size_t>(i)] = static_cast<double>(first + i);
    const Tensor positions = Tensor::from_vector(at, {n}, DType::I32);
    q = ops::rope(q, positions, options.rope_base);
    k = ops::rope(k, positions, options.rope_base);
  }
  cache.write(k, v, first);
  Tensor o;
  if (n > 1) {
    o = ops::attention(q, k, v, options.mask).o;  // prefill: the tiled kernel over the prompt
  } else {
    o = ops::attention_decode(q, cache.keys(), cache.values(), cache.positions(), first, options.mask);
  }
  o = ops::reshape(ops::transpose(o, 1, 2), {o.size(0), n, H * D});
  return attn.c_proj().forward(o);
}

}  // namespace strand::nn
