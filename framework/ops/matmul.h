// Matrix products through OpenBLAS (cblas_sgemm/dgemm), with hand-written backward.
#pragma once
#include "framework/core/tensor.h"

namespace strand::ops {

// a [..., M, K] @ b [K, N] -> [..., M, N]   (a shared right-hand matrix, as in Linear), or
// a [..., M, K] @ b [..., K, N] -> [..., M, N] (batched; batch axes must be equal).
// Transposed views are passed to BLAS as transposes, not copied.
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace strand::ops
