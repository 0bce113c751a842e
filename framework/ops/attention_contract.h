// The attention contract every attention path above the kernels shares (local, ring, Ulysses,
// hybrid): the mask spec and its plan, the (o, lse) result, the input checks, the compute-dtype
// and default-scale rules, and the segment step (one q block against one k/v block at given
// global positions -> o, lse; its backward; the exact merge) that they are all built from.
// Data-level: nothing here records a graph. Contract: docs/attention.md.
#pragma once
#include <cstdint>

#include "framework/backend/attention_mask.h"
#include "framework/core/tensor.h"

namespace strand::ops {

struct AttentionOutput {
  Tensor o;    // [B, Hq, Nq, D]
  Tensor lse;  // [B, Hq, Nq], log-sum-exp of the scaled, masked scores of each row
};

// q, k, v [B, H, N, D]: cpu (the one device with attention kernels so far), float32/float64/bfloat16, one dtype, k and v alike, equal B
// and D, Hq a multiple of Hkv; errors name `op` and the shapes.
void check_attention_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v);

// The dtype the kernels compute in (and o, lse come back in) for inputs of dtype t: float32 for
// bfloat16, else t.
DType attention_compute_dtype(DType t);
// The scale of q.k: `scale`, or 1/sqrt(head_dim) when scale <= 0.
double attention_scale(double scale, int64_t head_dim);

// Rows [first, first + count) along axis 2 of a [B, H, N, D] or [B, H, N] tensor, as a view.
Tensor attention_rows(const Tensor& t, int64_t first, int64_t count);

// The segment step: queries q [B, Hq, nq, D] against keys and values k, v [B, Hkv, nk, D] whose
// row 0 sits at global positions mask.q_offset and mask.k_offset of the sequence `mask`
// describes. Inputs in the compute dtype with unit stride along D (views, e.g. rows of a larger
// tensor, are read in place); writes o [B, Hq, nq, D] and lse [B, Hq, nq] (views too). The
// caller has validated `mask` (a MaskPlan over the whole sequence).
void attention_segment_forward(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                               double scale, const Tensor& o, const Tensor& lse);

// Inference with INT8 scores (eval, generate: `--attention-precision int8`): while an
// Int8AttentionScope is alive on this thread, attention_segment_forward takes Q . K^T in INT8
// (Note [INT8 scores], backend/cpu/attention_int8.cpp), on every attention path (local, ring,
// Ulysses). Forward only: with gradients recording it is an error. float32 inputs only.
class Int8AttentionScope {
 public:
  explicit Int8AttentionScope(bool on = true);
  ~Int8AttentionScope();
  Int8AttentionScope(const Int8AttentionScope&) = delete;
  Int8AttentionScope& operator=(const Int8AttentionScope&) = delete;

 private:
  bool prev_;
};
bool int8_attention_enabled();
// The INT8 forward itself, whatever the scope says; `generic` forces the portable integer path.
void attention_segment_forward_int8(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                    double scale, const Tensor& o, const Tensor& lse, bool generic = false);

// Its backward, from the saved o, lse and the incoming d_o (laid out like o) and d_lse (laid out
// like lse; undefined = zero). `accumulate` false: dq, dk, dv are overwritten; true: the step's
// gradients are added into them (a ring adds one key block's share after another).
struct SegmentGrads {
  Tensor dq, dk, dv;      // [B, Hq, nq, D], [B, Hkv, nk, D] x 2: views, unit stride along D
  bool accumulate_dq = false;
  bool accumulate_dkv = false;
};
void attention_segment_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                const Tensor& lse, const Tensor& d_o, const Tensor& d_lse, const MaskSpec& mask,
                                double scale, const SegmentGrads& grads);

// The exact merge of two partial results over disjoint key sets of the same queries into (o, lse):
// the one merge of merge_attention and the ring. [B, H, n, D] and [B, H, n] views of equal sizes;
// o may be o1 and lse lse1 (merging a partial into a running result in place).
void attention_merge(const Tensor& o1, const Tensor& lse1, const Tensor& o2, const Tensor& lse2, const Tensor& o,
                     const Tensor& lse);

// dst += src, for rows of [B, H, n, D] tensors (views, unit stride along D).
void attention_add_rows(const Tensor& dst, const Tensor& src);

}  // namespace strand::ops
