// parallel::attention: dispatch between local, ring, Ulysses and hybrid sequence-parallel attention.
#include "parallel/attention.h"

#include "framework/core/error.h"
#include "parallel/hybrid.h"
#include "parallel/ring.h"
#include "parallel/ulysses.h"

namespace strand::parallel {

ops::AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                               double scale, const SequenceShard& shard) {
  if (shard.local()) return ops::attention(q, k, v, mask, scale);
  STRAND_CHECK(q.dim() == 4, ShapeError, "parallel::attention: q must be [B, H, n, D], got ", shape_str(q.shape()));
  // Without a layout, sp rank s holds rows [s*n, (s+1)*n): contiguous over all sp ranks, which
  // is also the hybrid split of the contiguous layout (SequenceLayout::hybrid).
  const int sp = shard.size();
  const SequenceLayout layout =
      shard.layout != nullptr ? *shard.layout : SequenceLayout::make(LayoutKind::Contiguous, sp * q.shape()[2], sp);
  if (shard.ulysses_size() == 1) return ring_attention(q, k, v, mask, scale, *shard.ring, layout);
  if (shard.ring_size() == 1) return ulysses_attention(q, k, v, mask, scale, *shard.ulysses, layout);
  return hybrid_attention(q, k, v, mask, scale, *shard.ulysses, *shard.ring, layout);
}

}  // namespace strand::parallel
