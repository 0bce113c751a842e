// Device-neutral entry point of the rotary position embedding (GPT-NeoX / LLaMA half rotation).
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

// y = R(pos) x on every head vector of x [B, H, N, D] (any strides), y contiguous [B, H, N, D].
// With half = D / 2 and theta_i = pos * base^(-2i / D), for i < half:
//   y[i]        = x[i] cos theta_i - x[i + half] sin theta_i
//   y[i + half] = x[i + half] cos theta_i + x[i] sin theta_i
// inverse = true applies R(pos)^T = R(-pos), the backward of the forward map. Angles and their
// cos/sin are computed in double, then rounded to the dtype.
struct RopeParams {
  Device device;
  DType dtype = DType::F32;      // float32 or float64
  const void* x = nullptr;       // [B, H, N, D] input, element strides below
  void* y = nullptr;             // [B, H, N, D] contiguous output (must not alias x)
  int64_t batch = 0, heads = 0, seq = 0, head_dim = 0;  // B, H, N, D (D even)
  int64_t x_batch_stride = 0, x_head_stride = 0, x_row_stride = 0, x_dim_stride = 1;
  const int32_t* positions = nullptr;  // position of row n of batch b: positions[b * pos_batch_stride + n * pos_row_stride]
  int64_t pos_batch_stride = 0;        // 0: one position list shared by every batch row
  int64_t pos_row_stride = 1;
  double base = 10000.0;               // > 0
  bool inverse = false;
};

inline void rope(const RopeParams& p) { launch("rope", p); }

}  // namespace strand::backend
