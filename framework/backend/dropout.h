// Device-neutral entry point of dropout on the counter-based Philox stream: the keep decision of
// element i depends only on (seed, its counter), never on the thread or device that computes it.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

// Philox stream that dropout draws from, apart from the stream the initialisers use (0), so a
// seed shared with initialisation never gives correlated numbers. Every device draws the same.
inline constexpr uint64_t kDropoutStream = 0x64726f70ull;  // "drop"

// y[i] = x[i] / (1 - p) where the uniform u of counter c(i) satisfies u >= p, else 0; x and y
// contiguous with n elements (y may equal x), 0 < p < 1. c(i) = offset + i, or, with row
// offsets, row_offsets[r] + j for element j of row r (rows of row_len elements). u is one
// 32-bit word of philox4x32(seed, kDropoutStream, c / 4), lane c % 4, divided by 2^32.
// The backward is the same map applied to the gradient.
struct DropoutParams {
  Device device;
  DType dtype = DType::F32;
  const void* x = nullptr;
  void* y = nullptr;
  int64_t n = 0;
  double p = 0;
  uint64_t seed = 0, offset = 0;
  const uint64_t* row_offsets = nullptr;  // null: one offset for the whole buffer; else host memory
  int64_t rows = 0, row_len = 0;          // with row_offsets
};

inline void dropout(const DropoutParams& p) { launch("dropout", p); }

}  // namespace strand::backend
