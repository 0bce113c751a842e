// Device-neutral entry point of the matrix product: one GEMM, or a batch of them.
#pragma once
#include <cstdint>
#include <optional>

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
//
// Types: A and B are `dtype`; C is `c_dtype`, or `dtype` when c_dtype is unset. The CPU backend
// takes float32 and float64 (C of the same type), and bfloat16 or float16 A and B with a float32
// C (sums in float32: mixed precision's matmul, set c_dtype = DType::F32) or a C of their own
// type (summed in float32, rounded once when written).
struct GemmParams {
  Device device;
  DType dtype = DType::F32;        // of A and B (and of C when c_dtype is unset)
  std::optional<DType> c_dtype;    // of C when it differs from A and B's
  int64_t m = 0, n = 0, k = 0;
  GemmOperand a, b;
  void* c = nullptr;  // row-major, written with beta = 0 (never read, so it needs no fill)
  int64_t ldc = 1;    // >= max(1, n)
  Shape batch;                  // batch axes; empty: a single product
  Shape a_batch_strides;        // per batch axis, in elements; 0 where the operand is shared
  Shape b_batch_strides;
  Shape c_batch_strides;        // ignored when sum_over_batch
  bool sum_over_batch = false;  // C = sum over the batch of A_i @ B_i (one C, summed in order)
  bool allow_tf32 = false;      // float32 on CUDA may round inputs to tf32 (off: full float32); the CPU ignores it
  // Optional: n values of C's dtype added to every row of every C (a float32 or float64 C, not
  // with sum_over_batch), fused into the product where the library can. The CPU backend
  // implements it (CUDA refuses it); ops pass it for CPU tensors only (ops/linear.cpp).
  const void* bias = nullptr;
};

inline void gemm(const GemmParams& p) { launch("gemm", p); }

}  // namespace strand::backend
