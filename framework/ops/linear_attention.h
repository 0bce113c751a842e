// Performer linear attention (FAVOR+ positive random features): an O(N) approximation of
// softmax attention, non-causal or causal, with a hand-written backward.
#pragma once
#include <cstdint>

#include "framework/core/tensor.h"

namespace strand::ops {

// Choromanski et al., "Rethinking Attention with Performers". With s = 1/sqrt(D),
// x' = x * s^(1/2) and phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(M):
//   out_i = phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j)),
// the sums over all j (causal = false) or over j <= i (causal = true, prefix sums).
// q [B, Hq, Nq, D]; k [B, Hkv, Nk, D]; v [B, Hkv, Nk, Dv] with Hq a multiple of Hkv (query head h
// reads kv head h / (Hq / Hkv)); projection [M, D]. Causal needs Nq == Nk. Returns [B, Hq, Nq, Dv].
// Differentiable with respect to q, k and v; the projection is a fixed input and must not
// require grad. Memory is O(N * M) per head, never N x N.
Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& projection,
                        bool causal = false);

// The random projection W [M, D]: rows drawn i.i.d. from N(0, I) by the Philox stream of `seed`
// (plain Gaussian features, not orthogonalised). Same (M, D, seed) gives the same matrix.
Tensor performer_projection(int64_t features, int64_t head_dim, uint64_t seed, DType dtype = DType::F32);

}  // namespace strand::ops
