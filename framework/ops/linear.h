// The mixed-precision linear layer as one op: x @ w + bias with both operands rounded to the
// compute dtype, and a backward that writes the master-dtype gradients straight from the GEMMs.
#pragma once
#include "framework/core/tensor.h"

namespace strand::ops {

// y [..., N] = round(x) [..., K] @ round(w) [K, N] + bias [N], in w's dtype (float32 or
// float64), where round() is the copy in `compute` (bfloat16, float16, or w's dtype for no
// rounding). x is w's dtype or already `compute`; bias is w's dtype or undefined. The product
// sums in float32 (oneDNN's bf16 dot products where the CPU has them) with the bias added in
// the GEMM. Backward: the output gradient is rounded to `compute` once, in the same pass that
// sums its columns into the bias gradient, and both products run in `compute`, writing dx in
// x's dtype and dw in w's dtype directly (no rounded gradient widened again). w may be a
// transposed view (the tied LM head): it is rounded in its storage order and its gradient is
// produced in that order too. CPU only (backend/column_sum.h, GemmParams::bias).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, DType compute);

}  // namespace strand::ops
