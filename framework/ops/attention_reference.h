// Plain attention with the N x N score matrix materialised: the test oracle for the tiled
// kernels. Hand-written backward; rows whose keys are all masked give o = 0, lse = -inf and
// zero gradients.
#pragma once
#include "framework/core/tensor.h"
#include "framework/ops/attention_contract.h"

namespace strand::ops {

// q [B, Hq, Nq, D], k and v [B, Hkv, Nk, D] with Hq a multiple of Hkv (query head h reads key
// head h / (Hq / Hkv)). mask: int32 broadcastable to [B, Hq, Nq, Nk], nonzero = attend;
// undefined = attend everywhere. scale defaults (<= 0) to 1/sqrt(D).
AttentionOutput attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask = Tensor(),
                                    double scale = 0.0);

}  // namespace strand::ops
