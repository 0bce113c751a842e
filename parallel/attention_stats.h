// Attention entropy and mean distance of this rank's query rows when the sequence is split over
// sequence-parallel ranks (ring or Ulysses): the keys are gathered (O(N D), never N x N) and
// ops::attention_row_stats runs on each of this rank's segments at its global positions, with the
// lse parallel::attention returned for them.
#pragma once
#include "framework/ops/attention_stats.h"
#include "parallel/attention.h"

namespace strand::parallel {

// q [B, Hq, n, D], k [B, Hkv, n, D], lse [B, Hq, n]: this rank's rows (shard.layout; contiguous
// when unset), lse as parallel::attention(q, k, v, mask, scale, shard) gave it. Returns the
// statistics of this rank's rows, in its row order, equal to the one-rank statistics of the
// gathered sequence at those rows. Every rank of the shard's group calls it together. A shard
// with both a ring and a Ulysses group (hybrid) is refused.
ops::AttentionRowStats attention_row_stats(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask,
                                           double scale, const SequenceShard& shard);

}  // namespace strand::parallel
