// CPU kernels of the materialised-scores attention used as a test oracle: every score row is
// computed in full, in double, with no tiling. Plain pointers; no Tensor here.
#pragma once
#include <cstdint>

#include "framework/backend/attention.h"

namespace strand::cpu {

using AttentionRefParams = backend::AttentionReferenceParams;

// The registered entry points (register.cpp): each picks T from p.dtype.
void attention_reference_forward_kernel(const backend::AttentionReferenceForwardParams& p);
void attention_reference_backward_kernel(const backend::AttentionReferenceBackwardParams& p);

// q, o [B, Hq, Nq, D], k, v [B, Hkv, Nk, D], lse [B, Hq, Nq], all contiguous. A row with no key
// to attend gets o = 0 and lse = -inf.
template <class T>
void attention_reference_forward(const AttentionRefParams& p, const T* q, const T* k, const T* v, T* o, T* lse);

// Gradients of q, k, v given dout [B, Hq, Nq, D] (of o) and dlse [B, Hq, Nq] (of lse), with o and
// lse from the forward. dq, dk, dv are overwritten. Rows with lse = -inf contribute nothing.
// dq is computed per query row and dk, dv per key row (summing over the query heads that share
// the kv head), so no two threads write one value and results do not depend on thread count.
template <class T>
void attention_reference_backward(const AttentionRefParams& p, const T* q, const T* k, const T* v, const T* o,
                                  const T* lse, const T* dout, const T* dlse, T* dq, T* dk, T* dv);

}  // namespace strand::cpu
