// The CPU attention kernels (tiled forward and backward, merge, row adds) behind the device-neutral
// parameter structs of framework/backend/attention.h; register.cpp hands the entry points to the
// registry. T = float or double.
#pragma once
#include <cstdint>

#include "framework/backend/attention.h"

namespace strand::cpu {

using backend::AttentionParams;

// Forward: o and lse from q, k, v.
template <class T> void attention_forward(const AttentionParams& p);
// Backward: dq, dk, dv from q, k, v, o, lse, d_o (and d_lse). Deterministic for a fixed thread count.
template <class T> void attention_backward(const AttentionParams& p);

// The registered entry points: each picks T from p.dtype.
void attention_forward_kernel(const backend::AttentionForwardParams& p);
void attention_backward_kernel(const backend::AttentionBackwardParams& p);
void attention_merge_forward_kernel(const backend::AttentionMergeParams& p);
void attention_merge_backward_kernel(const backend::AttentionMergeBackwardParams& p);
void attention_add_rows_kernel(const backend::AttentionAddRowsParams& p);

}  // namespace strand::cpu
