// The segment step of docs/attention.md: attention of one q block against one k/v block at given
// global positions, its backward, the exact merge and the row adds, each laid out as the
// device-neutral kernel parameters (framework/backend/attention.h) and launched on the tensors'
// device. Also the input checks and the dtype and scale rules every attention path shares.
#include <cmath>

#include "framework/autograd/grad_mode.h"
#include "framework/backend/registry.h"
#include "framework/ops/attention_contract.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

void set_strides(const Tensor& t, int64_t& batch, int64_t& head, int64_t& row) {
  batch = t.strides()[0];
  head = t.strides()[1];
  row = t.strides()[2];
}

backend::AttentionParams make_params(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                     double scale, const Tensor& o, const Tensor& lse) {
  backend::AttentionParams p;
  p.device = q.device();
  p.dtype = q.dtype();
  p.q = q.raw_data();
  p.k = k.raw_data();
  p.v = v.raw_data();
  set_strides(q, p.q_batch_stride, p.q_head_stride, p.q_row_stride);
  set_strides(k, p.k_batch_stride, p.k_head_stride, p.k_row_stride);
  set_strides(v, p.v_batch_stride, p.v_head_stride, p.v_row_stride);
  p.batch = q.shape()[0];
  p.q_heads = q.shape()[1];
  p.q_len = q.shape()[2];
  p.head_dim = q.shape()[3];
  p.kv_heads = k.shape()[1];
  p.k_len = k.shape()[2];
  p.scale = scale;
  p.mask = &mask;
  p.o = o.raw_data();
  set_strides(o, p.o_batch_stride, p.o_head_stride, p.o_row_stride);
  p.lse = lse.raw_data();
  p.lse_batch_stride = lse.strides()[0];
  p.lse_head_stride = lse.strides()[1];
  return p;
}

// The rows of a [B, H, n, D] (or [B, H, n]) view as the merge kernels read them: B * H blocks of
// n rows, which needs the batch stride to be H head strides (true of row views of a contiguous
// tensor, the only ones the attention paths merge).
backend::AttentionRows rows_of(const Tensor& t) {
  STRAND_CHECK(t.dim() == 3 || t.dim() == 4, ShapeError, "attention rows: expects [B, H, n, D] or [B, H, n], got ",
               shape_str(t.shape()));
  STRAND_CHECK(t.shape()[0] == 1 || t.strides()[0] == t.shape()[1] * t.strides()[1], ShapeError,
               "attention rows: batch and head axes of ", describe(t), " are not one block axis");
  STRAND_CHECK(t.dim() == 3 || t.strides()[3] == 1 || t.shape()[3] <= 1, ShapeError,
               "attention rows: the last axis of ", describe(t), " must have unit stride");
  return {t.raw_data(), t.strides()[1], t.strides()[2]};
}

}  // namespace

void check_attention_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  check_same_device(op, {&q, &k, &v});
  STRAND_CHECK(q.dtype() == DType::F32 || q.dtype() == DType::F64 || q.dtype() == DType::BF16, DTypeError, op,
               ": expects float32, float64 or bfloat16, got q ", describe(q));
  check_same_dtype(op, q, k);
  check_same_dtype(op, q, v);
  STRAND_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, ShapeError, op,
               ": q, k, v must be [B, H, N, D], got q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
               shape_str(v.shape()));
  STRAND_CHECK(k.shape() == v.shape(), ShapeError, op, ": k ", shape_str(k.shape()), " and v ", shape_str(v.shape()),
               " must have the same shape");
  STRAND_CHECK(k.shape()[0] == q.shape()[0], ShapeError, op, ": batch of q ", shape_str(q.shape()), " and k ",
               shape_str(k.shape()), " differ");
  STRAND_CHECK(k.shape()[3] == q.shape()[3], ShapeError, op, ": head dimension D of q ", shape_str(q.shape()),
               " and k ", shape_str(k.shape()), " differ");
  STRAND_CHECK(q.shape()[3] > 0, ShapeError, op, ": head dimension is 0 (q ", shape_str(q.shape()), ")");
  STRAND_CHECK(k.shape()[1] > 0 && q.shape()[1] % k.shape()[1] == 0, ShapeError, op, ": query heads Hq = ",
               q.shape()[1], " must be a multiple of kv heads Hkv = ", k.shape()[1], " (q ", shape_str(q.shape()),
               ", k ", shape_str(k.shape()), ")");
}

DType attention_compute_dtype(DType t) { return t == DType::BF16 ? DType::F32 : t; }

