// Device-neutral entry point of the fused LayerNorm / RMSNorm over the rows of a contiguous
// [rows, n] buffer: forward (statistics and output) and the fused backward.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

enum class NormOp {
  LayerNorm,  // y = (x - mean) * rstd * w + b, mean and rstd saved per row
  RmsNorm,    // y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps)
  Backward,   // dx, dweight, dbias of either (mean null selects RMSNorm)
};

// Backward, with xhat = (x - mean) * rstd (x * rstd for RMSNorm) and dxhat = g * w:
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))   (no mean(dxhat) for RMSNorm)
//   dweight = sum over rows of g * xhat,   dbias = sum over rows of g
// weight, bias, dx, dweight and dbias may be null (absent or not needed).
struct NormParams {
  Device device;
  DType dtype = DType::F32;
  NormOp op = NormOp::LayerNorm;
  int64_t rows = 0, n = 0;
  const void* x = nullptr;       // [rows, n]
  const void* weight = nullptr;  // [n]
  const void* bias = nullptr;    // [n], LayerNorm forward only
  double eps = 0;                // forward only
  void* y = nullptr;             // [rows, n], forward output
  void* mean = nullptr;          // [rows]: forward writes, backward reads (null: RMSNorm)
  void* rstd = nullptr;          // [rows]: forward writes, backward reads
  const void* g = nullptr;       // [rows, n], backward
  void* dx = nullptr;            // [rows, n]
  void* dweight = nullptr;       // [n]
  void* dbias = nullptr;         // [n]
};

inline void norm_rows(const NormParams& p) { launch("norm_rows", p); }

}  // namespace strand::backend
