// Fused LayerNorm and RMSNorm over the last axis; the forward saves mean/rstd for the backward.
#pragma once
#include "framework/core/tensor.h"

namespace strand::ops {

// (x - mean) * rstd * weight + bias; weight and bias are [C] (bias may be undefined).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// x * rsqrt(mean(x^2) + eps) * weight.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

}  // namespace strand::ops
