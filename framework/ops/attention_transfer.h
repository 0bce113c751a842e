// MiniLM's self-attention distribution transfer (Wang et al., 2020): per query row the KL
// divergence KL(A_teacher || A_student) of two models' attention distributions over the same
// keys, A = softmax(q k^T * scale + mask) per head, computed one key block at a time from each
// side's log-sum-exp (no N x N buffer), with a hand-written backward to the student's q and k.
#pragma once
#include <cstdint>
#include <vector>

#include "framework/backend/attention_mask.h"
#include "framework/core/tensor.h"
#include "framework/ops/attention_contract.h"
#include "framework/ops/loss.h"

namespace strand::ops {

// One model's heads at a layer as float64 values in row-major storage: q [B, H, q_rows, D],
// k [B, Hkv, Nk, D] (query head h reads key head h / (H / Hkv)). A call reads the query rows
// [row0, row0 + Nq) of each (b, h); the MaskPlan's q_offset is the global position of row row0.
struct AttentionHeadsView {
  const double* q = nullptr;
  const double* k = nullptr;
  int64_t B = 0, H = 0, Hkv = 0, D = 0, Nk = 0;
  int64_t q_rows = 0, row0 = 0, Nq = 0;
  double scale = 0.0;  // resolved (> 0)
};

// Per query row, laid out [B, H, q_rows] like the views' query rows: KL(A_t || A_s) and both
// lse. A row that sees no key keeps KL 0 and lse -inf.
struct AttentionTransferRows {
  std::vector<double> kl, lse_s, lse_t;
  explicit AttentionTransferRows(size_t rows = 0);
};

// Fills the rows [row0, row0 + Nq) of `rows` for student s and teacher t (equal B, H, Nq, Nk,
// q_rows and row0; D and Hkv free). One pass over key blocks of `block` keys keeps, per row,
// the running max and sums of both sides (KL = sum_j p_t,j s_t,j - lse_t - sum_j p_t,j s_s,j + lse_s).
void attention_transfer_rows(const AttentionHeadsView& s, const AttentionHeadsView& t, const MaskPlan& plan,
                             AttentionTransferRows& rows, int64_t block = 64);

// Adds g * d(sum of the rows' KL)/d q_s to dq ([B, H, q_rows, D_s], the same rows) and to dk
// ([B, Hkv_s, Nk, D_s]): dS_j = g (p_s,j - p_t,j), dq_i = scale sum_j dS_j k_j,
// dk_j = scale sum_i dS_j q_i, summed over the query heads that share a key head (GQA).
void attention_transfer_grads(const AttentionHeadsView& s, const AttentionHeadsView& t, const MaskPlan& plan,
                              const AttentionTransferRows& rows, double g, std::vector<double>& dq,
                              std::vector<double>& dk, int64_t block = 64);

// The loss of one layer pair: q_s [B, H, Nq, D_s], k_s [B, Hkv_s, Nk, D_s] (the student's),
// q_t [B, H, Nq, D_t], k_t [B, Hkv_t, Nk, D_t] (the teacher's, which gets no gradient). Both
// sides are scored under `mask` (any MaskSpec the attention kernel takes, offsets included) at
// their own scale (<= 0: 1 / sqrt(D)). Mean: over (b, h, query row); Sum: summed. The head
// counts H must be equal (a ShapeError naming both otherwise): MiniLM compares head by head.
// A scalar of q_s's dtype, differentiable in q_s and k_s (float64 arithmetic throughout).
Tensor attention_transfer_loss(const Tensor& q_s, const Tensor& k_s, const Tensor& q_t, const Tensor& k_t,
                               const MaskSpec& mask = {}, Reduction reduction = Reduction::Mean, double scale_s = 0.0,
                               double scale_t = 0.0, int64_t block = 64);

// Checks that q [B, H, Nq, D] and k [B, Hkv, Nk, D] fit together (ShapeError naming `op` and
// `side` otherwise).
void check_attention_heads(const char* op, const char* side, const Tensor& q, const Tensor& k);
// The head-count rule of the transfer: equal query heads and batch, rows and keys of both sides.
void check_transfer_pair(const char* op, const Tensor& q_s, const Tensor& k_s, const Tensor& q_t, const Tensor& k_t);

}  // namespace strand::ops
