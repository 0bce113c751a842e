// Device-neutral entry point of the matrix product: one GEMM, or a batch of them.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"
#include "framework/core/shape.h"

namespace strand::backend {

// One matrix operand as BLAS reads it: element (i, j) of op(X) sits at data[i*ld + j] when
// trans is false, and at data[j*ld + i] when trans is true (a transposed view costs no copy).
struct GemmOperand {
  const void* data = nullptr;
  int64_t ld = 1;  // leading dimension of the stored matrix, >= max(1, its column count)
  bool trans = false;
};

// C[m, n] = op(A)[m, k] @ op(B)[k, n], for every entry of an optional batch.
struct GemmParams {
  Device device;
  DType dtype = DType::F32;  // of A, B and C
  int64_t m = 0, n = 0, k = 0;
  GemmOperand a, b;
  void* c = nullptr;  // row-major, written with beta = 0 (never read, so it needs no fill)
  int64_t ldc = 1;    // >= max(1, n)
  Shape batch;                  // batch axes; empty: a single product
  Shape a_batch_strides;        // per batch axis, in elements; 0 where the operand is shared
  Shape b_batch_strides;
  Shape c_batch_strides;        // ignored when sum_over_batch
  bool sum_over_batch = false;  // C = sum over the batch of A_i @ B_i (one C, summed in order)
};

inline void gemm(const GemmParams& p) { launch("gemm", p); }

}  // namespace strand::backend
