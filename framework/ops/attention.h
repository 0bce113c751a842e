// Fused attention (tiled, online softmax, memory O(N * D)) with every mask pattern of MaskSpec, its
// hand-written backward through both outputs, the exact merge of partial results, and the dense
// mask a MaskSpec stands for (for tests against attention_reference). Contract: docs/attention.md.
#pragma once
#include <cstdint>

#include "framework/core/tensor.h"
#include "framework/ops/attention_contract.h"

namespace strand::ops {

// q [B, Hq, Nq, D], k and v [B, Hkv, Nk, D], Hq a multiple of Hkv (query head h reads kv head
// h / (Hq / Hkv)); float32, float64, or bfloat16 (computed in float32: o comes back in bfloat16,
// lse in float32). Returns o [B, Hq, Nq, D] and lse [B, Hq, Nq] (float64 for float64 inputs, else
// float32); a row whose keys are all masked gives o = 0, lse = -inf and zero gradients.
// scale <= 0 means 1/sqrt(D). Differentiable in q, k, v through both o and lse. Views with unit
// stride along D (a [B, N, H, D] tensor transposed to [B, H, N, D]) are read in place.
AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask = {},
                          double scale = 0.0);

// Exact merge of two partial results over disjoint key sets of the same queries:
// lse = log(e^lse1 + e^lse2), o = e^(lse1 - lse) o1 + e^(lse2 - lse) o2. Rows where both lse are
// -inf give o = 0, lse = -inf (never NaN). o [..., D], lse [...]; float32 or float64.
// Differentiable in all four inputs.
AttentionOutput merge_attention(const Tensor& o1, const Tensor& lse1, const Tensor& o2, const Tensor& lse2);

// The int32 mask [B, 1, Nq, Nk] (1 = attend) that `mask` stands for over queries [0, Nq) and keys
// [0, Nk) of the call (offsets applied): the input attention_reference takes.
Tensor dense_mask(const MaskSpec& mask, int64_t batch, int64_t q_len, int64_t k_len);

// Number of attending (query, key) pairs over all batch rows, per head (for useful FLOP counts).
int64_t attended_pairs(const MaskSpec& mask, int64_t batch, int64_t q_len, int64_t k_len);

}  // namespace strand::ops
