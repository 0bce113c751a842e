// CPU optimizer kernels: unit-stride loops, vectorised, OpenMP-parallel above kParallelGrain.
#include "framework/backend/cpu/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "framework/backend/cpu/loops.h"

namespace strand::cpu {

template <class T>
void adamw_update(const AdamWParams& p, T* param, const T* grad, T* m, T* v) {
  // Scalars folded once; the loop body is the PyTorch formula with the divisions hoisted.
  const T decay = static_cast<T>(1.0 - p.lr * p.weight_decay);
  const T b1 = static_cast<T>(p.beta1), one_minus_b1 = static_cast<T>(1.0 - p.beta1);
  const T b2 = static_cast<T>(p.beta2), one_minus_b2 = static_cast<T>(1.0 - p.beta2);
  const T step_size = static_cast<T>(p.lr / p.bias_correction1);
  const T inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(p.bias_correction2));
  const T eps = static_cast<T>(p.eps);
  const int64_t n = p.n;
  #pragma omp parallel for simd if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i];
    const T mi = b1 * m[i] + one_minus_b1 * g;
    const T vi = b2 * v[i] + one_minus_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

template <class T>
double sum_squares(int64_t n, const T* x) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  #pragma omp parallel for if (n > kParallelGrain)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    double acc = 0;
    #pragma omp simd reduction(+ : acc)
    for (int64_t i = lo; i < hi; ++i) {
      const double xi = static_cast<double>(x[i]);
      acc += xi * xi;
    }
    partial[static_cast<size_t>(b)] = acc;
  }
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

template <class T>
void scale_inplace(int64_t n, T* x, double scale) {
  const T s = static_cast<T>(scale);
  #pragma omp parallel for simd if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

template void adamw_update<float>(const AdamWParams&, float*, const float*, float*, float*);
template void adamw_update<double>(const AdamWParams&, double*, const double*, double*, double*);
template double sum_squares<float>(int64_t, const float*);
template double sum_squares<double>(int64_t, const double*);
template void scale_inplace<float>(int64_t, float*, double);
template void scale_inplace<double>(int64_t, double*, double);

}  // namespace strand::cpu
