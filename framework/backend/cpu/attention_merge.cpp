// Exact merge of two partial attention results over disjoint key sets, and its backward.
//
// lse = log(e^lse1 + e^lse2), w1 = e^(lse1 - lse), w2 = e^(lse2 - lse), o = w1 o1 + w2 o2.
// Backward: d o1 = w1 go; d lse1 = w1 (glse + go . (o1 - o)) (and the same for part 2), since
// d w1 / d lse1 = w1 (1 - w1) and d w2 / d lse1 = -w1 w2. A part with lse = -inf has weight 0 and
// gets zero gradients; a row with both parts -inf stays o = 0, lse = -inf: no NaN either way.
#include <algorithm>
#include <cmath>
#include <limits>

#include "framework/backend/cpu/attention_params.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {
namespace {

// The merged lse and the two weights of one row.
template <class T>
void merge_weights(T l1, T l2, T& lse, T& w1, T& w2) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const T mx = std::max(l1, l2);
  if (mx == kNegInf) {
    lse = kNegInf;
    w1 = w2 = T(0);
    return;
  }
  lse = mx + std::log(std::exp(l1 - mx) + std::exp(l2 - mx));
  w1 = std::exp(l1 - lse);
  w2 = std::exp(l2 - lse);
}

}  // namespace

template <class T>
void attention_merge_forward(int64_t rows, int64_t d, const T* o1, const T* lse1, const T* o2, const T* lse2, T* o,
                             T* lse) {
  #pragma omp parallel for schedule(static) if (rows * d > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    T w1, w2;
    merge_weights(lse1[r], lse2[r], lse[r], w1, w2);
    const T* a = o1 + r * d;
    const T* b = o2 + r * d;
    T* y = o + r * d;
    #pragma omp simd
    for (int64_t x = 0; x < d; ++x) y[x] = w1 * a[x] + w2 * b[x];
  }
}

template <class T>
void attention_merge_backward(int64_t rows, int64_t d, const T* o1, const T* lse1, const T* o2, const T* lse2,
                              const T* o, const T* lse, const T* go, const T* glse, T* go1, T* glse1, T* go2,
                              T* glse2) {
  (void)lse;  // the weights are recomputed from lse1 and lse2 exactly as the forward made them
  #pragma omp parallel for schedule(static) if (rows * d > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    T merged, w1, w2;
    merge_weights(lse1[r], lse2[r], merged, w1, w2);
    const T* a = o1 + r * d;
    const T* b = o2 + r * d;
    const T* y = o + r * d;
    const T* g = go + r * d;
    T dot1 = 0, dot2 = 0;
    #pragma omp simd reduction(+ : dot1, dot2)
    for (int64_t x = 0; x < d; ++x) {
      dot1 += g[x] * (a[x] - y[x]);
      dot2 += g[x] * (b[x] - y[x]);
      go1[r * d + x] = w1 * g[x];
      go2[r * d + x] = w2 * g[x];
    }
    glse1[r] = w1 * (glse[r] + dot1);
    glse2[r] = w2 * (glse[r] + dot2);
  }
}

template void attention_merge_forward<float>(int64_t, int64_t, const float*, const float*, const float*,
                                             const float*, float*, float*);
template void attention_merge_forward<double>(int64_t, int64_t, const double*, const double*, const double*,
                                              const double*, double*, double*);
template void attention_merge_backward<float>(int64_t, int64_t, const float*, const float*, const float*,
                                              const float*, const float*, const float*, const float*, const float*,
                                              float*, float*, float*, float*);
template void attention_merge_backward<double>(int64_t, int64_t, const double*, const double*, const double*,
                                               const double*, const double*, const double*, const double*,
                                               const double*, double*, double*, double*, double*);

}  // namespace strand::cpu
