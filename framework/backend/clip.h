// Device-neutral entry point of the two kernels of global-norm gradient clipping: the sum of
// squares of a gradient and its in-place scaling.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

enum class ClipOp {
  SumSquares,  // *sum = sum of x[i]^2 in double, in fixed blocks added in order (thread-count free)
  Scale,       // x[i] *= scale
};

struct ClipParams {
  Device device;
  DType dtype = DType::F32;
  ClipOp op = ClipOp::SumSquares;
  int64_t n = 0;
  void* x = nullptr;      // contiguous, n elements (only read by SumSquares)
  double scale = 1;       // Scale
  double* sum = nullptr;  // SumSquares result, host memory
};

inline void clip_grad(const ClipParams& p) { launch("clip_grad", p); }

}  // namespace strand::backend
