// Hybrid sequence parallelism (as in USP): Ulysses all-to-all inside groups of consecutive sp
// ranks, ring attention across those groups, and the inverse all-to-all.
#pragma once
#include <memory>

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

namespace internal {
// hybrid_attention whose graph owns `ring_owner` (the ring of one ulysses_attention makes),
// so that the ring outlives the backward that reads it.
ops::AttentionOutput hybrid_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                      double scale, Group& ulysses, Group& ring, const SequenceLayout& layout,
                                      std::shared_ptr<Group> ring_owner);
}  // namespace internal

}  // namespace strand::parallel
