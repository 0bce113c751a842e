// concat, split and stack along an axis.
#pragma once
#include <vector>

#include "framework/core/tensor.h"

namespace strand::ops {

Tensor concat(const std::vector<Tensor>& xs, int64_t axis);
// Pieces of the given sizes along axis (their sum must equal the axis length).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis);
Tensor stack(const std::vector<Tensor>& xs, int64_t axis);

}  // namespace strand::ops
