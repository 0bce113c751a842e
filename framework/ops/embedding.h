// Embedding lookup (gather) with a scatter-add backward into the table.
#pragma once
#include "framework/core/tensor.h"

namespace strand::ops {

// table [V, C], ids int32 of any shape -> [..., C]. An id outside [0, V) is a ValueError naming it.
Tensor embedding(const Tensor& table, const Tensor& ids);

}  // namespace strand::ops
