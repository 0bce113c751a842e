// parallel::attention: dispatch between local and sequence-parallel (ring) attention.
#include "parallel/attention.h"

#include "parallel/ring.h"

namespace strand::parallel {

ops::AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                               double scale, const SequenceContext& ctx) {
  if (ctx.local()) return ops::attention(q, k, v, mask, scale);
  return ring_attention(q, k, v, mask, scale, *ctx.sp);
}

}  // namespace strand::parallel
