// Reductions over axes: sum, mean, max (values), and sum_to (the adjoint of broadcasting).
#pragma once
#include <vector>

#include "framework/core/tensor.h"

namespace strand::ops {

// Empty axes reduce over every axis. Negative axes count from the end.
Tensor sum(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
// Maximum over the axes; the gradient goes to the first position attaining it.
Tensor max(const Tensor& x, const std::vector<int64_t>& axes = {}, bool keepdim = false);
// The first position attaining the maximum along `axis`, as int32, that axis removed; no gradient.
Tensor argmax(const Tensor& x, int64_t axis = -1);
// Sums a broadcast result back to `shape` (the gradient of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace strand::ops
