// Fused cross-entropy kernels: blocked online log-sum-exp forward, one-pass backward.
#include "framework/backend/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"
#include "framework/backend/cpu/vec_math.h"

namespace strand::cpu {
namespace {

// The row is read once, in blocks small enough to stay in L1: each block's max is taken first
// (a vectorisable reduction), so the running sum is rescaled once per block, not per element.
constexpr int64_t kBlock = 512;

template <class T>
double row_logsumexp(const T* x, int64_t V) {
  double m = -std::numeric_limits<double>::infinity(), s = 0.0;
  for (int64_t j0 = 0; j0 < V; j0 += kBlock) {
    const int64_t j1 = std::min(V, j0 + kBlock);
    T bm = x[j0];
    #pragma omp simd reduction(max : bm)
    for (int64_t j = j0; j < j1; ++j) bm = std::max(bm, x[j]);
    const double block_max = bm;
    if (block_max > m) {
      s *= std::exp(m - block_max);  // exp(-inf) = 0 on the first block
      m = block_max;
    }
    // Exponentials in T (vectorised for float), each block's sum carried on in double.
    const T mt = static_cast<T>(m);
    T bs = 0;
    #pragma omp simd reduction(+ : bs)
    for (int64_t j = j0; j < j1; ++j) bs += vexp(x[j] - mt);
    s += static_cast<double>(bs);
  }
  return m + std::log(s);
}

}  // namespace

int64_t first_target_out_of_range(const int32_t* targets, int64_t n, int64_t V, int32_t ignore_index) {
  for (int64_t i = 0; i < n; ++i)
    if (targets[i] != ignore_index && (targets[i] < 0 || targets[i] >= V)) return i;
  return -1;
}

template <class T>
void cross_entropy_forward(const T* logits, int64_t ld, int64_t N, int64_t V, const int32_t* targets,
                           int32_t ignore_index, T* lse, double* row_loss) {
  #pragma omp parallel for if (N * V > kParallelGrain)
  for (int64_t r = 0; r < N; ++r) {
    if (targets[r] == ignore_index) {
      lse[r] = T(0);
      row_loss[r] = 0.0;
      continue;
    }
    const T* x = logits + r * ld;
    const double l = row_logsumexp(x, V);
    lse[r] = static_cast<T>(l);
    row_loss[r] = l - static_cast<double>(x[targets[r]]);
  }
}

template <class T>
void cross_entropy_backward(const T* logits, int64_t ld, int64_t N, int64_t V, const int32_t* targets,
                            int32_t ignore_index, const T* lse, double scale, T* dlogits) {
  #pragma omp parallel for if (N * V > kParallelGrain)
  for (int64_t r = 0; r < N; ++r) {
    T* d = dlogits + r * V;
    if (targets[r] == ignore_index) {
      std::fill(d, d + V, T(0));
      continue;
    }
    const T* x = logits + r * ld;
    const T l = lse[r], s = static_cast<T>(scale);
    #pragma omp simd
    for (int64_t j = 0; j < V; ++j) d[j] = vexp(x[j] - l) * s;
    d[targets[r]] -= s;
  }
}

template void cross_entropy_forward<float>(const float*, int64_t, int64_t, int64_t, const int32_t*, int32_t, float*,
                                           double*);
template void cross_entropy_forward<double>(const double*, int64_t, int64_t, int64_t, const int32_t*, int32_t,
                                            double*, double*);
template void cross_entropy_backward<float>(const float*, int64_t, int64_t, int64_t, const int32_t*, int32_t,
                                            const float*, double, float*);
template void cross_entropy_backward<double>(const double*, int64_t, int64_t, int64_t, const int32_t*, int32_t,
                                             const double*, double, double*);

void cross_entropy(const backend::CrossEntropyParams& p) {
  if (p.op == backend::CrossEntropyOp::CheckTargets) {
    *p.first_bad = first_target_out_of_range(p.targets, p.N, p.V, p.ignore_index);
    *p.bad_target = *p.first_bad < 0 ? 0 : p.targets[*p.first_bad];
    int64_t count = 0;
    for (int64_t i = 0; i < p.N; ++i) count += p.targets[i] != p.ignore_index;
    *p.count = count;
    return;
  }
  by_float("cross_entropy", p.dtype, [&]<class T>() {
    const T* logits = static_cast<const T*>(p.logits);
    if (p.op == backend::CrossEntropyOp::Forward)
      cross_entropy_forward<T>(logits, p.ld, p.N, p.V, p.targets, p.ignore_index, static_cast<T*>(p.lse), p.row_loss);
    else
      cross_entropy_backward<T>(logits, p.ld, p.N, p.V, p.targets, p.ignore_index, static_cast<const T*>(p.lse),
                                p.scale, static_cast<T*>(p.dlogits));
  });
}

}  // namespace strand::cpu
