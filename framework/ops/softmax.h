// Softmax and log-softmax over one axis (numerically stable), with hand-written backward.
#pragma once
#include "framework/core/tensor.h"

namespace strand::ops {

Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

}  // namespace strand::ops
