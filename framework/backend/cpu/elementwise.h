// CPU elementwise kernels: unary maps, binary maps with broadcasting, and the activation
// derivatives their backward passes need. Plain pointers and strides; no Tensor here.
#pragma once
#include <cstdint>

#include "framework/backend/elementwise.h"
#include "framework/core/shape.h"

namespace strand::cpu {

using backend::Binary;
using backend::Unary;
using backend::UnaryGrad;

// The family entries registered with the device seam (backend/elementwise.h).
void elementwise_map(const backend::MapParams& p);
void elementwise_binary(const backend::BinaryParams& p);
void activation_grad(const backend::ActivationGradParams& p);
void axpy(const backend::AxpyParams& p);

// out[i] = f(x[i]) over shape; out contiguous, x read through x_strides.
template <class T>
void unary(Unary f, const Shape& shape, T* out, const T* x, const Shape& x_strides);
// out[i] = a[i] (op) b[i]; a and b read through their (broadcast) strides.
template <class T>
void binary(Binary op, const Shape& shape, T* out, const T* a, const Shape& a_strides, const T* b,
            const Shape& b_strides);
// out[i] = x[i] * alpha + beta (scale and shift by scalars).
template <class T>
void affine(const Shape& shape, T* out, const T* x, const Shape& x_strides, double alpha, double beta);
// out[i] = x[i] ^ p.
template <class T>
void power(const Shape& shape, T* out, const T* x, const Shape& x_strides, double p);
// out[i] = g[i] * f'(x[i]); all three contiguous, n elements.
template <class T>
void unary_grad(UnaryGrad f, int64_t n, T* out, const T* g, const T* x);

}  // namespace strand::cpu
