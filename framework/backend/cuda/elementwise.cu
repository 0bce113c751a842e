// CUDA elementwise kernels: strided unary maps (with scale/shift and power), broadcasting binary
// maps, activation derivatives, axpy, and the float32 -> 16-bit rounding the GEMM uses. The same
// formulas as framework/backend/cpu/elementwise.cpp, in the same type; one kernel per dtype with
// the operation chosen inside (a branch every thread of a launch takes alike), which keeps the
// number of instantiations, and so the build time, small.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "framework/backend/cuda/common.cuh"

namespace strand::cuda {
namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluCubic = 0.044715;

template <class T>
__device__ T sigmoid(T x) { return T(1) / (T(1) + d_exp(-x)); }

template <class T>
__device__ T gelu(T x) {
  const T u = static_cast<T>(kSqrt2OverPi) * (x + static_cast<T>(kGeluCubic) * x * x * x);
  return static_cast<T>(0.5) * x * (T(1) + d_tanh(u));
}

template <class T>
__device__ T gelu_derivative(T x) {
  const T u = static_cast<T>(kSqrt2OverPi) * (x + static_cast<T>(kGeluCubic) * x * x * x);
  const T t = d_tanh(u);
  const T du = static_cast<T>(kSqrt2OverPi) * (T(1) + static_cast<T>(3 * kGeluCubic) * x * x);
  return static_cast<T>(0.5) * (T(1) + t) + static_cast<T>(0.5) * x * (T(1) - t * t) * du;
}

template <class T>
__device__ T apply_unary(Unary f, T v) {
  switch (f) {
    case Unary::Neg: return -v;
    case Unary::Exp: return d_exp(v);
    case Unary::Log: return d_log(v);
    case Unary::Sqrt: return d_sqrt(v);
    case Unary::Tanh: return d_tanh(v);
    case Unary::Gelu: return gelu(v);
    case Unary::Silu: return v * sigmoid(v);
    case Unary::Square: return v * v;
    case Unary::Reciprocal: return T(1) / v;
    case Unary::Abs: return d_abs(v);
  }
  return v;
}

template <class T>
__device__ T apply_binary(Binary op, T x, T y) {
  switch (op) {
    case Binary::Add: return x + y;
    case Binary::Sub: return x - y;
    case Binary::Mul: return x * y;
    case Binary::Div: return x / y;
    case Binary::Max: return x > y ? x : y;
    case Binary::Min: return x < y ? x : y;
  }
  return x;
}

// Element offset of output element i (row-major over s.shape) in an input with strides st.
__device__ int64_t offset_of(const Strided& s, const int64_t* st, int64_t i) {
  int64_t off = 0;
  for (int d = s.ndim - 1; d >= 0; --d) {
    const int64_t idx = i % s.shape[d];
    i /= s.shape[d];
    off += idx * st[d];
  }
  return off;
}

template <class T>
__global__ void map_kernel(MapKind kind, Unary f, T alpha, T beta, Strided s, int64_t total, T* out, const T* x) {
  STRAND_GRID_LOOP(i, total) {
    const T v = x[s.a_linear ? i : offset_of(s, s.a, i)];
    T r;
    switch (kind) {
      case MapKind::Unary: r = apply_unary(f, v); break;
      case MapKind::Affine: r = v * alpha + beta; break;
      default: r = d_pow(v, alpha); break;  // MapKind::Power
    }
    out[i] = r;
  }
}

template <class T>
__global__ void binary_kernel(Binary op, Strided s, int64_t total, T* out, const T* a, const T* b) {
  STRAND_GRID_LOOP(i, total) {
    const T x = a[s.a_linear ? i : offset_of(s, s.a, i)];
    const T y = b[s.b_linear ? i : offset_of(s, s.b, i)];
    out[i] = apply_binary(op, x, y);
  }
}

template <class T>
__global__ void activation_grad_kernel(UnaryGrad f, int64_t n, T* out, const T* g, const T* x) {
  STRAND_GRID_LOOP(i, n) {
    if (f == UnaryGrad::Gelu) {
      out[i] = g[i] * gelu_derivative(x[i]);
    } else {
      const T s = sigmoid(x[i]);
      out[i] = g[i] * s * (T(1) + x[i] * (T(1) - s));
    }
  }
}

template <class T>
__global__ void axpy_kernel(int64_t n, T alpha, T* dst, const T* src) {
  STRAND_GRID_LOOP(i, n) dst[i] += alpha * src[i];
}

__global__ void round_bf16_kernel(int64_t m, int64_t n, const float* src, int64_t lds, uint16_t* dst, int64_t ldd) {
  STRAND_GRID_LOOP(i, m * n) {
    const int64_t r = i / n, c = i % n;
    dst[r * ldd + c] = __bfloat16_as_ushort(__float2bfloat16_rn(src[r * lds + c]));
  }
}

__global__ void round_f16_kernel(int64_t m, int64_t n, const float* src, int64_t lds, uint16_t* dst, int64_t ldd) {
  STRAND_GRID_LOOP(i, m * n) {
    const int64_t r = i / n, c = i % n;
    dst[r * ldd + c] = __half_as_ushort(__float2half_rn(src[r * lds + c]));
  }
}

int64_t total_of(const Strided& s) {
  int64_t total = 1;
  for (int d = 0; d < s.ndim; ++d) total *= s.shape[d];
  return total;
}

}  // namespace

