// CUDA merge of two partial attention results over disjoint key sets, its backward, and the row
// adds of a segment step's partial gradients: the formulas of cpu/attention_merge.cpp, one thread
// per row (these are memory-bound passes over a few rows of width head_dim).
#include <cuda_runtime.h>

#include <cmath>

#include "framework/backend/cuda/attention_api.h"
#include "framework/backend/cuda/runtime_api.h"
#include "framework/core/error.h"

namespace strand::cuda {
namespace {

constexpr int kThreads = 256;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw DeviceError(detail::concat("cuda ", what, ": ", cudaGetErrorString(e)));
}

template <class T>
__device__ inline T* row_of(const AttentionRowsArgs& r, int64_t t, int64_t i) {
  return static_cast<T*>(r.data) + t * r.outer_stride + i * r.row_stride;
}

__device__ inline float exp_of(float x) { return expf(x); }
__device__ inline double exp_of(double x) { return exp(x); }
__device__ inline float log_of(float x) { return logf(x); }
__device__ inline double log_of(double x) { return log(x); }

// The merged lse and the two weights of one row; both parts -inf: lse -inf, weights 0.
template <class T>
__device__ inline void merge_weights(T l1, T l2, T& lse, T& w1, T& w2) {
  const T neg_inf = -static_cast<T>(INFINITY);
  const T mx = l1 > l2 ? l1 : l2;
  if (mx == neg_inf) {
    lse = neg_inf;
    w1 = w2 = T(0);
    return;
  }
  lse = mx + log_of(exp_of(l1 - mx) + exp_of(l2 - mx));
  w1 = exp_of(l1 - lse);
  w2 = exp_of(l2 - lse);
}

// o may alias o1 and lse may alias lse1: each row reads its inputs before it writes.
template <class T>
__global__ void merge_forward_kernel(AttentionMergeArgs a) {
  const int64_t l = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (l >= a.outer * a.rows) return;
  const int64_t t = l / a.rows, i = l % a.rows;
  T merged, w1, w2;
  merge_weights(*row_of<T>(a.lse1, t, i), *row_of<T>(a.lse2, t, i), merged, w1, w2);
  *row_of<T>(a.lse, t, i) = merged;
  const T* x1 = row_of<T>(a.o1, t, i);
  const T* x2 = row_of<T>(a.o2, t, i);
  T* y = row_of<T>(a.o, t, i);
  for (int64_t x = 0; x < a.d; ++x) y[x] = w1 * x1[x] + w2 * x2[x];
}

template <class T>
__global__ void merge_backward_kernel(AttentionMergeArgs a) {
  const int64_t l = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (l >= a.outer * a.rows) return;
  const int64_t t = l / a.rows, i = l % a.rows;
  T merged, w1, w2;
  merge_weights(*row_of<T>(a.lse1, t, i), *row_of<T>(a.lse2, t, i), merged, w1, w2);
  const T* x1 = row_of<T>(a.o1, t, i);
  const T* x2 = row_of<T>(a.o2, t, i);
  const T* y = row_of<T>(a.o, t, i);
  const T* g = row_of<T>(a.go, t, i);
  T* g1 = row_of<T>(a.go1, t, i);
  T* g2 = row_of<T>(a.go2, t, i);
  T dot1 = 0, dot2 = 0;
  for (int64_t x = 0; x < a.d; ++x) {
    dot1 += g[x] * (x1[x] - y[x]);
    dot2 += g[x] * (x2[x] - y[x]);
    g1[x] = w1 * g[x];
    g2[x] = w2 * g[x];
  }
  const T glse = *row_of<T>(a.glse, t, i);
  *row_of<T>(a.glse1, t, i) = w1 * (glse + dot1);
  *row_of<T>(a.glse2, t, i) = w2 * (glse + dot2);
}

template <class T>
__global__ void add_rows_kernel(AttentionMergeArgs a) {
  const int64_t l = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (l >= a.outer * a.rows) return;
  const int64_t t = l / a.rows, i = l % a.rows;
  T* y = row_of<T>(a.o, t, i);
  const T* x = row_of<T>(a.o1, t, i);
  for (int64_t e = 0; e < a.d; ++e) y[e] += x[e];
}

// One thread per row, float32 or float64 by a.f64.
template <class F32Kernel, class F64Kernel>
void launch_rows(F32Kernel f32, F64Kernel f64, const AttentionMergeArgs& a, const char* what) {
  check(cudaSetDevice(a.device), "cudaSetDevice");
  const int64_t lines = a.outer * a.rows;
  if (lines == 0) return;
  const int64_t blocks = (lines + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) throw DeviceError(detail::concat("cuda ", what, ": ", lines, " rows"));
  const auto on = static_cast<cudaStream_t>(compute_stream(a.device));  // Note [One compute stream]
  if (a.f64) f64<<<static_cast<unsigned>(blocks), kThreads, 0, on>>>(a);
  else f32<<<static_cast<unsigned>(blocks), kThreads, 0, on>>>(a);
  check(cudaGetLastError(), what);
}

}  // namespace

void attention_merge_forward(const AttentionMergeArgs& a) {
  launch_rows(merge_forward_kernel<float>, merge_forward_kernel<double>, a, "attention merge");
}

void attention_merge_backward(const AttentionMergeArgs& a) {
  launch_rows(merge_backward_kernel<float>, merge_backward_kernel<double>, a, "attention merge backward");
}

void attention_add_rows(const AttentionMergeArgs& a) {
  launch_rows(add_rows_kernel<float>, add_rows_kernel<double>, a, "attention add rows");
}

}  // namespace strand::cuda
