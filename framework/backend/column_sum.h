// Device-neutral entry point of the output-gradient pass of a mixed-precision linear layer
// (ops/linear.cpp): the column sums of a [rows, n] matrix (the bias gradient) and its copy in
// the compute dtype (what both backward GEMMs read), from one read of the matrix.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

struct ColumnSumCastParams {
  Device device;
  DType dtype = DType::F32;      // of x and sum: float32 or float64
  DType out_dtype = DType::F32;  // of out: bfloat16, float16 or dtype
  int64_t rows = 0, n = 0;
  const void* x = nullptr;  // contiguous [rows, n]
  void* out = nullptr;      // contiguous [rows, n] in out_dtype (x rounded), or null
  void* sum = nullptr;      // [n] in dtype: sum[j] = sum over i of x[i, j], in row order in float64
                            // and rounded once (cpu), or null
};

inline void column_sum_cast(const ColumnSumCastParams& p) { launch("column_sum_cast", p); }

}  // namespace strand::backend
