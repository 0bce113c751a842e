// Hybrid sequence parallelism (as in USP): Ulysses all-to-all inside groups of consecutive sp
// ranks, ring attention across those groups, and the inverse all-to-all.
#pragma once
#include "framework/ops/attention.h"
#include "parallel/comm/group.h"
#include "parallel/layout.h"

namespace strand::parallel {

// sp = ring.size() x ulysses.size() ranks; this rank is sp rank ring.rank() * u + ulysses.rank()
// of `layout` (the sp-level layout, SequenceLayout::hybrid). q [B, Hq, n, D], k and v
// [B, Hkv, n, D] hold this rank's rows. Steps: seq_to_heads over `ulysses` (KV heads repeated
// first when Hkv is not a multiple of u: Hkv must divide u or u divide Hkv), ring_attention
// over `ring` with layout.gathered(u), heads_to_seq of o and lse. Differentiable; every rank of
// both groups must call it with the same shapes, mask and layout.
ops::AttentionOutput hybrid_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                      double scale, Group& ulysses, Group& ring, const SequenceLayout& layout);

// The steps both share: seq_to_heads over `ulysses` (with the KV-head rule above), attention of
// the gathered rows (layout.gathered(u)) for this rank's heads, heads_to_seq of o and lse. The
// middle step is ring attention over `ring`, or, with ring null (pure Ulysses), local attention:
// ops::attention on the rows put in position order. `op` names the caller in errors.
ops::AttentionOutput ulysses_exchange_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                                const MaskSpec& mask, double scale, Group& ulysses, Group* ring,
                                                const SequenceLayout& layout);

}  // namespace strand::parallel
