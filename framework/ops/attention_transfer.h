// MiniLM's self-attention distribution transfer (Wang et al., 2020): per query row the KL
// divergence KL(A_teacher || A_student) of two models' attention distributions over the same
// keys, A = softmax(q k^T * scale + mask) per head (or, when the head counts differ, averaged over
// each side's heads), computed one key block at a time from each side's log-sum-exp (no N x N
// buffer), with a hand-written backward to the student's q and k; optionally over a sample of
// the query rows (RowSample, attention_rows.h).
#pragma once
#include <cstdint>
#include <vector>

#include "framework/backend/attention_mask.h"
#include "framework/core/tensor.h"
#include "framework/ops/attention_contract.h"
#include "framework/ops/attention_rows.h"
#include "framework/ops/loss.h"

namespace strand::ops {

// One model's heads at a layer as float64 values in row-major storage: q [B, H, q_rows, D],
// k [B, Hkv, Nk, D] (query head h reads key head h / (H / Hkv)). A call reads the query rows
// [row0, row0 + Nq) of each (b, h); the MaskPlan's q_offset is the global position of row row0.
// keep ([B, q_rows], read from the student's view) skips the rows it holds 0 for; null scores all.
struct AttentionHeadsView {
  const double* q = nullptr;
  const double* k = nullptr;
  int64_t B = 0, H = 0, Hkv = 0, D = 0, Nk = 0;
  int64_t q_rows = 0, row0 = 0, Nq = 0;
  double scale = 0.0;  // resolved (> 0)
  const uint8_t* keep = nullptr;
};

// True when the two sides' query-head counts differ: the transfer then compares, per query row,
// the head-averaged distributions A_bar = (1/H) sum_h A_h of each side (MiniLM's heads
// one to one need equal counts).
inline bool heads_averaged(const AttentionHeadsView& s, const AttentionHeadsView& t) { return s.H != t.H; }

// Per query row: KL(A_t || A_s) laid out [B, H, q_rows] like the views' query rows (equal head
// counts) or [B, q_rows] (heads averaged), and each side's lse per head, [B, H_s, q_rows] and
// [B, H_t, q_rows]. A row that sees no key, or that the sample skips, keeps KL 0 and lse -inf.
struct AttentionTransferRows {
  std::vector<double> kl, lse_s, lse_t;
  explicit AttentionTransferRows(size_t rows = 0);
  AttentionTransferRows(const AttentionHeadsView& s, const AttentionHeadsView& t);  // sized for the pair
};

// Fills the rows [row0, row0 + Nq) of `rows` for student s and teacher t (equal B, Nq, Nk, q_rows
// and row0; D and Hkv free; H free too, see heads_averaged). Equal head counts: one pass over key
// blocks of `block` keys keeps, per row, the running max and sums of both sides
// (KL = sum_j p_t,j s_t,j - lse_t - sum_j p_t,j s_s,j + lse_s). Averaged heads: a first pass
// finds every head's lse, a second sums sum_j p_bar_j (log p_bar_j - log q_bar_j) block by block
// (both averages are already normalised, so the second pass needs no online rescaling).
void attention_transfer_rows(const AttentionHeadsView& s, const AttentionHeadsView& t, const MaskPlan& plan,
                             AttentionTransferRows& rows, int64_t block = 64);

// Adds g * d(sum of the rows' KL)/d q_s to dq ([B, H, q_rows, D_s], the same rows) and to dk
// ([B, Hkv_s, Nk, D_s]). Equal head counts: dS_j = g (p_s,j - p_t,j), dq_i = scale sum_j dS_j k_j,
// dk_j = scale sum_i dS_j q_i, summed over the query heads that share a key head (GQA). Averaged
// heads: with r_j = p_bar_j / q_bar_j and c_h = sum_j r_j a_h,j (a_h the student's head h),
// dS_h,j = g (a_h,j / H_s) (c_h - r_j); one pass per row gives c and dq, one per key block dk.
void attention_transfer_grads(const AttentionHeadsView& s, const AttentionHeadsView& t, const MaskPlan& plan,
                              const AttentionTransferRows& rows, double g, std::vector<double>& dq,
                              std::vector<double>& dk, int64_t block = 64);

// The loss of one layer pair: q_s [B, H, Nq, D_s], k_s [B, Hkv_s, Nk, D_s] (the student's),
// q_t [B, H, Nq, D_t], k_t [B, Hkv_t, Nk, D_t] (the teacher's, which gets no gradient). Both
// sides are scored under `mask` (any MaskSpec the attention kernel takes, offsets included) at
// their own scale (<= 0: 1 / sqrt(D)). Equal head counts H_s = H_t compare head by head (MiniLM)
// and Mean averages over (b, h, query row); unequal counts compare the head-averaged
// distributions and Mean averages over (b, query row). Sum: summed. `sample` (rows > 0) scores
// that many of the Nq query rows per batch row, drawn by their global positions
// q_offset + i, and weighs the sum by Nq / rows (ValueError when rows > Nq). A scalar of q_s's
// dtype, differentiable in q_s and k_s (float64 arithmetic throughout).
Tensor attention_transfer_loss(const Tensor& q_s, const Tensor& k_s, const Tensor& q_t, const Tensor& k_t,
                               const MaskSpec& mask = {}, Reduction reduction = Reduction::Mean, double scale_s = 0.0,
                               double scale_t = 0.0, int64_t block = 64, const RowSample& sample = {});

// Checks that q [B, H, Nq, D] and k [B, Hkv, Nk, D] fit together (ShapeError naming `op` and
// `side` otherwise).
void check_attention_heads(const char* op, const char* side, const Tensor& q, const Tensor& k);
// The pairing rule of the transfer: equal batch, rows and keys of both sides (head counts free).
void check_transfer_pair(const char* op, const Tensor& q_s, const Tensor& k_s, const Tensor& q_t, const Tensor& k_t);

}  // namespace strand::ops
