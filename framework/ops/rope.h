// Rotary position embedding (RoPE, GPT-NeoX / LLaMA half-rotation convention) with explicit
// global position ids, so a sequence shard rotates its tokens by where they sit in the sequence.
#pragma once
#include "framework/core/tensor.h"

namespace strand::ops {

// x [B, H, N, D] with D even, any strides (a [B, N, H, D] projection transposed to [B, H, N, D]
// is read in place); positions int32 [N] (shared by every batch row) or [B, N], each >= 0.
// Pairs element i with element i + D/2 (rotate_half) and rotates the pair by angle
// pos * base^(-2i/D). Returns a contiguous [B, H, N, D] tensor of x's dtype (float32 or float64).
// Differentiable in x; the backward is the inverse rotation. positions get no gradient.
Tensor rope(const Tensor& x, const Tensor& positions, double base = 10000.0);

}  // namespace strand::ops
