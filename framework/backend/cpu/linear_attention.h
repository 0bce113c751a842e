// CPU kernels of Performer linear attention (FAVOR+ positive random features), forward and
// backward, non-causal and causal. Plain pointers and sizes; no Tensor here.
#pragma once
#include <cstdint>

namespace strand::cpu {

// Sizes of one linear-attention call. Every buffer is contiguous, row-major:
//   q    [batch, q_heads, q_len, head_dim]
//   k    [batch, kv_heads, kv_len, head_dim]
//   v    [batch, kv_heads, kv_len, value_dim]
//   w    [features, head_dim]            the random projection, rows ~ N(0, I)
//   out  [batch, q_heads, q_len, value_dim]
//   den  [batch, q_heads, q_len]         the stabilised normaliser phi(q_i)^T sum_j phi(k_j)
struct LinearAttentionParams {
  int64_t batch = 0;
  int64_t q_heads = 0;   // a multiple of kv_heads; query head h reads kv head h / (q_heads / kv_heads)
  int64_t kv_heads = 0;
  int64_t q_len = 0;
  int64_t kv_len = 0;    // equal to q_len when causal
  int64_t head_dim = 0;  // D: q and k are scaled by D^(-1/4) each, so q'.k' = q.k / sqrt(D)
  int64_t value_dim = 0;
  int64_t features = 0;  // M random features
  bool causal = false;   // query i sums over keys j <= i only
};

// out and den from q, k, v and the projection w (den is kept for the backward).
template <class T>
void linear_attention_forward(const LinearAttentionParams& p, const T* q, const T* k, const T* v, const T* w,
                              T* out, T* den);

// dq, dk, dv (overwritten) from the upstream gradient dout and the forward's out and den.
template <class T>
void linear_attention_backward(const LinearAttentionParams& p, const T* q, const T* k, const T* v, const T* w,
                               const T* out, const T* den, const T* dout, T* dq, T* dk, T* dv);

}  // namespace strand::cpu
