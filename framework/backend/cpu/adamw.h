// CPU optimizer kernels: the fused AdamW update, and the sum of squares and in-place scaling
// that global-norm gradient clipping needs. Plain pointers and sizes; no Tensor here.
#pragma once
#include <cstdint>

namespace strand::cpu {

// One AdamW step for n elements (PyTorch's AdamW, decoupled weight decay):
//   p -= lr * weight_decay * p
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g^2
//   p -= lr / bias_correction1 * m / (sqrt(v) / sqrt(bias_correction2) + eps)
struct AdamWParams {
  int64_t n = 0;                  // elements of param, grad, m and v (all contiguous)
  double lr = 0;                  // learning rate of this step
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;        // 0 for parameters that take no decay
  double bias_correction1 = 1;    // 1 - beta1^t for step t (1-based)
  double bias_correction2 = 1;    // 1 - beta2^t
};

// T is the parameter, gradient and moment type (float or double); arithmetic runs in T.
template <class T>
void adamw_update(const AdamWParams& p, T* param, const T* grad, T* m, T* v);

// Sum of x[i]^2 in double. The sum is split into fixed-size blocks whose partial sums are
// added in block order, so the result does not depend on the number of threads.
template <class T>
double sum_squares(int64_t n, const T* x);

// x[i] *= scale.
template <class T>
void scale_inplace(int64_t n, T* x, double scale);

}  // namespace strand::cpu
