// The LM head and cross-entropy fused over chunks of rows, so the [N, V] logits never exist.
#pragma once
#include "framework/core/tensor.h"
#include "framework/ops/loss.h"

namespace strand::ops {

struct ChunkedLoss {
  Tensor loss;         // scalar, differentiable in h and weight
  Tensor predictions;  // int32 [N]: argmax of each row's logits (no gradient)
};

// loss = cross_entropy(h @ weight^T, targets) for h [N, C], weight [V, C], targets int32 [N],
// computed chunk_rows rows at a time: the forward keeps only the per-row log-sum-exp, the backward
// recomputes each chunk's logits and produces dh and dweight. Peak extra memory is two
// [chunk_rows, V] buffers (and one [V, C] partial for dweight), whatever N is.
// Per row the values are those of the unchunked path; dweight sums its chunks in order (so it is
// deterministic, but not bitwise the single GEMM's sum over all N rows).
ChunkedLoss chunked_cross_entropy(const Tensor& h, const Tensor& weight, const Tensor& targets, int64_t chunk_rows,
                                  int32_t ignore_index = -100, Reduction reduction = Reduction::Mean);

// The distillation term of a student against a frozen teacher, over the same rows:
// sum over scored rows r of T^2 KL(softmax(t_r / T) || softmax(s_r / T)), with student logits
// s = h @ weight^T (h [N, C], weight [V, C]) and teacher logits t = teacher_h @ teacher_weight^T
// (teacher_h [N, Ct], teacher_weight [V, Ct]: the widths may differ, the vocabulary may not);
// divided by the scored rows with Mean. Rows whose target is ignore_index are not scored, as in
// chunked_cross_entropy. Chunked the same way: the forward keeps two log-sum-exps per row, the
// backward recomputes both chunks of logits; gradients flow to h and weight only (the teacher
// is frozen).
Tensor chunked_distill_loss(const Tensor& h, const Tensor& weight, const Tensor& teacher_h,
                            const Tensor& teacher_weight, const Tensor& targets, double temperature,
                            int64_t chunk_rows, int32_t ignore_index = -100, Reduction reduction = Reduction::Mean);

// Rows per chunk so that one chunk of logits takes about target_bytes (at least 1 row).
int64_t auto_chunk_rows(int64_t vocab, DType dtype, int64_t target_bytes = int64_t{64} << 20);

}  // namespace strand::ops
