// Dropout from the counter-based Philox stream: the mask of element i depends only on (seed, i),
// so it is the same on every run, rank and thread count.
#pragma once
#include "framework/core/tensor.h"

namespace strand::ops {

// Zeroes each element with probability p and scales the rest by 1/(1-p). `offset` shifts the
// counter (e.g. the global position of a sequence shard) so shards draw disjoint masks.
Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset = 0);

}  // namespace strand::ops