double attention_scale(double scale, int64_t head_dim) {
  return scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

Tensor attention_rows(const Tensor& t, int64_t first, int64_t count) {
  Shape shape = t.shape();
  shape[2] = count;
  return t.as_strided(shape, t.strides(), t.offset() + first * t.strides()[2]);
}

void attention_segment_forward(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                               double scale, const Tensor& o, const Tensor& lse) {
  if (int8_attention_enabled()) {
    attention_segment_forward_int8(q, k, v, mask, scale, o, lse);
    return;
  }
  backend::launch("attention_forward", backend::AttentionForwardParams{make_params(q, k, v, mask, scale, o, lse)});
}

void attention_segment_forward_int8(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                    double scale, const Tensor& o, const Tensor& lse, bool generic) {
  STRAND_CHECK(!autograd::grad_enabled(), AutogradError,
               "int8 attention is for inference: it has no backward (run it without gradients)");
  STRAND_CHECK(q.dtype() == DType::F32, DTypeError, "int8 attention: takes float32 q, k, v, got q ", describe(q));
  backend::AttentionInt8ForwardParams p{make_params(q, k, v, mask, scale, o, lse)};
  p.generic = generic;
  backend::launch("attention_forward_int8", p);
}

namespace {
thread_local bool int8_attention = false;
}  // namespace

Int8AttentionScope::Int8AttentionScope(bool on) : prev_(int8_attention) { int8_attention = on; }
Int8AttentionScope::~Int8AttentionScope() { int8_attention = prev_; }
bool int8_attention_enabled() { return int8_attention; }

void attention_segment_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                const Tensor& lse, const Tensor& d_o, const Tensor& d_lse, const MaskSpec& mask,
                                double scale, const SegmentGrads& grads) {
  // The kernel reads d_lse through lse's strides.
  STRAND_CHECK(!d_lse.defined() || d_lse.strides() == lse.strides(), ShapeError,
               "attention backward: d_lse ", describe(d_lse), " must be laid out like lse ", describe(lse));
  // Accumulated gradients are computed into scratch first: the kernel overwrites its outputs.
  auto target = [](const Tensor& dst, bool accumulate) {
    return accumulate ? Tensor::empty(dst.shape(), dst.dtype(), dst.device()) : dst;
  };
  const Tensor dq = target(grads.dq, grads.accumulate_dq);
  const Tensor dk = target(grads.dk, grads.accumulate_dkv);
  const Tensor dv = target(grads.dv, grads.accumulate_dkv);
  backend::AttentionBackwardParams p{make_params(q, k, v, mask, scale, o, lse)};
  p.d_o = d_o.raw_data();
  set_strides(d_o, p.do_batch_stride, p.do_head_stride, p.do_row_stride);
  p.d_lse = d_lse.defined() ? d_lse.raw_data() : nullptr;
  p.dq = dq.raw_data();
  p.dk = dk.raw_data();
  p.dv = dv.raw_data();
  set_strides(dq, p.dq_batch_stride, p.dq_head_stride, p.dq_row_stride);
  set_strides(dk, p.dk_batch_stride, p.dk_head_stride, p.dk_row_stride);
  set_strides(dv, p.dv_batch_stride, p.dv_head_stride, p.dv_row_stride);
  backend::launch("attention_backward", p);
  if (grads.accumulate_dq) attention_add_rows(grads.dq, dq);
  if (grads.accumulate_dkv) {
    attention_add_rows(grads.dk, dk);
    attention_add_rows(grads.dv, dv);
  }
}

void attention_merge(const Tensor& o1, const Tensor& lse1, const Tensor& o2, const Tensor& lse2, const Tensor& o,
                     const Tensor& lse) {
  backend::AttentionMergeParams p;
  p.device = o.device();
  p.dtype = o.dtype();
  p.outer = o.shape()[0] * o.shape()[1];
  p.rows = o.shape()[2];
  p.d = o.shape()[3];
  p.o1 = rows_of(o1);
  p.lse1 = rows_of(lse1);
  p.o2 = rows_of(o2);
  p.lse2 = rows_of(lse2);
  p.o = rows_of(o);
  p.lse = rows_of(lse);
  backend::launch("attention_merge_forward", p);
}

void attention_add_rows(const Tensor& dst, const Tensor& src) {
  backend::AttentionAddRowsParams p;
  p.device = dst.device();
  p.dtype = dst.dtype();
  p.outer = dst.shape()[0] * dst.shape()[1];
  p.rows = dst.shape()[2];
  p.d = dst.dim() > 3 ? dst.shape()[3] : 1;
  p.dst = rows_of(dst);
  p.src = rows_of(src);
  backend::launch("attention_add_rows", p);
}

}  // namespace strand::ops
