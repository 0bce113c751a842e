// CPU kernels of Performer linear attention (FAVOR+ positive random features), forward and
// backward, non-causal and causal, behind backend::LinearAttentionParams (framework/backend/
// attention.h). Plain pointers and sizes; no Tensor here.
#pragma once
#include <cstdint>

#include "framework/backend/attention.h"

namespace strand::cpu {

using backend::LinearAttentionParams;

// The registered entry points (register.cpp): each picks T from p.dtype.
void linear_attention_forward_kernel(const backend::LinearAttentionForwardParams& p);
void linear_attention_backward_kernel(const backend::LinearAttentionBackwardParams& p);

// out and den from q, k, v and the projection w (den is kept for the backward).
template <class T>
void linear_attention_forward(const LinearAttentionParams& p, const T* q, const T* k, const T* v, const T* w,
                              T* out, T* den);

// dq, dk, dv (overwritten) from the upstream gradient dout and the forward's out and den.
template <class T>
void linear_attention_backward(const LinearAttentionParams& p, const T* q, const T* k, const T* v, const T* w,
                               const T* out, const T* den, const T* dout, T* dq, T* dk, T* dv);

}  // namespace strand::cpu
