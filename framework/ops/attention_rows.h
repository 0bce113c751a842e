// The scores of one query row against one block of keys, recomputed in float64 under a MaskPlan:
// the inner step shared by the key-block attention statistics (attention_stats.cpp) and the
// attention transfer loss (attention_transfer.cpp), neither of which holds an N x N buffer.
#pragma once
#include <cstdint>
#include <limits>

#include "framework/backend/attention_mask.h"

namespace strand::ops::detail {

// scores[j - k0] = scale * q_i . k_j for the local key rows j in [k0, k1) that the query at
// global position qpos of batch row b sees, -inf for the keys the mask hides. q_i is D values,
// keys the head's [Nk, D] rows. Returns false, leaving scores untouched, when the mask hides the
// whole block (the caller skips it).
inline bool row_block_scores(const MaskPlan& plan, int64_t b, int64_t qpos, const double* q_i, const double* keys,
                             int64_t D, double scale, int64_t k0, int64_t k1, double* scores) {
  const TileClass tile = plan.classify(b, qpos, qpos + 1, plan.k_offset() + k0, plan.k_offset() + k1);
  if (tile == TileClass::Empty) return false;
  for (int64_t j = k0; j < k1; ++j) {
    double& sc = scores[j - k0];
    sc = -std::numeric_limits<double>::infinity();
    if (tile != TileClass::Full && !plan.attends(b, qpos, plan.k_offset() + j)) continue;
    const double* k_j = keys + j * D;
    double dot = 0.0;
    for (int64_t x = 0; x < D; ++x) dot += q_i[x] * k_j[x];
    sc = scale * dot;
  }
  return true;
}

}  // namespace strand::ops::detail
