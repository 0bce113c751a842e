// Attention statistics of this rank's query rows when the sequence is split over
// sequence-parallel ranks (ring, Ulysses or hybrid): the keys are gathered (O(N D), never N x N)
// and the one-rank computation runs on each of this rank's segments at its global positions. The entropy
// and mean distance (ops::attention_row_stats, with the lse parallel::attention returned), and
// MiniLM's attention transfer loss (ops::attention_transfer_loss) with its gradient.
#pragma once
#include "framework/ops/attention_stats.h"
#include "framework/ops/attention_transfer.h"
#include "parallel/attention.h"

namespace strand::parallel {

// q [B, Hq, n, D], k [B, Hkv, n, D], lse [B, Hq, n]: this rank's rows (shard.layout; contiguous
// when unset), lse as parallel::attention(q, k, v, mask, scale, shard) gave it. Returns the
// statistics of this rank's rows, in its row order, equal to the one-rank statistics of the
// gathered sequence at those rows. Every rank of the shard's groups calls it together; under
// hybrid (ring and Ulysses groups) the rows are the sp-level layout's and the keys come from all
// ring x Ulysses ranks.
ops::AttentionRowStats attention_row_stats(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask,
                                           double scale, const SequenceShard& shard);

// The sum over this rank's query rows (b, h, i) of KL(A_teacher || A_student) at the same layer of
// two models run on the same shard: q_s [B, H_s, n, D_s], k_s [B, Hkv_s, n, D_s], q_t, k_t the
// teacher's (no gradient); over (b, i) of the head-averaged KL when H_s != H_t. Summed over every
// rank it is the one-rank Reduction::Sum of the gathered sequence; the gradient to this rank's q_s
// and k_s is the rows of the one-rank gradient (its backward sums each rank's share of dk over
// every sp rank). `sample` draws its rows over the whole sequence's global positions, the same on
// every rank, and weighs the sum by N / rows, as the one-rank op does. Every rank of the shard's
// groups (under hybrid both) calls the forward and the backward together.
Tensor attention_transfer_loss(const Tensor& q_s, const Tensor& k_s, const Tensor& q_t, const Tensor& k_t,
                               const MaskSpec& mask, const SequenceShard& shard, double scale_s = 0.0,
                               double scale_t = 0.0, const ops::RowSample& sample = {});

}  // namespace strand::parallel
