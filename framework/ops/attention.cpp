// Fused attention op and its backward node, the (o, lse) merge and the dense mask builder.
// The kernels live in framework/backend/cpu/attention_*.cpp; this file checks inputs, lays out
// AttentionParams, converts bfloat16 to float32 and back, and records the graph.
#include "framework/ops/attention.h"
#include "framework/ops/attention_args.h"

#include <cmath>

#include "framework/autograd/node.h"
#include "framework/backend/cpu/attention_mask.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

void set_strides(const Tensor& t, int64_t& batch, int64_t& head, int64_t& row) {
  batch = t.strides()[0];
  head = t.strides()[1];
  row = t.strides()[2];
}

}  // namespace


cpu::AttentionParams make_attention_params(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec* mask,
                                           double scale) {
  cpu::AttentionParams p;
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
  p.mask = mask;
  return p;
}

void set_attention_outputs(cpu::AttentionParams& p, const Tensor& o, const Tensor& lse) {
  p.o = o.raw_data();
  set_strides(o, p.o_batch_stride, p.o_head_stride, p.o_row_stride);
  p.lse = lse.raw_data();
  p.lse_batch_stride = lse.strides()[0];
  p.lse_head_stride = lse.strides()[1];
}

void check_attention_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  check_cpu(op, {&q, &k, &v});
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

void set_attention_grads(cpu::AttentionParams& p, const Tensor& d_o, const Tensor& d_lse, const Tensor& dq,
                         const Tensor& dk, const Tensor& dv) {
  p.d_o = d_o.raw_data();
  set_strides(d_o, p.do_batch_stride, p.do_head_stride, p.do_row_stride);
  p.d_lse = d_lse.raw_data();
  p.dq = dq.raw_data();
  p.dk = dk.raw_data();
  p.dv = dv.raw_data();
  set_strides(dq, p.dq_batch_stride, p.dq_head_stride, p.dq_row_stride);
  set_strides(dk, p.dk_batch_stride, p.dk_head_stride, p.dk_row_stride);
  set_strides(dv, p.dv_batch_stride, p.dv_head_stride, p.dv_row_stride);
}

namespace {


using autograd::Node;

// The tensor the kernel reads: float32 for bfloat16 inputs, and a copy when D is not unit-stride.
Tensor kernel_input(const Tensor& t) {
  if (t.dtype() == DType::BF16) return t.copy_as(DType::F32, t.device());
  return t.strides()[3] == 1 || t.shape()[3] <= 1 ? t : t.copy_as(t.dtype(), t.device());
}

struct AttentionBackward final : Node {
  MaskSpec mask;
  double scale;
  DType dtype;  // of q, k, v
  AttentionBackward(MaskSpec m, double s, DType dt) : Node("attention"), mask(std::move(m)), scale(s), dtype(dt) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor q = kernel_input(saved(0)), k = kernel_input(saved(1)), v = kernel_input(saved(2));
    Tensor o = kernel_input(saved(3)), lse = contiguous_data(saved(4));
    Tensor d_o = kernel_input(g[0]), d_lse = contiguous_data(g[1]);
    const DType ct = q.dtype();
    Tensor dq = Tensor::empty(q.shape(), ct), dk = Tensor::empty(k.shape(), ct), dv = Tensor::empty(v.shape(), ct);
    cpu::AttentionParams p = make_attention_params(q, k, v, &mask, scale);
    set_attention_outputs(p, o, lse);
    set_attention_grads(p, d_o, d_lse, dq, dk, dv);
    dispatch_float("attention backward", ct, [&]<class T>() { cpu::attention_backward<T>(p); });
    if (dtype == ct) return {dq, dk, dv};
    return {dq.copy_as(dtype, dq.device()), dk.copy_as(dtype, dk.device()), dv.copy_as(dtype, dv.device())};
  }
};

struct MergeBackward final : Node {
  MergeBackward() : Node("merge_attention") {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor o1 = saved(0), lse1 = saved(1), o2 = saved(2), lse2 = saved(3), o = saved(4), lse = saved(5);
    Tensor go = contiguous_data(g[0]), glse = contiguous_data(g[1]);
    Tensor go1 = Tensor::empty(o1.shape(), o1.dtype()), go2 = Tensor::empty(o2.shape(), o2.dtype());
    Tensor glse1 = Tensor::empty(lse1.shape(), lse1.dtype()), glse2 = Tensor::empty(lse2.shape(), lse2.dtype());
    const int64_t d = o.shape().back(), rows = lse.numel();
    dispatch_float("merge_attention backward", o.dtype(), [&]<class T>() {
      cpu::attention_merge_backward<T>(rows, d, o1.data<T>(), lse1.data<T>(), o2.data<T>(), lse2.data<T>(),
                                       o.data<T>(), lse.data<T>(), go.data<T>(), glse.data<T>(), go1.data<T>(),
                                       glse1.data<T>(), go2.data<T>(), glse2.data<T>());
    });
    return {go1, glse1, go2, glse2};
  }
};

}  // namespace

AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask, double scale) {
  const char* op = "attention";
  check_attention_inputs(op, q, k, v);
  const int64_t batch = q.shape()[0], q_len = q.shape()[2], k_len = k.shape()[2], d = q.shape()[3];
  const cpu::MaskPlan validated(mask, batch, q_len, k_len, op);  // throws on a bad spec before any kernel runs
  const double s = scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(d));

  Tensor qk = kernel_input(q), kk = kernel_input(k), vk = kernel_input(v);
  const DType ct = qk.dtype();
  Tensor o = Tensor::empty(q.shape(), ct);
  Tensor lse = Tensor::empty({batch, q.shape()[1], q_len}, ct);
  cpu::AttentionParams p = make_attention_params(qk, kk, vk, &mask, s);
  set_attention_outputs(p, o, lse);
  dispatch_float(op, ct, [&]<class T>() { cpu::attention_forward<T>(p); });
  // bfloat16: the float32 o is what the backward reads (Delta = rowsum(dO o O) from a rounded o
  // would cost the gradients 8 bits); the caller gets it rounded.
  Tensor o_out = q.dtype() == ct ? o : o.copy_as(q.dtype(), o.device());

  if (auto n = autograd::make_node<AttentionBackward>({&q, &k, &v}, mask, s, q.dtype())) {
    for (const Tensor& t : {q, k, v, o, lse}) n->save(t);
    autograd::set_history(n, {&o_out, &lse});
  }
  return {o_out, lse};
}

AttentionOutput merge_attention(const Tensor& o1, const Tensor& lse1, const Tensor& o2, const Tensor& lse2) {
  const char* op = "merge_attention";
  check_cpu(op, {&o1, &lse1, &o2, &lse2});
  check_float(op, o1);
  for (const Tensor* t : {&lse1, &o2, &lse2}) check_same_dtype(op, o1, *t);
  STRAND_CHECK(o1.dim() >= 1 && o1.shape() == o2.shape(), ShapeError, op, ": o1 ", shape_str(o1.shape()),
               " and o2 ", shape_str(o2.shape()), " must have the same shape");
  const Shape rows_shape(o1.shape().begin(), o1.shape().end() - 1);
  STRAND_CHECK(lse1.shape() == rows_shape && lse2.shape() == rows_shape, ShapeError, op, ": lse1 ",
               shape_str(lse1.shape()), " and lse2 ", shape_str(lse2.shape()), " must be o's shape without D, ",
               shape_str(rows_shape));
  Tensor a = contiguous_data(o1), la = contiguous_data(lse1), b = contiguous_data(o2), lb = contiguous_data(lse2);
  Tensor o = Tensor::empty(o1.shape(), o1.dtype()), lse = Tensor::empty(rows_shape, o1.dtype());
  const int64_t d = o1.shape().back(), rows = lse.numel();
  dispatch_float(op, o1.dtype(), [&]<class T>() {
    cpu::attention_merge_forward<T>(rows, d, a.data<T>(), la.data<T>(), b.data<T>(), lb.data<T>(), o.data<T>(),
                                    lse.data<T>());
  });
  if (auto n = autograd::make_node<MergeBackward>({&o1, &lse1, &o2, &lse2})) {
    for (const Tensor& t : {a, la, b, lb, o, lse}) n->save(t);
    autograd::set_history(n, {&o, &lse});
  }
  return {o, lse};
}

Tensor dense_mask(const MaskSpec& mask, int64_t batch, int64_t q_len, int64_t k_len) {
  const cpu::MaskPlan plan(mask, batch, q_len, k_len, "dense_mask");
  Tensor m = Tensor::empty({batch, 1, q_len, k_len}, DType::I32);
  int32_t* out = m.data<int32_t>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < q_len; ++i)
      for (int64_t j = 0; j < k_len; ++j)
        out[(b * q_len + i) * k_len + j] = plan.attends(b, mask.q_offset + i, mask.k_offset + j) ? 1 : 0;
  return m;
}

int64_t attended_pairs(const MaskSpec& mask, int64_t batch, int64_t q_len, int64_t k_len) {
  const cpu::MaskPlan plan(mask, batch, q_len, k_len, "attended_pairs");
  int64_t pairs = 0;
  for (int64_t b = 0; b < batch; ++b) pairs += plan.count_pairs(b);
  return pairs;
}

}  // namespace strand::ops
