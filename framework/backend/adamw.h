// Device-neutral entry point of the fused AdamW update (PyTorch's AdamW, decoupled weight decay).
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

// One AdamW step for n elements:
//   p -= lr * weight_decay * p
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g^2
//   p -= lr / bias_correction1 * m / (sqrt(v) / sqrt(bias_correction2) + eps)
struct AdamWParams {
  Device device;
  DType dtype = DType::F32;       // of param, grad, m and v; arithmetic runs in it
  int64_t n = 0;                  // elements of param, grad, m and v (all contiguous)
  double lr = 0;                  // learning rate of this step
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;        // 0 for parameters that take no decay
  double bias_correction1 = 1;    // 1 - beta1^t for step t (1-based)
  double bias_correction2 = 1;    // 1 - beta2^t
  void* param = nullptr;
  const void* grad = nullptr;
  void* m = nullptr;
  void* v = nullptr;
};

inline void adamw_update(const AdamWParams& p) { launch("adamw_update", p); }

}  // namespace strand::backend
