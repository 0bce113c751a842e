// CPU kernels of the fused cross-entropy: per row, one pass over the logits gives the max, the
// log-sum-exp and the target logit; the backward writes softmax - onehot in one pass. No [N, V]
// log-softmax buffer is ever made.
#pragma once
#include <cstdint>

#include "framework/backend/cross_entropy.h"

namespace strand::cpu {

// Position of the first target that is neither ignore_index nor in [0, V), or -1.
int64_t first_target_out_of_range(const int32_t* targets, int64_t n, int64_t V, int32_t ignore_index);

// logits: row r at logits + r * ld, V unit-stride values. For each row whose target is not
// ignore_index: lse[r] = log sum_j exp(logits[r, j]) and row_loss[r] = lse[r] - logits[r, target];
// ignored rows get lse[r] = 0 and row_loss[r] = 0. Targets are in range (the op checks).
template <class T>
void cross_entropy_forward(const T* logits, int64_t ld, int64_t N, int64_t V, const int32_t* targets,
                           int32_t ignore_index, T* lse, double* row_loss);

// dlogits [N, V] contiguous: (exp(logits - lse) - onehot(target)) * scale per row, zero rows where
// the target is ignore_index. scale is the incoming gradient over the count of targets.
template <class T>
void cross_entropy_backward(const T* logits, int64_t ld, int64_t N, int64_t V, const int32_t* targets,
                            int32_t ignore_index, const T* lse, double scale, T* dlogits);

// The family entry registered with the device seam (backend/cross_entropy.h).
void cross_entropy(const backend::CrossEntropyParams& p);

}  // namespace strand::cpu
