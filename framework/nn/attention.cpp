// Attention modules: the fused q|k|v projection split into head views (no copies: the attention
// kernel reads [B, T, H, D] transposed to [B, H, T, D] in place), rotation, the attention call,
// and the output projection.
//
// Note [Causal patterns]
// A decoder must never let a query see a later position, or next-token training reads its own
// targets. Causal is one flag, MaskSpec::causal, on top of every pattern: it ANDs k <= q into
// the kind (None: plain causal attention; a causal sliding window; Longformer whose global
// tokens see only earlier keys and are seen only by later queries; BigBird whose random blocks
// are cut at the query), and linear attention runs its causal form when it is set.
#include "framework/nn/attention.h"

#include <cmath>

#include "framework/autograd/checkpoint.h"
#include "framework/core/error.h"
#include "framework/nn/autocast.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/join.h"
#include "framework/ops/linear_attention.h"
#include "framework/ops/rope.h"
#include "framework/ops/view.h"

namespace strand::nn {
namespace {

// [B, T, H * D] (unit stride along the last axis) -> [B, H, T, D], a view.
Tensor split_heads(const Tensor& x, int64_t heads, int64_t head_dim) {
  return ops::transpose(ops::reshape(x, {x.size(0), x.size(1), heads, head_dim}), 1, 2);
}

// [B, H, T, D] -> [B, T, H * D].
Tensor merge_heads(const Tensor& o) {
  return ops::reshape(ops::transpose(o, 1, 2), {o.size(0), o.size(2), o.size(1) * o.size(3)});
}

// merge_heads(o), the copy the output projection saves, marked for selective checkpointing:
// remade from o (which the attention node keeps) instead of kept beside it, C floats a token
// (autograd::recomputable, a no-op outside a RecomputeScope).
Tensor merged_for_projection(const Tensor& o) {
  return autograd::recomputable(merge_heads(o), [od = o.detach()] { return merge_heads(od); });
}

void check_heads(const char* op, int64_t d_model, int64_t n_head, int64_t n_kv_head, int64_t head_dim = 0) {
  STRAND_CHECK(d_model > 0 && n_head > 0, ValueError, op, ": d_model and n_head must be positive, got d_model ",
               d_model, ", n_head ", n_head);
  STRAND_CHECK(head_dim > 0 || d_model % n_head == 0, ValueError, op, ": n_head ", n_head, " must divide d_model ",
               d_model);
  STRAND_CHECK(n_kv_head > 0 && n_head % n_kv_head == 0, ValueError, op, ": n_kv_head ", n_kv_head,
               " must divide n_head ", n_head);
}

void check_input(const char* op, const char* what, const Tensor& x, int64_t d_model) {
  STRAND_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d_model, ShapeError, op, ": ", what,
               " must be [B, T, C] with C = ", d_model, ", got ", x.defined() ? describe(x) : "undefined");
}

// Attention under the thread's autocast. bf16: q, k, v go to the kernels as bf16 tensors, on one
// rank and through the ring and Ulysses alike, which run the CPU's bf16 dot products where it
// has them (docs/attention.md) and exchange bf16 blocks; o comes back float32 (its bf16
// rounding is the one the output projection applies anyway). fp16: q, k, v rounded and read as
// float32 (the tiles are bf16 only).
ops::AttentionOutput low_precision_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                             const parallel::SequenceShard& shard) {
  if (autocast_dtype() == DType::BF16) {
    ops::AttentionOutput out = parallel::attention(autocast(q), autocast(k), autocast(v), mask, 0.0, shard);
    out.o = ops::to_dtype(out.o, DType::F32);
    return out;
  }
  return parallel::attention(autocast_round(q), autocast_round(k), autocast_round(v), mask, 0.0, shard);
}

}  // namespace

MultiHeadAttention::MultiHeadAttention(int64_t d_model, int64_t n_head, const AttentionOptions& options)
    : d_model_(d_model), n_head_(n_head), n_kv_head_(options.n_kv_head == 0 ? n_head : options.n_kv_head),
      head_dim_(0), options_(options) {
  check_heads("multi_head_attention", d_model, n_head, n_kv_head_, options.head_dim);
  head_dim_ = options.head_dim > 0 ? options.head_dim : d_model / n_head;
  STRAND_CHECK(!options.rope || head_dim_ % 2 == 0, ValueError, "multi_head_attention: rope needs an even head dim, ",
               "got d_model ", d_model, " / n_head ", n_head, " = ", head_dim_);
  const int64_t qkv = (n_head_ + 2 * n_kv_head_) * head_dim_;
  c_attn_ = register_module("c_attn", std::make_shared<Linear>(d_model, qkv, LinearOptions{options.bias, options.seed,
                                                                                            options.init_std, options.dtype}));
  // Parameter j draws from seed + j: c_proj.weight comes after c_attn.weight (and its bias).
  const uint64_t per_linear = options.bias ? 2 : 1;
  c_proj_ = register_module("c_proj", std::make_shared<Linear>(n_head_ * head_dim_, d_model,
                                                               LinearOptions{options.bias, options.seed + per_linear,
                                                                             options.proj_init_std, options.dtype}));
  if (options_.linear) {
    const double d = static_cast<double>(head_dim_);
    const int64_t features = options.linear_features > 0
                                 ? options.linear_features
                                 : std::max<int64_t>(head_dim_, static_cast<int64_t>(std::lround(d * std::log(d))));
    projection_ = register_buffer("performer_projection",
                                  ops::performer_projection(features, head_dim_, options.projection_seed, options.dtype));
  }
}

