// Device-neutral entry points of the elementwise kernels: strided unary maps (and scale/shift,
// power), broadcasting binary maps, activation derivatives and the in-place axpy.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"
#include "framework/core/shape.h"

namespace strand::backend {

enum class Unary { Neg, Exp, Log, Sqrt, Tanh, Gelu, Silu, Square, Reciprocal, Abs };
enum class Binary { Add, Sub, Mul, Div, Max, Min };
// Derivatives applied to an incoming gradient: out = g * f'(x).
enum class UnaryGrad { Gelu, Silu };

// What a map does to each element x: f(x), x * alpha + beta, or x ^ alpha.
enum class MapKind { Unary, Affine, Power };

// out[i] = map(x[i]) over shape; out contiguous, x read through x_strides.
struct MapParams {
  Device device;
  DType dtype = DType::F32;  // of out and x
  MapKind kind = MapKind::Unary;
  Unary unary = Unary::Neg;  // kind Unary
  double alpha = 1, beta = 0;
  Shape shape;
  void* out = nullptr;
  const void* x = nullptr;
  Shape x_strides;
};

// out[i] = a[i] (op) b[i] over shape; out contiguous, a and b read through their (broadcast) strides.
struct BinaryParams {
  Device device;
  DType dtype = DType::F32;
  Binary op = Binary::Add;
  Shape shape;
  void* out = nullptr;
  const void* a = nullptr;
  Shape a_strides;
  const void* b = nullptr;
  Shape b_strides;
};

// out[i] = g[i] * f'(x[i]); all three contiguous, n elements.
struct ActivationGradParams {
  Device device;
  DType dtype = DType::F32;
  UnaryGrad f = UnaryGrad::Gelu;
  int64_t n = 0;
  void* out = nullptr;
  const void* g = nullptr;
  const void* x = nullptr;
};

// dst[i] += alpha * src[i]; both contiguous, n elements.
struct AxpyParams {
  Device device;
  DType dtype = DType::F32;
  int64_t n = 0;
  double alpha = 1;
  void* dst = nullptr;
  const void* src = nullptr;
};

inline void elementwise_map(const MapParams& p) { launch("elementwise_map", p); }
inline void elementwise_binary(const BinaryParams& p) { launch("elementwise_binary", p); }
inline void activation_grad(const ActivationGradParams& p) { launch("activation_grad", p); }
inline void axpy(const AxpyParams& p) { launch("axpy", p); }

}  // namespace strand::backend
