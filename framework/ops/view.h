// Views and copies that record gradients: reshape, transpose, permute, slice, expand,
// (un)squeeze, contiguous, clone, and dtype casts.
#pragma once
#include "framework/core/tensor.h"

namespace strand::ops {

// One axis may be -1 (inferred). A view when the strides allow it, else a copy.
Tensor reshape(const Tensor& x, Shape shape);
Tensor transpose(const Tensor& x, int64_t a0, int64_t a1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& order);
// Elements start, start+step, ... below end along axis (a view).
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step = 1);
// Broadcasts size-1 axes to shape (a view with stride 0).
Tensor expand(const Tensor& x, const Shape& shape);
Tensor unsqueeze(const Tensor& x, int64_t axis);
Tensor squeeze(const Tensor& x, int64_t axis);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
// A copy in another dtype; the gradient is cast back.
Tensor to_dtype(const Tensor& x, DType dtype);

}  // namespace strand::ops
