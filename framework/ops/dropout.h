// Dropout from the counter-based Philox stream: the mask of element i depends only on (seed, i),
// so it is the same on every run, rank and thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "framework/core/tensor.h"

namespace strand::ops {

// Zeroes each element with probability p and scales the rest by 1/(1-p). `offset` shifts the
// counter (e.g. the global position of a sequence shard) so shards draw disjoint masks.
Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset = 0);

// The same with one counter offset per row: x is read as [R, C] (C = its last axis, R the
// product of the others, in logical order) and element (r, c) draws counter row_offsets[r] + c.
// A sequence shard passes ((b * N + pos[t]) * C) for row (b, t) of a [B, T, C] activation, so
// each token draws the mask it draws in the unsharded [B, N, C] run (Note [Sharded dropout] in
// models/transformer.cpp). ShapeError when row_offsets.size() != R.
Tensor dropout(const Tensor& x, double p, uint64_t seed, std::vector<uint64_t> row_offsets);

}  // namespace strand::ops
