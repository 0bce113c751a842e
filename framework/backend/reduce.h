// Device-neutral entry point of the row reductions over a contiguous [rows, n] buffer.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

enum class RowReduce {
  Sum,          // out[r] = scale * sum_j x[r, j]  (the scale multiplies the finished sum)
  Max,          // out[r] = max_j x[r, j], arg[r] = the first j attaining it
  MaxBackward,  // out[r, arg[r]] = x[r] into a zeroed out [rows, n] (x holds one value per row)
};

struct ReduceRowsParams {
  Device device;
  DType dtype = DType::F32;
  RowReduce op = RowReduce::Sum;
  int64_t rows = 0, n = 0;
  const void* x = nullptr;
  void* out = nullptr;
  int32_t* arg = nullptr;  // Max writes it, MaxBackward reads it
  double scale = 1;        // Sum only
};

inline void reduce_rows(const ReduceRowsParams& p) { launch("reduce_rows", p); }

}  // namespace strand::backend
