// Ring attention: exact attention over a sequence split contiguously across the ranks of a
// sequence-parallel group, K/V blocks passed around the ring and partial results merged by lse.
#pragma once
#include "framework/ops/attention.h"
#include "parallel/comm/group.h"

namespace strand::parallel {

// Contiguous layout: rank r of P = sp.size() holds query and key/value rows [r*n, (r+1)*n) of a
// global sequence of P*n positions, every rank the same n. q [B, Hq, n, D], k and v [B, Hkv, n, D]
// as in ops::attention; `mask` describes the whole sequence in global positions (its q_offset and
// k_offset are ignored: each block sets them from the ranks' positions; seq_len 0 means P*n).
// Returns this rank's rows of the global o [B, Hq, n, D] and lse [B, Hq, n] (float32 for float32
// and bfloat16 inputs, float64 for float64), equal to ops::attention on the gathered sequence.
// Differentiable in q, k, v through o and lse; the backward is one more ring pass, so `sp` must
// outlive the graph and every rank must run the backward. Blocks the mask leaves wholly empty
// (causal: keys of later ranks) are not computed. Every rank of sp must call it with the same shapes.
ops::AttentionOutput ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                    double scale, Group& sp);

}  // namespace strand::parallel
