// Fused attention op (local: the whole sequence is one segment step) and its backward node, the
// (o, lse) merge op and the dense mask builder. The kernels are reached through the segment step
// (attention_segment.cpp) and the device seam; this file hands bfloat16 inputs to the kernels as
// they are (o, lse and the gradients come back float32), rounds o and the gradients back to
// bfloat16 and records the graph.
#include "framework/ops/attention.h"

#include "framework/autograd/node.h"
#include "framework/backend/registry.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

// The tensor the kernel reads, in dtype dt (a copy when t is another dtype or D is not
// unit-stride). q, k, v and d_o go to the kernel in their own dtype (bfloat16 ones too: the
// kernels read bf16 and compute with float32 accumulation); o goes in the compute dtype.
Tensor kernel_input(const Tensor& t, DType dt) {
  if (t.dtype() != dt) return t.copy_as(dt, t.device());
  return t.strides()[3] == 1 || t.shape()[3] <= 1 ? t : t.copy_as(t.dtype(), t.device());
}

// The contiguous rows of merge_attention's [..., D] operands as [1, 1, rows, D] (lse: [1, 1, rows]).
Tensor as_rows(const Tensor& t, int64_t rows, bool with_d) {
  const Shape shape = with_d ? Shape{1, 1, rows, t.shape().back()} : Shape{1, 1, rows};
  return t.as_strided(shape, contiguous_strides(shape), t.offset());
}

struct AttentionBackward final : Node {
  MaskSpec mask;
  double scale;
  DType dtype;  // of q, k, v
  AttentionBackward(MaskSpec m, double s, DType dt) : Node("attention"), mask(std::move(m)), scale(s), dtype(dt) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor q = kernel_input(saved(0), dtype), k = kernel_input(saved(1), dtype), v = kernel_input(saved(2), dtype);
    const DType ct = attention_compute_dtype(dtype);
    Tensor o = kernel_input(saved(3), ct), lse = contiguous_data(saved(4));
    Tensor d_o = kernel_input(g[0], dtype), d_lse = contiguous_data(g[1]);
    Tensor dq = Tensor::empty(q.shape(), ct), dk = Tensor::empty(k.shape(), ct), dv = Tensor::empty(v.shape(), ct);
    attention_segment_backward(q, k, v, o, lse, d_o, d_lse, mask, scale, {dq, dk, dv});
    if (dtype == ct) return {dq, dk, dv};
    return {dq.copy_as(dtype, dq.device()), dk.copy_as(dtype, dk.device()), dv.copy_as(dtype, dv.device())};
  }
};

struct MergeBackward final : Node {
  MergeBackward() : Node("merge_attention") {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor o1 = saved(0), lse1 = saved(1), o2 = saved(2), lse2 = saved(3), o = saved(4), lse = saved(5);
    Tensor go = contiguous_data(g[0]), glse = contiguous_data(g[1]);
    auto like = [](const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); };
    Tensor go1 = like(o1), go2 = like(o2), glse1 = like(lse1), glse2 = like(lse2);
    const int64_t d = o.shape().back(), rows = lse.numel();
    // All contiguous: one block of `rows` rows, of width d (o-shaped) or 1 (lse-shaped).
    auto o_rows = [d](const Tensor& t) { return backend::AttentionRows{t.raw_data(), 0, d}; };
    auto lse_rows = [](const Tensor& t) { return backend::AttentionRows{t.raw_data(), 0, 1}; };
    backend::AttentionMergeBackwardParams p{o.device(), o.dtype(), 1, rows, d,
                                            o_rows(o1), lse_rows(lse1), o_rows(o2), lse_rows(lse2),
                                            o_rows(o), lse_rows(lse), o_rows(go), lse_rows(glse),
                                            o_rows(go1), lse_rows(glse1), o_rows(go2), lse_rows(glse2)};
    backend::launch("attention_merge_backward", p);
    return {go1, glse1, go2, glse2};
  }
};

}  // namespace

AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask, double scale) {
  const char* op = "attention";
  check_attention_inputs(op, q, k, v);
  const int64_t batch = q.shape()[0], q_len = q.shape()[2], k_len = k.shape()[2], d = q.shape()[3];
  const MaskPlan validated(mask, batch, q_len, k_len, op);  // throws on a bad spec before any kernel runs
  const double s = attention_scale(scale, d);

  Tensor qk = kernel_input(q, q.dtype()), kk = kernel_input(k, q.dtype()), vk = kernel_input(v, q.dtype());
  const DType ct = attention_compute_dtype(q.dtype());
  Tensor o = Tensor::empty(q.shape(), ct);
  Tensor lse = Tensor::empty({batch, q.shape()[1], q_len}, ct);
  attention_segment_forward(qk, kk, vk, mask, s, o, lse);
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
  check_same_device(op, {&o1, &lse1, &o2, &lse2});
  check_float(op, o1);
  for (const Tensor* t : {&lse1, &o2, &lse2}) check_same_dtype(op, o1, *t);
  STRAND_CHECK(o1.dim() >= 1 && o1.shape() == o2.shape(), ShapeError, op, ": o1 ", shape_str(o1.shape()),
               " and o2 ", shape_str(o2.shape()), " must have the same shape");
  const Shape rows_shape(o1.shape().begin(), o1.shape().end() - 1);
  STRAND_CHECK(lse1.shape() == rows_shape && lse2.shape() == rows_shape, ShapeError, op, ": lse1 ",
               shape_str(lse1.shape()), " and lse2 ", shape_str(lse2.shape()), " must be o's shape without D, ",
               shape_str(rows_shape));
  Tensor a = contiguous_data(o1), la = contiguous_data(lse1), b = contiguous_data(o2), lb = contiguous_data(lse2);
  Tensor o = Tensor::empty(o1.shape(), o1.dtype(), o1.device()), lse = Tensor::empty(rows_shape, o1.dtype(), o1.device());
  const int64_t rows = lse.numel();
  attention_merge(as_rows(a, rows, true), as_rows(la, rows, false), as_rows(b, rows, true), as_rows(lb, rows, false),
                  as_rows(o, rows, true), as_rows(lse, rows, false));
  if (auto n = autograd::make_node<MergeBackward>({&o1, &lse1, &o2, &lse2})) {
    for (const Tensor& t : {a, la, b, lb, o, lse}) n->save(t);
    autograd::set_history(n, {&o, &lse});
  }
  return {o, lse};
}

Tensor dense_mask(const MaskSpec& mask, int64_t batch, int64_t q_len, int64_t k_len) {
  const MaskPlan plan(mask, batch, q_len, k_len, "dense_mask");
  Tensor m = Tensor::empty({batch, 1, q_len, k_len}, DType::I32);
  int32_t* out = m.data<int32_t>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < q_len; ++i)
      for (int64_t j = 0; j < k_len; ++j)
        out[(b * q_len + i) * k_len + j] = plan.attends(b, mask.q_offset + i, mask.k_offset + j) ? 1 : 0;
  return m;
}

int64_t attended_pairs(const MaskSpec& mask, int64_t batch, int64_t q_len, int64_t k_len) {
  const MaskPlan plan(mask, batch, q_len, k_len, "attended_pairs");
  int64_t pairs = 0;
  for (int64_t b = 0; b < batch; ++b) pairs += plan.count_pairs(b);
  return pairs;
}

}  // namespace strand::ops
