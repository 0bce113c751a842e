// CPU kernels of the materialised-scores attention used as a test oracle: every score row is
// computed in full, in double, with no tiling. Plain pointers; no Tensor here.
#pragma once
#include <cstdint>

namespace strand::cpu {

struct AttentionRefParams {
  int64_t B = 0;       // batch
  int64_t Hq = 0;      // query heads
  int64_t Hkv = 0;     // key/value heads; query head h reads kv head h / (Hq / Hkv)
  int64_t Nq = 0;      // query rows
  int64_t Nk = 0;      // key rows
  int64_t D = 0;       // head dimension
  double scale = 1.0;  // scores are scale * q . k
  // int32 mask read at mask[b*mask_strides[0] + h*mask_strides[1] + i*mask_strides[2] +
  // j*mask_strides[3]] for query head h; nonzero = attend, stride 0 on broadcast axes. Null =
  // attend everywhere.
  const int32_t* mask = nullptr;
  int64_t mask_strides[4] = {0, 0, 0, 0};
};

// q, o [B, Hq, Nq, D], k, v [B, Hkv, Nk, D], lse [B, Hq, Nq], all contiguous. A row with no key
// to attend gets o = 0 and lse = -inf.
template <class T>
void attention_reference_forward(const AttentionRefParams& p, const T* q, const T* k, const T* v, T* o, T* lse);

// Gradients of q, k, v given dout [B, Hq, Nq, D] (of o) and dlse [B, Hq, Nq] (of lse), with o and
// lse from the forward. dq, dk, dv are overwritten. Rows with lse = -inf contribute nothing.
// dq is computed per query row and dk, dv per key row (summing over the query heads that share
// the kv head), so no two threads write one value and results do not depend on thread count.
template <class T>
void attention_reference_backward(const AttentionRefParams& p, const T* q, const T* k, const T* v, const T* o,
                                  const T* lse, const T* dout, const T* dlse, T* dq, T* dk, T* dv);

}  // namespace strand::cpu
