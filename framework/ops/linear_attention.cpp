// Performer linear attention: input checks, the forward through the device seam
// (backend::launch), and its hand-written backward node.
//
// Note [Performer stabilisers]
// exp(W x' - |x'|^2 / 2) overflows or underflows for large |x|, so the kernel subtracts a
// constant from the exponents before exp: for queries the largest exponent of each row, for
// keys the largest exponent of the whole (batch, kv head) slice. A query row's constant scales
// both its numerator and its denominator, and the key constant scales every term of every sum,
// so both cancel exactly: out, and hence every gradient, is the unstabilised formula's. The
// backward therefore treats them as constants. The saved normaliser `den` is the stabilised one
// and the backward recomputes the same constants from the same inputs. A key slice whose
// exponents spread over more than the dtype's exp range (~87 in float32) can still underflow
// for some keys; those keys' true weights are below e^-87 of the largest.
#include "framework/ops/linear_attention.h"

#include "framework/autograd/node.h"
#include "framework/backend/attention.h"
#include "framework/backend/registry.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

constexpr const char* kOp = "linear_attention";

backend::LinearAttentionParams check_and_describe(const Tensor& q, const Tensor& k, const Tensor& v,
                                              const Tensor& projection, bool causal) {
  STRAND_CHECK(q.defined() && k.defined() && v.defined() && projection.defined(), ValueError, kOp,
               ": q, k, v and projection must all be defined");
  check_same_device(kOp, {&q, &k, &v, &projection});
  check_float(kOp, q);
  check_same_dtype(kOp, q, k);
  check_same_dtype(kOp, q, v);
  check_same_dtype(kOp, q, projection);
  STRAND_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, ShapeError, kOp,
               ": q, k, v must be [B, H, N, D], got q ", describe(q), ", k ", describe(k), ", v ", describe(v));
  const Shape &qs = q.shape(), &ks = k.shape(), &vs = v.shape();
  STRAND_CHECK(ks[0] == qs[0] && vs[0] == qs[0] && vs[1] == ks[1] && vs[2] == ks[2] && ks[3] == qs[3], ShapeError,
               kOp, ": expected q [B, Hq, Nq, D], k [B, Hkv, Nk, D], v [B, Hkv, Nk, Dv], got q ", describe(q), ", k ",
               describe(k), ", v ", describe(v));
  STRAND_CHECK(ks[1] > 0 && qs[1] % ks[1] == 0, ShapeError, kOp, ": query heads (", qs[1],
               ") must be a multiple of kv heads (", ks[1], "), q ", describe(q), ", k ", describe(k));
  STRAND_CHECK(ks[2] > 0, ShapeError, kOp, ": no keys to attend to, k ", describe(k));
  STRAND_CHECK(projection.dim() == 2 && projection.size(0) > 0 && projection.size(1) == qs[3], ShapeError, kOp,
               ": projection must be [M, D] with D = ", qs[3], " (the head dim of q ", describe(q), "), got ",
               describe(projection));
  STRAND_CHECK(!causal || qs[2] == ks[2], ShapeError, kOp, ": causal needs as many queries as keys, q ", describe(q),
               ", k ", describe(k));
  STRAND_CHECK(!projection.requires_grad(), ValueError, kOp,
               ": the projection is a fixed random matrix and gets no gradient; pass it without requires_grad, got ",
               describe(projection));
  backend::LinearAttentionParams p;
  p.device = q.device();
  p.dtype = q.dtype();
  p.batch = qs[0];
  p.q_heads = qs[1];
  p.kv_heads = ks[1];
  p.q_len = qs[2];
  p.kv_len = ks[2];
  p.head_dim = qs[3];
  p.value_dim = vs[3];
  p.features = projection.size(0);
  p.causal = causal;
  return p;
}

struct LinearAttentionBackward final : Node {
  backend::LinearAttentionParams params;  // sizes; pointers set at backward
  explicit LinearAttentionBackward(const backend::LinearAttentionParams& p) : Node(kOp), params(p) {}
  // saved: q, k, v, projection, out, den
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const Tensor q = contiguous_data(saved(0)), k = contiguous_data(saved(1)), v = contiguous_data(saved(2));
    const Tensor w = contiguous_data(saved(3)), out = saved(4), den = saved(5), dout = contiguous_data(g[0]);
    Tensor dq = Tensor::empty(q.shape(), q.dtype(), q.device()), dk = Tensor::empty(k.shape(), k.dtype(), k.device()),
           dv = Tensor::empty(v.shape(), v.dtype(), v.device());
    backend::LinearAttentionBackwardParams p{params};
    p.q = q.raw_data();
    p.k = k.raw_data();
    p.v = v.raw_data();
    p.w = w.raw_data();
    p.out = out.raw_data();
    p.den = den.raw_data();
    p.dout = dout.raw_data();
    p.dq = dq.raw_data();
    p.dk = dk.raw_data();
    p.dv = dv.raw_data();
    backend::launch("linear_attention_backward", p);
    return {dq, dk, dv};
  }
};

}  // namespace

Tensor linear_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& projection, bool causal) {
  backend::LinearAttentionForwardParams p{check_and_describe(q, k, v, projection, causal)};
  const Tensor qc = contiguous_data(q), kc = contiguous_data(k), vc = contiguous_data(v),
               wc = contiguous_data(projection);
  Tensor out = Tensor::empty({p.batch, p.q_heads, p.q_len, p.value_dim}, q.dtype(), q.device());
  Tensor den = Tensor::empty({p.batch, p.q_heads, p.q_len}, q.dtype(), q.device());
  p.q = qc.raw_data();
  p.k = kc.raw_data();
  p.v = vc.raw_data();
  p.w = wc.raw_data();
  p.out = out.raw_data();
  p.den = den.raw_data();
  backend::launch("linear_attention_forward", p);
  if (auto n = autograd::make_node<LinearAttentionBackward>({&q, &k, &v}, p)) {
    for (const Tensor* t : {&q, &k, &v, &projection}) n->save(*t);
    n->save(out.detach());  // detached: saving the output itself would make a node -> output -> node cycle
    n->save(den);
    autograd::set_history(n, {&out});
  }
  return out;
}

Tensor performer_projection(int64_t features, int64_t head_dim, uint64_t seed, DType dtype) {
  STRAND_CHECK(features > 0 && head_dim > 0, ValueError, "performer_projection: features (", features,
               ") and head_dim (", head_dim, ") must be positive");
  STRAND_CHECK(dtype == DType::F32 || dtype == DType::F64, DTypeError,
               "performer_projection: expects float32 or float64, got ", dtype_name(dtype));
  return Tensor::randn({features, head_dim}, seed, dtype);
}

}  // namespace strand::ops
