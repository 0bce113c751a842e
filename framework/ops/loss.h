// Fused cross-entropy over logits (log-softmax and NLL in one pass) with an ignore index.
#pragma once
#include "framework/core/tensor.h"

namespace strand::ops {

enum class Reduction { Mean, Sum };

// logits [N, V], targets int32 [N]. Targets equal to ignore_index contribute nothing; Mean
// divides by the number of targets not ignored (0 when all are ignored). Returns a scalar.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index = -100,
                     Reduction reduction = Reduction::Mean);

}  // namespace strand::ops
