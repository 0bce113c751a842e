// CPU elementwise kernels. Each row loop is written so that GCC vectorises the unit-stride case.
#include "framework/backend/cpu/elementwise.h"

#include <cmath>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"
#include "framework/backend/cpu/vec_math.h"

namespace strand::cpu {
namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluCubic = 0.044715;

template <class T>
inline T gelu(T x) {
  const T u = static_cast<T>(kSqrt2OverPi) * (x + static_cast<T>(kGeluCubic) * x * x * x);
  return static_cast<T>(0.5) * x * (static_cast<T>(1) + vtanh(u));
}

template <class T>
inline T gelu_derivative(T x) {
  const T u = static_cast<T>(kSqrt2OverPi) * (x + static_cast<T>(kGeluCubic) * x * x * x);
  const T t = vtanh(u);
  const T du = static_cast<T>(kSqrt2OverPi) * (static_cast<T>(1) + static_cast<T>(3 * kGeluCubic) * x * x);
  return static_cast<T>(0.5) * (static_cast<T>(1) + t) + static_cast<T>(0.5) * x * (static_cast<T>(1) - t * t) * du;
}

template <class T>
inline T sigmoid(T x) { return static_cast<T>(1) / (static_cast<T>(1) + vexp(-x)); }

template <class T, class F>
void map_unary(const Shape& shape, T* out, const T* x, const Shape& xs, F f) {
  for_each_row<1>(shape, out, std::array<const T*, 1>{x}, std::array<const int64_t*, 1>{xs.data()},
                  [&](T* o, const std::array<const T*, 1>& p, const std::array<int64_t, 1>& s, int64_t n) {
                    const T* a = p[0];
                    if (s[0] == 1) {
                      #pragma omp simd
                      for (int64_t j = 0; j < n; ++j) o[j] = f(a[j]);
                    } else {
                      for (int64_t j = 0; j < n; ++j) o[j] = f(a[j * s[0]]);
                    }
                  });
}

template <class T, class F>
void map_binary(const Shape& shape, T* out, const T* a, const Shape& as, const T* b, const Shape& bs, F f) {
  for_each_row<2>(shape, out, std::array<const T*, 2>{a, b}, std::array<const int64_t*, 2>{as.data(), bs.data()},
                  [&](T* o, const std::array<const T*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
                    const T* x = p[0];
                    const T* y = p[1];
                    if (s[0] == 1 && s[1] == 1) {
                      #pragma omp simd
                      for (int64_t j = 0; j < n; ++j) o[j] = f(x[j], y[j]);
                    } else if (s[0] == 1 && s[1] == 0) {
                      const T yv = y[0];
                      #pragma omp simd
                      for (int64_t j = 0; j < n; ++j) o[j] = f(x[j], yv);
                    } else {
                      for (int64_t j = 0; j < n; ++j) o[j] = f(x[j * s[0]], y[j * s[1]]);
                    }
                  });
}

}  // namespace

template <class T>
void unary(Unary f, const Shape& shape, T* out, const T* x, const Shape& xs) {
  switch (f) {
    case Unary::Neg: return map_unary(shape, out, x, xs, [](T v) { return -v; });
    case Unary::Exp: return map_unary(shape, out, x, xs, [](T v) { return vexp(v); });
    case Unary::Log: return map_unary(shape, out, x, xs, [](T v) { return std::log(v); });
    case Unary::Sqrt: return map_unary(shape, out, x, xs, [](T v) { return std::sqrt(v); });
    case Unary::Tanh: return map_unary(shape, out, x, xs, [](T v) { return vtanh(v); });
    case Unary::Gelu: return map_unary(shape, out, x, xs, [](T v) { return gelu(v); });
    case Unary::Silu: return map_unary(shape, out, x, xs, [](T v) { return v * sigmoid(v); });
    case Unary::Square: return map_unary(shape, out, x, xs, [](T v) { return v * v; });
    case Unary::Reciprocal: return map_unary(shape, out, x, xs, [](T v) { return static_cast<T>(1) / v; });
    case Unary::Abs: return map_unary(shape, out, x, xs, [](T v) { return std::abs(v); });
  }
}

