// Exact merge of two partial attention results over disjoint key sets, its backward, and the row
// adds that gather a segment step's partial gradients: the one merge every attention path uses.
//
// lse = log(e^lse1 + e^lse2), w1 = e^(lse1 - lse), w2 = e^(lse2 - lse), o = w1 o1 + w2 o2.
// Backward: d o1 = w1 go; d lse1 = w1 (glse + go . (o1 - o)) (and the same for part 2), since
// d w1 / d lse1 = w1 (1 - w1) and d w2 / d lse1 = -w1 w2. A part with lse = -inf has weight 0 and
// gets zero gradients; a row with both parts -inf stays o = 0, lse = -inf: no NaN either way.
#include <algorithm>
#include <cmath>
#include <limits>

#include "framework/backend/cpu/attention_kernels.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {
namespace {

using backend::AttentionRows;

// Row i of block t of `r`, as T.
template <class T>
T* row_of(const AttentionRows& r, int64_t t, int64_t i) {
  return static_cast<T*>(r.data) + t * r.outer_stride + i * r.row_stride;
}

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

// o may alias o1 and lse may alias lse1: each row reads its inputs before it writes.
template <class T>
void merge_forward(const backend::AttentionMergeParams& p) {
  const int64_t lines = p.outer * p.rows, d = p.d;
  #pragma omp parallel for schedule(static) if (lines * d > kParallelGrain)
  for (int64_t l = 0; l < lines; ++l) {
    const int64_t t = l / p.rows, i = l % p.rows;
    T w1, w2, merged;
    merge_weights(*row_of<T>(p.lse1, t, i), *row_of<T>(p.lse2, t, i), merged, w1, w2);
    *row_of<T>(p.lse, t, i) = merged;
    const T* a = row_of<T>(p.o1, t, i);
    const T* b = row_of<T>(p.o2, t, i);
    T* y = row_of<T>(p.o, t, i);
    #pragma omp simd
    for (int64_t x = 0; x < d; ++x) y[x] = w1 * a[x] + w2 * b[x];
  }
}

template <class T>
void merge_backward(const backend::AttentionMergeBackwardParams& p) {
  const int64_t lines = p.outer * p.rows, d = p.d;
  #pragma omp parallel for schedule(static) if (lines * d > kParallelGrain)
  for (int64_t l = 0; l < lines; ++l) {
    const int64_t t = l / p.rows, i = l % p.rows;
    // The weights are recomputed from lse1 and lse2 exactly as the forward made them.
    T merged, w1, w2;
    merge_weights(*row_of<T>(p.lse1, t, i), *row_of<T>(p.lse2, t, i), merged, w1, w2);
    const T* a = row_of<T>(p.o1, t, i);
    const T* b = row_of<T>(p.o2, t, i);
    const T* y = row_of<T>(p.o, t, i);
    const T* g = row_of<T>(p.go, t, i);
    T* g1 = row_of<T>(p.go1, t, i);
    T* g2 = row_of<T>(p.go2, t, i);
    T dot1 = 0, dot2 = 0;
    #pragma omp simd reduction(+ : dot1, dot2)
    for (int64_t x = 0; x < d; ++x) {
      dot1 += g[x] * (a[x] - y[x]);
      dot2 += g[x] * (b[x] - y[x]);
      g1[x] = w1 * g[x];
      g2[x] = w2 * g[x];
    }
    const T glse = *row_of<T>(p.glse, t, i);
    *row_of<T>(p.glse1, t, i) = w1 * (glse + dot1);
    *row_of<T>(p.glse2, t, i) = w2 * (glse + dot2);
  }
}

template <class T>
void add_rows(const backend::AttentionAddRowsParams& p) {
  const int64_t lines = p.outer * p.rows, d = p.d;
  #pragma omp parallel for schedule(static) if (lines * d > kParallelGrain)
  for (int64_t l = 0; l < lines; ++l) {
    const int64_t t = l / p.rows, i = l % p.rows;
    T* y = row_of<T>(p.dst, t, i);
    const T* x = row_of<T>(p.src, t, i);
    #pragma omp simd
    for (int64_t e = 0; e < d; ++e) y[e] += x[e];
  }
}

}  // namespace

void attention_merge_forward_kernel(const backend::AttentionMergeParams& p) {
  if (p.dtype == DType::F64) merge_forward<double>(p);
  else merge_forward<float>(p);
}

void attention_merge_backward_kernel(const backend::AttentionMergeBackwardParams& p) {
  if (p.dtype == DType::F64) merge_backward<double>(p);
  else merge_backward<float>(p);
}

void attention_add_rows_kernel(const backend::AttentionAddRowsParams& p) {
  if (p.dtype == DType::F64) add_rows<double>(p);
  else add_rows<float>(p);
}

}  // namespace strand::cpu
