// What each query row's attention distribution looks like, from the attention kernel's own
// statistics (lse) and the scores recomputed one key block at a time, with no N x N buffer:
// its entropy and its mean distance to the keys it attends to (attention analysis), and, for a
// short input, the probabilities themselves (the head-view pictures).
#pragma once
#include <cstdint>
#include <vector>

#include "framework/core/tensor.h"
#include "framework/ops/attention_contract.h"

namespace strand::ops {

struct AttentionRowStats {
  // [B, Hq, Nq] row-major; a row that sees no key (lse = -inf) has 0 for both.
  std::vector<double> entropy;   // -sum_j p_ij log p_ij, in nats
  std::vector<double> distance;  // sum_j p_ij |pos_i - pos_j|, in token positions (global, offsets applied)
};

// q [B, Hq, Nq, D], k [B, Hkv, Nk, D] (query head h reads key head h / (Hq / Hkv)), lse
// [B, Hq, Nq] as ops::attention returned it for the same q, k, mask and scale (scale <= 0:
// 1/sqrt(D)). p_ij = exp(s_ij - lse_i) over the keys the mask lets query i see; the entropy is
// lse_i - sum_j p_ij s_ij. Computed in float64 over key blocks of `block` keys, every
// `row_stride`-th query row only (the others are left 0: a sample at long N). `probabilities`,
// when given, receives p as [B, Hq, Nq, Nk] (masked entries 0): only for short inputs.
// No gradient.
AttentionRowStats attention_row_stats(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask = {},
                                      double scale = 0.0, int64_t row_stride = 1,
                                      std::vector<double>* probabilities = nullptr, int64_t block = 64);

// The entropies alone, as a [B, Hq, Nq] tensor of lse's dtype (head pruning's report).
Tensor attention_entropy(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask = {},
                         double scale = 0.0, int64_t block = 64);

}  // namespace strand::ops
