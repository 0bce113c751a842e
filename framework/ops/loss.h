// Fused cross-entropy over logits (log-softmax and NLL in one pass) with an ignore index.
#pragma once
#include <string>

#include "framework/core/tensor.h"

namespace strand::ops {

enum class Reduction { Mean, Sum };

// logits [N, V], targets int32 [N]. Targets equal to ignore_index contribute nothing; Mean
// divides by the number of targets not ignored (0 when all are ignored). Returns a scalar.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index = -100,
                     Reduction reduction = Reduction::Mean);

// The targets' check that both cross-entropy ops make before computing: every target of the
// contiguous int32 `targets` [N] lies in [0, V) or equals ignore_index (a ValueError naming
// `op`, the row and the target otherwise, `context` appended). Returns the targets not
// ignored, the divisor of a Mean.
int64_t checked_target_count(const Tensor& targets, int64_t V, int32_t ignore_index, DType dtype,
                             const std::string& op, const std::string& context = "");

}  // namespace strand::ops
