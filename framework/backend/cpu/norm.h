// CPU kernels for the fused LayerNorm / RMSNorm over the rows of a contiguous [rows, n] buffer.
#pragma once
#include <cstdint>

#include "framework/backend/norm.h"

namespace strand::cpu {

// One row at a time: mean and rstd = 1/sqrt(var + eps), then y = (x - mean) * rstd * w + b.
// weight and bias may be null (no scale, no shift). mean and rstd receive one value per row.
template <class T>
void layer_norm_forward(int64_t rows, int64_t n, const T* x, const T* weight, const T* bias, double eps, T* y,
                        T* mean, T* rstd);

// rstd = 1/sqrt(mean(x^2) + eps), y = x * rstd * w; weight may be null.
template <class T>
void rms_norm_forward(int64_t rows, int64_t n, const T* x, const T* weight, double eps, T* y, T* rstd);

// Inputs and outputs of the fused backward of both norms. With xhat = (x - mean) * rstd
// (x * rstd for RMSNorm) and dxhat = g * w:
//   dx      = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))   (no mean(dxhat) for RMSNorm)
//   dweight = sum over rows of g * xhat,   dbias = sum over rows of g
template <class T>
struct NormBackwardParams {
  int64_t rows = 0;           // number of normalised rows
  int64_t n = 0;              // row length (channels)
  const T* x = nullptr;       // [rows, n] forward input
  const T* g = nullptr;       // [rows, n] gradient of the output
  const T* weight = nullptr;  // [n], or null for no scale
  const T* mean = nullptr;    // [rows] saved means; null selects RMSNorm (rows not centred)
  const T* rstd = nullptr;    // [rows] saved 1/sqrt(var + eps)
  T* dx = nullptr;            // [rows, n], or null when x needs no gradient
  T* dweight = nullptr;       // [n], or null
  T* dbias = nullptr;         // [n], or null
};

// One pass over the rows computes dx and per-block partial sums of dweight/dbias; the blocks
// are fixed by the row count alone and summed in order, so the result does not depend on the
// thread count (and no thread adds into another's memory).
template <class T>
void norm_backward(const NormBackwardParams<T>& p);

// The family entry registered with the device seam (backend/norm.h).
void norm_rows(const backend::NormParams& p);

}  // namespace strand::cpu
