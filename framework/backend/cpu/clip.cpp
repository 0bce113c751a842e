// CPU clipping kernels: unit-stride loops, vectorised, OpenMP-parallel above kParallelGrain.
#include "framework/backend/cpu/clip.h"

#include <algorithm>
#include <vector>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {

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

template double sum_squares<float>(int64_t, const float*);
template double sum_squares<double>(int64_t, const double*);
template void scale_inplace<float>(int64_t, float*, double);
template void scale_inplace<double>(int64_t, double*, double);

void clip_grad(const backend::ClipParams& p) {
  by_float("clip_grad", p.dtype, [&]<class T>() {
    if (p.op == backend::ClipOp::SumSquares) *p.sum = sum_squares<T>(p.n, static_cast<const T*>(p.x));
    else scale_inplace<T>(p.n, static_cast<T*>(p.x), p.scale);
  });
}

}  // namespace strand::cpu
