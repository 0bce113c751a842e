// Laying out the attention kernels' AttentionParams from tensors, and the input checks of every
// op that calls them (ops::attention here, ring attention in parallel/).
#pragma once
#include "framework/backend/cpu/attention_params.h"
#include "framework/core/tensor.h"

namespace strand::ops {

// q, k, v [B, H, N, D]: cpu, float32/float64/bfloat16, one dtype, k and v alike, equal B and D,
// Hq a multiple of Hkv; errors name `op` and the shapes.
void check_attention_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v);

// Inputs, sizes, scale and mask (which must outlive the params).
cpu::AttentionParams make_attention_params(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec* mask,
                                           double scale);
// The forward's outputs, which the backward reads too.
void set_attention_outputs(cpu::AttentionParams& p, const Tensor& o, const Tensor& lse);
// The backward's incoming gradients and its outputs.
void set_attention_grads(cpu::AttentionParams& p, const Tensor& d_o, const Tensor& d_lse, const Tensor& dq,
                         const Tensor& dk, const Tensor& dv);

}  // namespace strand::ops