template <class T>
void binary(Binary op, const Shape& shape, T* out, const T* a, const Shape& as, const T* b, const Shape& bs) {
  switch (op) {
    case Binary::Add: return map_binary(shape, out, a, as, b, bs, [](T x, T y) { return x + y; });
    case Binary::Sub: return map_binary(shape, out, a, as, b, bs, [](T x, T y) { return x - y; });
    case Binary::Mul: return map_binary(shape, out, a, as, b, bs, [](T x, T y) { return x * y; });
    case Binary::Div: return map_binary(shape, out, a, as, b, bs, [](T x, T y) { return x / y; });
    case Binary::Max: return map_binary(shape, out, a, as, b, bs, [](T x, T y) { return x > y ? x : y; });
    case Binary::Min: return map_binary(shape, out, a, as, b, bs, [](T x, T y) { return x < y ? x : y; });
  }
}

template <class T>
void affine(const Shape& shape, T* out, const T* x, const Shape& xs, double alpha, double beta) {
  const T a = static_cast<T>(alpha), b = static_cast<T>(beta);
  map_unary(shape, out, x, xs, [a, b](T v) { return v * a + b; });
}

template <class T>
void power(const Shape& shape, T* out, const T* x, const Shape& xs, double p) {
  const T e = static_cast<T>(p);
  map_unary(shape, out, x, xs, [e](T v) { return std::pow(v, e); });
}

template <class T>
void unary_grad(UnaryGrad f, int64_t n, T* out, const T* g, const T* x) {
  switch (f) {
    case UnaryGrad::Gelu:
      #pragma omp parallel for simd if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) out[i] = g[i] * gelu_derivative(x[i]);
      return;
    case UnaryGrad::Silu:
      #pragma omp parallel for simd if (n > kParallelGrain)
      for (int64_t i = 0; i < n; ++i) {
        const T s = sigmoid(x[i]);
        out[i] = g[i] * s * (static_cast<T>(1) + x[i] * (static_cast<T>(1) - s));
      }
      return;
  }
}

#define STRAND_INSTANTIATE(T)                                                                    \
  template void unary<T>(Unary, const Shape&, T*, const T*, const Shape&);                      \
  template void binary<T>(Binary, const Shape&, T*, const T*, const Shape&, const T*, const Shape&); \
  template void affine<T>(const Shape&, T*, const T*, const Shape&, double, double);             \
  template void power<T>(const Shape&, T*, const T*, const Shape&, double);                      \
  template void unary_grad<T>(UnaryGrad, int64_t, T*, const T*, const T*);
STRAND_INSTANTIATE(float)
STRAND_INSTANTIATE(double)
#undef STRAND_INSTANTIATE

void elementwise_map(const backend::MapParams& p) {
  by_float("elementwise_map", p.dtype, [&]<class T>() {
    T* out = static_cast<T*>(p.out);
    const T* x = static_cast<const T*>(p.x);
    switch (p.kind) {
      case backend::MapKind::Unary: unary<T>(p.unary, p.shape, out, x, p.x_strides); return;
      case backend::MapKind::Affine: affine<T>(p.shape, out, x, p.x_strides, p.alpha, p.beta); return;
      case backend::MapKind::Power: power<T>(p.shape, out, x, p.x_strides, p.alpha); return;
    }
  });
}

void elementwise_binary(const backend::BinaryParams& p) {
  by_float("elementwise_binary", p.dtype, [&]<class T>() {
    binary<T>(p.op, p.shape, static_cast<T*>(p.out), static_cast<const T*>(p.a), p.a_strides,
              static_cast<const T*>(p.b), p.b_strides);
  });
}

void activation_grad(const backend::ActivationGradParams& p) {
  by_float("activation_grad", p.dtype, [&]<class T>() {
    unary_grad<T>(p.f, p.n, static_cast<T*>(p.out), static_cast<const T*>(p.g), static_cast<const T*>(p.x));
  });
}

void axpy(const backend::AxpyParams& p) {
  by_float("axpy", p.dtype, [&]<class T>() {
    T* d = static_cast<T*>(p.dst);
    const T* x = static_cast<const T*>(p.src);
    const T a = static_cast<T>(p.alpha);
    const int64_t n = p.n;
    #pragma omp parallel for simd if (n > (1 << 15))
    for (int64_t i = 0; i < n; ++i) d[i] += a * x[i];
  });
}

}  // namespace strand::cpu