void map(int device, Dt dt, MapKind kind, Unary f, double alpha, double beta, const Strided& s, void* out,
         const void* x) {
  const int64_t total = total_of(s);
  if (total == 0) return;
  set_device(device);
  by_float("elementwise_map", dt, [&](auto zero) {
    using T = decltype(zero);
    map_kernel<T><<<blocks_for(total), kThreads, 0, stream(device)>>>(
        kind, f, static_cast<T>(alpha), static_cast<T>(beta), s, total, static_cast<T*>(out), static_cast<const T*>(x));
  });
  check_launch("elementwise_map");
}

void binary(int device, Dt dt, Binary op, const Strided& s, void* out, const void* a, const void* b) {
  const int64_t total = total_of(s);
  if (total == 0) return;
  set_device(device);
  by_float("elementwise_binary", dt, [&](auto zero) {
    using T = decltype(zero);
    binary_kernel<T><<<blocks_for(total), kThreads, 0, stream(device)>>>(
        op, s, total, static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b));
  });
  check_launch("elementwise_binary");
}

void activation_grad(int device, Dt dt, UnaryGrad f, int64_t n, void* out, const void* g, const void* x) {
  if (n <= 0) return;
  set_device(device);
  by_float("activation_grad", dt, [&](auto zero) {
    using T = decltype(zero);
    activation_grad_kernel<T><<<blocks_for(n), kThreads, 0, stream(device)>>>(
        f, n, static_cast<T*>(out), static_cast<const T*>(g), static_cast<const T*>(x));
  });
  check_launch("activation_grad");
}

void axpy(int device, Dt dt, int64_t n, double alpha, void* dst, const void* src) {
  if (n <= 0) return;
  set_device(device);
  by_float("axpy", dt, [&](auto zero) {
    using T = decltype(zero);
    axpy_kernel<T><<<blocks_for(n), kThreads, 0, stream(device)>>>(n, static_cast<T>(alpha), static_cast<T*>(dst),
                                                                    static_cast<const T*>(src));
  });
  check_launch("axpy");
}

void round_to_half(int device, Dt dt, int64_t m, int64_t n, const float* src, int64_t lds, void* dst, int64_t ldd) {
  if (m <= 0 || n <= 0) return;
  set_device(device);
  uint16_t* d = static_cast<uint16_t*>(dst);
  if (dt == Dt::BF16)
    round_bf16_kernel<<<blocks_for(m * n), kThreads, 0, stream(device)>>>(m, n, src, lds, d, ldd);
  else if (dt == Dt::F16)
    round_f16_kernel<<<blocks_for(m * n), kThreads, 0, stream(device)>>>(m, n, src, lds, d, ldd);
  else
    throw DTypeError("gemm: rounding to 16 bits takes bfloat16 or float16");
  check_launch("gemm: round to 16 bits");
}

}  // namespace strand::cuda