MultiHeadAttention::Heads MultiHeadAttention::heads(const Tensor& x, const Tensor& positions) const {
  check_input("multi_head_attention", "x", x, d_model_);
  const int64_t q_width = n_head_ * head_dim_, kv_width = n_kv_head_ * head_dim_;
  std::vector<Tensor> qkv = ops::split(c_attn_->forward(x), {q_width, kv_width, kv_width}, -1);
  Heads h{split_heads(qkv[0], n_head_, head_dim_), split_heads(qkv[1], n_kv_head_, head_dim_),
          split_heads(qkv[2], n_kv_head_, head_dim_)};
  if (options_.rope) {
    STRAND_CHECK(positions.defined(), ValueError, "multi_head_attention: rope needs the token positions");
    h.q = ops::rope(h.q, positions, options_.rope_base);
    h.k = ops::rope(h.k, positions, options_.rope_base);
  }
  return h;
}

Tensor MultiHeadAttention::forward(const Tensor& x, const Tensor& positions, const parallel::SequenceShard& shard) const {
  const auto [q, k, v] = heads(x, positions);
  Tensor o;
  if (options_.linear) {
    STRAND_CHECK(shard.local(), ValueError, "multi_head_attention: linear attention over ", shard.size(),
                 " sequence ranks is not built yet");
    o = ops::linear_attention(q, k, v, projection_, options_.mask.causal);
  } else {
    // Under autocast q, k and v are rounded to the compute dtype; the kernels keep float32
    // softmax statistics and accumulators (Note [Mixed precision] in nn/autocast.h).
    ops::AttentionOutput out = low_precision_attention(q, k, v, options_.mask, shard);
    if (probe_) probe_(q, k, out.lse);
    o = std::move(out.o);
  }
  // Every layout returns all n_head heads of this rank's rows, so the gate sees each head.
  if (head_gate_.defined()) o = ops::mul(o, ops::reshape(head_gate_, {1, n_head_, 1, 1}));
  return c_proj_->forward(merged_for_projection(o));
}

void MultiHeadAttention::set_head_gate(Tensor gate) {
  STRAND_CHECK(!gate.defined() || (gate.dim() == 1 && gate.size(0) == n_head_), ShapeError,
               "multi_head_attention: head gate must be [", n_head_, "], got ", describe(gate));
  head_gate_ = std::move(gate);
}

CrossAttention::CrossAttention(int64_t d_model, int64_t n_head, const AttentionOptions& options)
    : d_model_(d_model), n_head_(n_head), n_kv_head_(options.n_kv_head == 0 ? n_head : options.n_kv_head),
      head_dim_(0) {
  check_heads("cross_attention", d_model, n_head, n_kv_head_);
  head_dim_ = d_model / n_head;
  const uint64_t per_linear = options.bias ? 2 : 1;  // parameter j draws from seed + j
  q_attn_ = register_module("q_attn", std::make_shared<Linear>(d_model, n_head_ * head_dim_,
                                                               LinearOptions{options.bias, options.seed,
                                                                             options.init_std, options.dtype}));
  c_attn_ = register_module("c_attn", std::make_shared<Linear>(d_model, 2 * n_kv_head_ * head_dim_,
                                                               LinearOptions{options.bias, options.seed + per_linear,
                                                                             options.init_std, options.dtype}));
  c_proj_ = register_module("c_proj", std::make_shared<Linear>(d_model, d_model,
                                                               LinearOptions{options.bias, options.seed + 2 * per_linear,
                                                                             options.proj_init_std, options.dtype}));
}

Tensor CrossAttention::forward(const Tensor& x, const Tensor& memory, const parallel::SequenceShard& shard) const {
  check_input("cross_attention", "x", x, d_model_);
  check_input("cross_attention", "memory", memory, d_model_);
  STRAND_CHECK(memory.size(0) == x.size(0), ShapeError, "cross_attention: batch of x ", describe(x),
               " and memory ", describe(memory), " differ");
  const int64_t kv_width = n_kv_head_ * head_dim_;
  Tensor q = split_heads(q_attn_->forward(x), n_head_, head_dim_);
  std::vector<Tensor> kv = ops::split(c_attn_->forward(memory), {kv_width, kv_width}, -1);
  Tensor o = low_precision_attention(q, split_heads(kv[0], n_kv_head_, head_dim_),
                                     split_heads(kv[1], n_kv_head_, head_dim_), MaskSpec{}, shard)
                 .o;
  return c_proj_->forward(merged_for_projection(o));
}

}  // namespace strand::nn
