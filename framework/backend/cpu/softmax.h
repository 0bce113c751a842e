// CPU softmax and log-softmax over the rows of a contiguous [rows, n] buffer, and their backward.
#pragma once
#include <cstdint>

#include "framework/backend/softmax.h"

namespace strand::cpu {

// y[r, :] = softmax(x[r, :]) (or log_softmax when log is set), stable: the row max is
// subtracted before exp. x and y may be the same buffer.
template <class T>
void softmax_rows(int64_t rows, int64_t n, const T* x, T* y, bool log);

// Given the forward output y and the incoming gradient g (both [rows, n]):
//   softmax:     dx = y * (g - sum_j g_j y_j)
//   log_softmax: dx = g - exp(y) * sum_j g_j
// dx may alias g.
template <class T>
void softmax_backward_rows(int64_t rows, int64_t n, const T* y, const T* g, T* dx, bool log);

// The family entry registered with the device seam (backend/softmax.h).
void softmax_rows(const backend::SoftmaxParams& p);

}  // namespace strand::cpu
