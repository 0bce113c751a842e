// Materialised-scores attention (the test oracle): forward o and lse, hand-written backward
// through both outputs (ring attention merges partial results through lse, so its gradient counts).
#include "framework/ops/attention_reference.h"

#include "framework/autograd/node.h"
#include "framework/backend/registry.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

struct AttentionReferenceBackward final : Node {
  backend::AttentionReferenceParams params;  // sizes, scale, mask strides; pointers set at backward
  explicit AttentionReferenceBackward(const backend::AttentionReferenceParams& p)
      : Node("attention_reference"), params(p) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor q = saved(0), k = saved(1), v = saved(2), o = saved(3), lse = saved(4), mask = saved(5);
    backend::AttentionReferenceBackwardParams p{params};
    p.mask = mask.defined() ? mask.data<int32_t>() : nullptr;
    Tensor dout = contiguous_data(g[0]), dlse = contiguous_data(g[1]);
    Tensor dq = Tensor::empty(q.shape(), q.dtype(), q.device()), dk = Tensor::empty(k.shape(), k.dtype(), k.device()),
           dv = Tensor::empty(v.shape(), v.dtype(), v.device());
    p.q = q.raw_data();
    p.k = k.raw_data();
    p.v = v.raw_data();
    p.o = o.raw_data();
    p.lse = lse.raw_data();
    p.d_o = dout.raw_data();
    p.d_lse = dlse.raw_data();
    p.dq = dq.raw_data();
    p.dk = dk.raw_data();
    p.dv = dv.raw_data();
    backend::launch("attention_reference_backward", p);
    return {dq, dk, dv};
  }
};

// Strides reading mask as [B, Hq, Nq, Nk] (right-aligned broadcasting, 0 on broadcast axes).
void set_mask_strides(backend::AttentionReferenceParams& p, const Tensor& mask) {
  const Shape target = {p.B, p.Hq, p.Nq, p.Nk};
  const int64_t md = mask.dim();
  bool fits = md <= 4;
  for (int64_t d = 0; fits && d < 4; ++d) {
    const int64_t m = d - (4 - md);
    p.mask_strides[d] = 0;
    if (m < 0) continue;
    if (mask.shape()[m] == target[d]) p.mask_strides[d] = target[d] == 1 ? 0 : mask.strides()[m];
    else fits = mask.shape()[m] == 1;
  }
  STRAND_CHECK(fits, ShapeError, "attention_reference: mask ", shape_str(mask.shape()),
               " is not broadcastable to [B, Hq, Nq, Nk] = ", shape_str(target));
}

}  // namespace

AttentionOutput attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                    double scale) {
  const char* op = "attention_reference";
  check_same_device(op, {&q, &k, &v, &mask});
  check_float(op, q);
  check_same_dtype(op, q, k);
  check_same_dtype(op, q, v);
  STRAND_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, ShapeError, op,
               ": q, k, v must be [B, H, N, D], got q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
               shape_str(v.shape()));
  STRAND_CHECK(k.shape() == v.shape(), ShapeError, op, ": k ", shape_str(k.shape()), " and v ",
               shape_str(v.shape()), " must have the same shape");
  backend::AttentionReferenceForwardParams p;
  p.device = q.device();
  p.dtype = q.dtype();
  p.B = q.shape()[0];
  p.Hq = q.shape()[1];
  p.Nq = q.shape()[2];
  p.D = q.shape()[3];
  p.Hkv = k.shape()[1];
  p.Nk = k.shape()[2];
  STRAND_CHECK(k.shape()[0] == p.B && k.shape()[3] == p.D, ShapeError, op, ": q ", shape_str(q.shape()), " and k ",
               shape_str(k.shape()), " differ in batch or head dimension");
  STRAND_CHECK(p.Hkv > 0 && p.Hq % p.Hkv == 0, ShapeError, op, ": query heads ", p.Hq,
               " must be a multiple of kv heads ", p.Hkv, " (q ", shape_str(q.shape()), ", k ", shape_str(k.shape()),
               ")");
  STRAND_CHECK(p.D > 0, ShapeError, op, ": head dimension is 0 (q ", shape_str(q.shape()), ")");
  p.scale = attention_scale(scale, p.D);
  if (mask.defined()) {
    STRAND_CHECK(mask.dtype() == DType::I32, DTypeError, op, ": mask must be int32 (nonzero = attend), got ",
                 describe(mask));
    set_mask_strides(p, mask);
    p.mask = mask.data<int32_t>();
  }

  Tensor qc = contiguous_data(q), kc = contiguous_data(k), vc = contiguous_data(v);
  Tensor o = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty({p.B, p.Hq, p.Nq}, q.dtype(), q.device());
  p.q = qc.raw_data();
  p.k = kc.raw_data();
  p.v = vc.raw_data();
  p.o = o.raw_data();
  p.lse = lse.raw_data();
  backend::launch("attention_reference_forward", p);
  if (auto n = autograd::make_node<AttentionReferenceBackward>({&q, &k, &v}, p)) {
    for (const Tensor& t : {qc, kc, vc, o, lse, mask}) n->save(t);
    autograd::set_history(n, {&o, &lse});
  }
  return {o, lse};
}

}  // namespace strand::ops
