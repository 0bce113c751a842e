// CPU kernels of global-norm gradient clipping on the parameters of backend/clip.h: the sum of
// squares of a gradient and its in-place scaling. Plain pointers and sizes; no Tensor here.
#pragma once
#include <cstdint>

#include "framework/backend/clip.h"

namespace strand::cpu {

// Sum of x[i]^2 in double. The sum is split into fixed-size blocks whose partial sums are
// added in block order, so the result does not depend on the number of threads.
template <class T>
double sum_squares(int64_t n, const T* x);

// x[i] *= scale.
template <class T>
void scale_inplace(int64_t n, T* x, double scale);

// The family entry registered with the device seam (backend/clip.h).
void clip_grad(const backend::ClipParams& p);

}  // namespace strand::cpu
