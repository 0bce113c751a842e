// Device-neutral entry point of softmax / log-softmax over the rows of a contiguous [rows, n]
// buffer, and of their backward.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

// Forward: out = softmax(x) (log_softmax when log), x and out may be the same buffer.
// Backward: x is the forward output y, g the incoming gradient, out = dx (may alias g):
//   softmax: dx = y * (g - sum_j g_j y_j),  log_softmax: dx = g - exp(y) * sum_j g_j
struct SoftmaxParams {
  Device device;
  DType dtype = DType::F32;
  bool backward = false;
  bool log = false;
  int64_t rows = 0, n = 0;
  const void* x = nullptr;
  const void* g = nullptr;  // backward only
  void* out = nullptr;
};

inline void softmax_rows(const SoftmaxParams& p) { launch("softmax_rows", p); }

}  // namespace strand::backend
