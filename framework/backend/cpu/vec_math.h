// Branch-free float exp and tanh that GCC vectorises inside `omp simd` loops (glibc's expf is a
// scalar call unless -ffast-math). Double keeps std::exp/std::tanh: float64 is for gradient
// checks, where accuracy matters more than speed.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace strand::cpu {

// a * b + c, fused where the target has FMA (a portable x86-64-v2 build has none, and std::fma
// would then be a slow library call).
inline float fmadd(float a, float b, float c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// exp(x): 2^n * p(r) with r = x - n ln2 in [-ln2/2, ln2/2] (Cody-Waite split of ln2) and a
// degree-6 polynomial; relative error ~2e-7. exp(-inf) = 0; inputs above 88 saturate.
inline float vexp(float x) {
  const float xc = std::min(std::max(x, -87.0f), 88.0f);
  const float n = std::nearbyint(xc * 1.44269504088896341f);
  float r = fmadd(n, -0.693145751953125f, xc);
  r = fmadd(n, -1.428606765330187045e-06f, r);
  float p = 1.3981999507e-3f;
  p = fmadd(p, r, 8.3334519073e-3f);
  p = fmadd(p, r, 4.1665795894e-2f);
  p = fmadd(p, r, 1.6666665459e-1f);
  p = fmadd(p, r, 5.0000001201e-1f);
  p = fmadd(p, r * r, r + 1.0f);
  const float scale = std::bit_cast<float>(static_cast<int32_t>(n + 127.0f) << 23);
  return x < -87.0f ? 0.0f : p * scale;
}
inline double vexp(double x) { return std::exp(x); }

// tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|): no cancellation for large |x|,
// absolute error ~2e-7 near 0.
inline float vtanh(float x) {
  const float e = vexp(-2.0f * std::abs(x));
  const float t = (1.0f - e) / (1.0f + e);
  return std::copysign(t, x);
}
inline double vtanh(double x) { return std::tanh(x); }

}  // namespace strand::cpu
