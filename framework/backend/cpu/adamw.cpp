// CPU AdamW update: one unit-stride loop, vectorised, OpenMP-parallel above kParallelGrain.
#include "framework/backend/cpu/adamw.h"

#include <cmath>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {

template <class T>
void adamw_update(const backend::AdamWParams& p, T* param, const T* grad, T* m, T* v) {
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

template void adamw_update<float>(const backend::AdamWParams&, float*, const float*, float*, float*);
template void adamw_update<double>(const backend::AdamWParams&, double*, const double*, double*, double*);

void adamw_update(const backend::AdamWParams& p) {
  by_float("adamw_update", p.dtype, [&]<class T>() {
    adamw_update<T>(p, static_cast<T*>(p.param), static_cast<const T*>(p.grad), static_cast<T*>(p.m),
                    static_cast<T*>(p.v));
  });
}

}  // namespace strand::cpu
