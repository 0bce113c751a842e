// parallel::attention: dispatch between local, ring, Ulysses and hybrid sequence-parallel attention.
#include "parallel/attention.h"

#include "framework/core/error.h"
#include "parallel/hybrid.h"
#include "parallel/ring.h"
#include "parallel/ulysses.h"

namespace strand::parallel {

ops::AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                               double scale, const SequenceContext& ctx) {
  if (ctx.local()) return ops::attention(q, k, v, mask, scale);
  STRAND_CHECK(q.dim() == 4, ShapeError, "parallel::attention: q must be [B, H, n, D], got ", shape_str(q.shape()));
  // Without a layout, sp rank s holds rows [s*n, (s+1)*n): contiguous over all sp ranks, which
  // is also the hybrid split of the contiguous layout (SequenceLayout::hybrid).
  const int sp = ctx.size();
  const SequenceLayout layout =
      ctx.layout != nullptr ? *ctx.layout : SequenceLayout::make(LayoutKind::Contiguous, sp * q.shape()[2], sp);
  if (ctx.ulysses_size() == 1) return ring_attention(q, k, v, mask, scale, *ctx.ring, layout);
  if (ctx.ring_size() == 1) return ulysses_attention(q, k, v, mask, scale, *ctx.ulysses, layout);
  return hybrid_attention(q, k, v, mask, scale, *ctx.ulysses, *ctx.ring, layout);
}

}  // namespace strand::parallel
