// parallel::attention: dispatch between local and (later) sequence-parallel attention.
#include "parallel/attention.h"

#include "framework/core/error.h"

namespace strand::parallel {

ops::AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                               double scale, const SequenceContext& ctx) {
  if (ctx.local()) return ops::attention(q, k, v, mask, scale);
  throw ValueError(detail::concat("parallel attention over ", ctx.sp->size(),
                                  " ranks: ring/Ulysses attention is not built yet (q ", shape_str(q.shape()),
                                  ")"));
}

}  // namespace strand::parallel
