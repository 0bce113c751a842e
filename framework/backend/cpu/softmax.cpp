// CPU softmax kernels: one row per iteration, unit-stride SIMD loops along the row, OpenMP
// across rows when the buffer is large. Each row is independent, so results do not depend on
// the thread count.
#include "framework/backend/cpu/softmax.h"

#include "framework/backend/cpu/vec_math.h"

#include <cmath>
#include <limits>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {

template <class T>
void softmax_rows(int64_t rows, int64_t n, const T* x, T* y, bool log) {
  if (n == 0) return;
  #pragma omp parallel for if (rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T row_max = -std::numeric_limits<T>::infinity();
    #pragma omp simd reduction(max : row_max)
    for (int64_t j = 0; j < n; ++j) row_max = xr[j] > row_max ? xr[j] : row_max;
    // A row of -inf (fully masked) would give inf - inf = NaN below; shifting by 0 instead
    // leaves exp(-inf) = 0 and a 0/0 = NaN softmax, the same answer PyTorch gives.
    if (row_max == -std::numeric_limits<T>::infinity()) row_max = 0;
    T total = 0;
    if (log) {
      #pragma omp simd reduction(+ : total)
      for (int64_t j = 0; j < n; ++j) total += vexp(xr[j] - row_max);
      const T shift = row_max + std::log(total);
      #pragma omp simd
      for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] - shift;
    } else {
      #pragma omp simd reduction(+ : total)
      for (int64_t j = 0; j < n; ++j) {
        const T e = vexp(xr[j] - row_max);
        yr[j] = e;
        total += e;
      }
      const T inv = T(1) / total;
      #pragma omp simd
      for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
    }
  }
}

template <class T>
void softmax_backward_rows(int64_t rows, int64_t n, const T* y, const T* g, T* dx, bool log) {
  #pragma omp parallel for if (rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * n;
    const T* gr = g + r * n;
    T* dr = dx + r * n;
    T dot = 0;
    if (log) {
      #pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < n; ++j) dot += gr[j];
      #pragma omp simd
      for (int64_t j = 0; j < n; ++j) dr[j] = gr[j] - vexp(yr[j]) * dot;
    } else {
      #pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < n; ++j) dot += gr[j] * yr[j];
      #pragma omp simd
      for (int64_t j = 0; j < n; ++j) dr[j] = yr[j] * (gr[j] - dot);
    }
  }
}

template void softmax_rows<float>(int64_t, int64_t, const float*, float*, bool);
template void softmax_rows<double>(int64_t, int64_t, const double*, double*, bool);
template void softmax_backward_rows<float>(int64_t, int64_t, const float*, const float*, float*, bool);
template void softmax_backward_rows<double>(int64_t, int64_t, const double*, const double*, double*, bool);

void softmax_rows(const backend::SoftmaxParams& p) {
  by_float("softmax_rows", p.dtype, [&]<class T>() {
    if (p.backward)
      softmax_backward_rows<T>(p.rows, p.n, static_cast<const T*>(p.x), static_cast<const T*>(p.g),
                               static_cast<T*>(p.out), p.log);
    else
      softmax_rows<T>(p.rows, p.n, static_cast<const T*>(p.x), static_cast<T*>(p.out), p.log);
  });
}

}  // namespace strand::cpu
