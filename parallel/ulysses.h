// Ulysses sequence parallelism: the all-to-all exchanges between sequence-sharded and
// head-sharded attention inputs, each the other's backward, and the KV-head replication that
// lets GQA run on more ranks than it has KV heads.
#pragma once
#include <cstdint>

#include "framework/ops/attention.h"
#include "parallel/comm/group.h"
#include "parallel/layout.h"

namespace strand::parallel {

// x [B, H, n, D] (this rank's n rows of every head; also lse-shaped [B, H, n]) on each of the
// u = group.size() ranks -> [B, H/u, u*n, D]: heads [r*H/u, (r+1)*H/u) of all u ranks' rows,
// rank j's rows at [j*n, (j+1)*n). H divisible by u (ShapeError naming both otherwise).
// Differentiable; its backward is heads_to_seq of the gradient.
Tensor seq_to_heads(const Tensor& x, Group& group);
// The inverse: [B, H/u, u*n, D] (or [B, H/u, u*n]) -> [B, H, n, D] (or [B, H, n]).
Tensor heads_to_seq(const Tensor& x, Group& group);

// kv [B, Hkv, n, D] -> [B, Hkv * times, n, D], head i a copy of head i / times (so query head h
// still reads the copy of its own KV head). Its backward sums the copies' gradients.
Tensor repeat_kv_heads(const Tensor& kv, int64_t times);

// Ulysses attention over `group` (pure Ulysses: every rank computes whole sequences for H/u
// heads, with ops::attention). `layout` is the sp-level layout over group.size() ranks. The
// hybrid (ring across Ulysses groups) is parallel/hybrid.h; both are
// ulysses_exchange_attention there.
ops::AttentionOutput ulysses_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                       double scale, Group& group, const SequenceLayout& layout);

}  // namespace strand::parallel
