// The entropy of each query row's attention distribution, from the attention kernel's own
// statistics (lse) and the scores recomputed one key block at a time: no N x N buffer. Head
// pruning reports it per head; an analysis of attention patterns can reuse it.
#pragma once
#include <cstdint>

#include "framework/core/tensor.h"
#include "framework/ops/attention_contract.h"

namespace strand::ops {

// q [B, Hq, Nq, D], k [B, Hkv, Nk, D] (query head h reads key head h / (Hq / Hkv)), lse
// [B, Hq, Nq] as ops::attention returned it for the same q, k, mask and scale. Returns, in
// lse's dtype (float32 or float64), H[b, h, i] = -sum_j p_ij log p_ij in nats, p_ij =
// exp(s_ij - lse_i) over the keys the mask lets query i see, computed as lse_i - sum_j p_ij s_ij
// over key blocks of `block` keys. A row that sees no key (lse = -inf) has entropy 0. No
// gradient; memory O(block) per row beyond the inputs. scale <= 0 means 1/sqrt(D).
Tensor attention_entropy(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask = {},
                         double scale = 0.0, int64_t block = 64);

}  // namespace strand::ops
