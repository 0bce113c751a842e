// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): the L2 norm over every
// gradient together, in double.
#pragma once
#include <vector>

#include "framework/core/tensor.h"

namespace strand::optim {

// sqrt(sum over params of sum(grad^2)), computed in double; parameters without a gradient
// count as zero. Deterministic for any thread count.
double grad_norm(const std::vector<Tensor>& params);

// sum(t^2) over every element of a float tensor, accumulated in double: infinite or NaN exactly
// when t holds an infinite or NaN element (a float32 squared cannot overflow a double). 0 for an
// undefined or empty tensor.
double sum_of_squares(const Tensor& t);

// When the total norm exceeds max_norm, scales every gradient in place by
// max_norm / (norm + 1e-6) (PyTorch's coefficient). Returns the norm before clipping. A
// non-finite norm is returned as is and leaves the gradients untouched, so that the caller
// (the loss scaler) can skip the step. max_norm must be > 0 (ValueError).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace strand::optim
