// The CPU attention kernels (tiled forward and backward, merge, row adds) behind the device-neutral
// parameter structs of framework/backend/attention.h; register.cpp hands the entry points to the
// registry. T = float or double.
#pragma once
#include <cstdint>

#include "framework/backend/attention.h"

namespace strand::cpu {

using backend::AttentionParams;

// Forward: o and lse from q, k, v.
template <class T> void attention_forward(const AttentionParams& p);
// Backward: dq, dk, dv from q, k, v, o, lse, d_o (and d_lse). Deterministic for a fixed thread count.
template <class T> void attention_backward(const AttentionParams& p);

// The end of a key block's backward, shared by the float32/float64 and bf16 kernels: dK (times
// the scale, which the block's products left out) and dV of kv head hk, key rows j0 .. j0 + nk,
// copied from contiguous [nk, D] accumulators into p.dk and p.dv.
template <class T>
inline void store_key_block_grads(const AttentionParams& p, int64_t b, int64_t hk, int64_t j0, int64_t nk, T scale,
                                  const T* acc_k, const T* acc_v) {
  const int64_t d = p.head_dim;
  T* dk = static_cast<T*>(p.dk) + b * p.dk_batch_stride + hk * p.dk_head_stride + j0 * p.dk_row_stride;
  T* dv = static_cast<T*>(p.dv) + b * p.dv_batch_stride + hk * p.dv_head_stride + j0 * p.dv_row_stride;
  for (int64_t j = 0; j < nk; ++j) {
    const T* ak = acc_k + j * d;
    const T* av = acc_v + j * d;
    #pragma omp simd
    for (int64_t x = 0; x < d; ++x) {
      dk[j * p.dk_row_stride + x] = ak[x] * scale;
      dv[j * p.dv_row_stride + x] = av[x];
    }
  }
}

// The registered entry points: each picks T from p.dtype.
void attention_forward_kernel(const backend::AttentionForwardParams& p);
void attention_backward_kernel(const backend::AttentionBackwardParams& p);
void attention_merge_forward_kernel(const backend::AttentionMergeParams& p);
void attention_merge_backward_kernel(const backend::AttentionMergeBackwardParams& p);
void attention_add_rows_kernel(const backend::AttentionAddRowsParams& p);

}  // namespace strand::cpu
