// Fused LayerNorm and RMSNorm over the last axis: one kernel pass computes the row statistics
// (saved as [rows] tensors in the input dtype) and the output; one fused kernel computes dx and
// the dweight/dbias row reductions in the backward.
#include "framework/ops/norm.h"

#include "framework/autograd/node.h"
#include "framework/backend/norm.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

// Checks shared by both norms. weight and bias may be undefined (no scale / no shift).
void check_norm_args(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  STRAND_CHECK(x.defined(), ValueError, op, ": input is undefined");
  check_same_device(op, {&x, &weight, &bias});
  check_float(op, x);
  STRAND_CHECK(x.dim() >= 1, ShapeError, op, ": input ", describe(x), " needs at least one axis to normalise");
  const int64_t c = x.shape().back();
  for (const auto& [arg, t] : {std::pair<const char*, const Tensor*>{"weight", &weight}, {"bias", &bias}}) {
    if (!t->defined()) continue;
    check_same_dtype(op, x, *t);
    STRAND_CHECK(t->dim() == 1 && t->shape()[0] == c, ShapeError, op, ": ", arg, " ", describe(*t),
                 " does not match the last axis of input ", describe(x), " (expects [", c, "])");
  }
  STRAND_CHECK(eps >= 0, ValueError, op, ": eps must be non-negative, got ", eps);
}

void* data_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

// Backward of both norms; inputs are (x, weight, bias) for LayerNorm and (x, weight) for RMSNorm.
struct NormBackward final : Node {
  bool centred;          // LayerNorm (mean saved) vs RMSNorm
  bool has_weight;
  size_t x_slot = 0, weight_slot = 0, mean_slot = 0, rstd_slot = 0;
  NormBackward(const char* name, bool c, bool w) : Node(name), centred(c), has_weight(w) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const bool need_x = next_edges[0].node != nullptr;
    const bool need_w = next_edges.size() > 1 && next_edges[1].node != nullptr;
    const bool need_b = next_edges.size() > 2 && next_edges[2].node != nullptr;
    Tensor x = contiguous_data(saved(x_slot));
    Tensor gc = contiguous_data(g[0]);
    Tensor weight = has_weight ? contiguous_data(saved(weight_slot)) : Tensor();
    Tensor mean = centred ? saved(mean_slot) : Tensor();
    Tensor rstd = saved(rstd_slot);
    const int64_t c = x.shape().back();
    const Device d = check_same_device(name().c_str(), {&x, &gc});
    Tensor dx = need_x ? Tensor::empty(x.shape(), x.dtype(), d) : Tensor();
    Tensor dw = need_w ? Tensor::empty({c}, x.dtype(), d) : Tensor();
    Tensor db = need_b ? Tensor::empty({c}, x.dtype(), d) : Tensor();
    check_float_dtype(name().c_str(), x.dtype());
    check_same_dtype(name().c_str(), x, gc);
    backend::NormParams p;
    p.device = d;
    p.dtype = x.dtype();
    p.op = backend::NormOp::Backward;
    p.rows = c == 0 ? 0 : x.numel() / c;
    p.n = c;
    p.x = x.raw_data();
    p.g = gc.raw_data();
    p.weight = data_or_null(weight);
    p.mean = data_or_null(mean);
    p.rstd = rstd.raw_data();
    p.dx = data_or_null(dx);
    p.dweight = data_or_null(dw);
    p.dbias = data_or_null(db);
    backend::norm_rows(p);
    if (centred) return {dx, dw, db};
    return {dx, dw};
  }
};

Tensor norm_op(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, bool centred) {
  check_norm_args(op, x, weight, bias, eps);
  const int64_t c = x.shape().back();
  const int64_t rows = c == 0 ? 0 : x.numel() / c;
  Tensor xc = contiguous_data(x);
  Tensor wc = weight.defined() ? contiguous_data(weight) : Tensor();
  Tensor bc = bias.defined() ? contiguous_data(bias) : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = centred ? Tensor::empty({rows}, x.dtype(), x.device()) : Tensor();
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());
  backend::NormParams p;
  p.device = x.device();
  p.dtype = x.dtype();
  p.op = centred ? backend::NormOp::LayerNorm : backend::NormOp::RmsNorm;
  p.rows = rows;
  p.n = c;
  p.x = xc.raw_data();
  p.weight = data_or_null(wc);
  p.bias = data_or_null(bc);
  p.eps = eps;
  p.y = y.raw_data();
  p.mean = data_or_null(mean);
  p.rstd = rstd.raw_data();
  backend::norm_rows(p);
  std::shared_ptr<NormBackward> n =
      centred ? autograd::make_node<NormBackward>({&x, &weight, &bias}, op, centred, weight.defined())
              : autograd::make_node<NormBackward>({&x, &weight}, op, centred, weight.defined());
  if (n) {
    n->x_slot = n->save(x);
    if (weight.defined()) n->weight_slot = n->save(weight);
    if (centred) n->mean_slot = n->save(mean);
    n->rstd_slot = n->save(rstd);
    autograd::set_history(n, {&y});
  }
  return y;
}

}  // namespace

// weight may also be undefined (no scale), as with elementwise_affine=False elsewhere.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return norm_op("layer_norm", x, weight, bias, eps, true);
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  return norm_op("rms_norm", x, weight, Tensor(), eps, false);
}

}  // namespace strand::ops
