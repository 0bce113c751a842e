// Shared by the .cu kernel files: launch shapes, the dtype switch, math overloads for float and
// double, and block-wide reductions (one block per row, the result given to every thread).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "framework/backend/cuda/kernels.h"
#include "framework/backend/cuda/runtime_api.h"
#include "framework/core/error.h"

namespace strand::cuda {

constexpr int kThreads = 256;          // per block, a multiple of the warp size
constexpr int64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest

inline unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks)));
}
inline unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(rows, kMaxBlocks)));
}
inline cudaStream_t stream(int device) { return static_cast<cudaStream_t>(compute_stream(device)); }

// Calls fn(T{}) with T = float or double for dt; the ops check dtypes first, so this guards
// direct callers only.
template <class Fn>
void by_float(const char* kernel, Dt dt, Fn&& fn) {
  switch (dt) {
    case Dt::F32: fn(float{}); return;
    case Dt::F64: fn(double{}); return;
    default: throw DTypeError(detail::concat(kernel, ": the cuda kernel takes float32 or float64"));
  }
}

// Grid-stride loop index over [0, n) as int64.
#define STRAND_GRID_LOOP(i, n)                                                                      \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);           \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Row loop: each block takes rows blockIdx.x, blockIdx.x + gridDim.x, ... (uniform per block,
// so the block reductions inside stay convergent).
#define STRAND_ROW_LOOP(r, rows) for (int64_t r = blockIdx.x; r < (rows); r += gridDim.x)

__device__ inline float d_exp(float x) { return expf(x); }
__device__ inline double d_exp(double x) { return exp(x); }
__device__ inline float d_log(float x) { return logf(x); }
__device__ inline double d_log(double x) { return log(x); }
__device__ inline float d_sqrt(float x) { return sqrtf(x); }
__device__ inline double d_sqrt(double x) { return sqrt(x); }
__device__ inline float d_tanh(float x) { return tanhf(x); }
__device__ inline double d_tanh(double x) { return tanh(x); }
__device__ inline float d_pow(float x, float e) { return powf(x, e); }
__device__ inline double d_pow(double x, double e) { return pow(x, e); }
__device__ inline float d_abs(float x) { return fabsf(x); }
__device__ inline double d_abs(double x) { return fabs(x); }

template <class T>
__device__ T infinity() {
  return static_cast<T>(__longlong_as_double(0x7ff0000000000000ll));
}

template <class T>
__device__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}
template <class T>
__device__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T u = __shfl_down_sync(0xffffffffu, v, o);
    v = u > v ? u : v;
  }
  return v;
}

// Sum (or max) of v over the block, returned to every thread. `smem` holds 32 values; the
// leading barrier lets consecutive calls reuse it.
template <class T>
__device__ T block_sum(T v, T* smem) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? smem[lane] : T(0);
    v = warp_sum(v);
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  return smem[0];
}
template <class T>
__device__ T block_max(T v, T* smem) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? smem[lane] : -infinity<T>();
    v = warp_max(v);
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  return smem[0];
}

}  // namespace strand::cuda
