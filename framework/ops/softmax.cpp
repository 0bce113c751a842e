// Softmax and log-softmax over one axis, and their backward. The kernels work on contiguous
// rows; a non-last axis is moved last by a permuted copy and moved back afterwards.
#include "framework/ops/softmax.h"

#include <algorithm>

#include "framework/autograd/node.h"
#include "framework/backend/softmax.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

// How a tensor maps onto [rows, n] rows with the softmax axis last.
struct RowLayout {
  Shape shape;                   // the tensor's shape
  int64_t axis = 0;              // wrapped softmax axis
  bool moved = false;            // axis is not last: the data is permuted
  std::vector<int64_t> order;    // permutation that puts axis last
  std::vector<int64_t> inverse;  // and back
  int64_t n = 1, rows = 1;
};

RowLayout plan_rows(const Tensor& x, int64_t axis, const char* op) {
  RowLayout p;
  p.shape = x.shape();
  const int64_t nd = x.dim();
  if (nd == 0) {  // a scalar is one row of one element
    wrap_axis(axis, 1, op);
    return p;
  }
  p.axis = wrap_axis(axis, nd, op);
  p.moved = p.axis != nd - 1;
  for (int64_t i = 0; i < nd; ++i)
    if (i != p.axis) p.order.push_back(i);
  p.order.push_back(p.axis);
  p.inverse.resize(nd);
  for (int64_t i = 0; i < nd; ++i) p.inverse[p.order[i]] = i;
  p.n = x.shape()[p.axis];
  p.rows = p.n == 0 ? 0 : x.numel() / p.n;
  return p;
}

// t's data as contiguous [rows, n] rows (a copy unless t already is laid out so).
Tensor to_rows(const Tensor& t, const RowLayout& p) {
  if (!p.moved) return contiguous_data(t);
  Shape sh, st;
  for (int64_t a : p.order) {
    sh.push_back(t.shape()[a]);
    st.push_back(t.strides()[a]);
  }
  return contiguous_data(t.as_strided(sh, st, t.offset()));
}

// The inverse of to_rows: a contiguous tensor of the original shape.
Tensor from_rows(const Tensor& rows, const RowLayout& p) {
  if (!p.moved) return rows;
  Shape sh, st;
  for (int64_t a : p.inverse) {
    sh.push_back(rows.shape()[a]);
    st.push_back(rows.strides()[a]);
  }
  return contiguous_data(rows.as_strided(sh, st, rows.offset()));
}

struct SoftmaxBackward final : Node {
  RowLayout layout;
  bool log;
  SoftmaxBackward(const char* name, RowLayout p, bool lg) : Node(name), layout(std::move(p)), log(lg) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor y = to_rows(saved(0), layout);
    Tensor gr = to_rows(g[0], layout);
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    check_same_device(name().c_str(), {&y, &gr});
    check_float_dtype(name().c_str(), y.dtype());
    backend::SoftmaxParams p;
    p.device = y.device();
    p.dtype = y.dtype();
    p.backward = true;
    p.log = log;
    p.rows = layout.rows;
    p.n = layout.n;
    p.x = y.raw_data();
    p.g = gr.raw_data();
    p.out = dx.raw_data();
    backend::softmax_rows(p);
    return {from_rows(dx, layout)};
  }
};

Tensor softmax_op(const Tensor& x, int64_t axis, bool log, const char* op) {
  STRAND_CHECK(x.defined(), ValueError, op, ": input is undefined");
  check_float(op, x);
  RowLayout p = plan_rows(x, axis, op);
  Tensor xr = to_rows(x, p);
  Tensor yr = Tensor::empty(xr.shape(), x.dtype(), x.device());
  backend::SoftmaxParams k;
  k.device = x.device();
  k.dtype = x.dtype();
  k.log = log;
  k.rows = p.rows;
  k.n = p.n;
  k.x = xr.raw_data();
  k.out = yr.raw_data();
  backend::softmax_rows(k);
  Tensor y = from_rows(yr, p);
  if (auto n = autograd::make_node<SoftmaxBackward>({&x}, op, p, log)) {
    n->save(y);
    autograd::set_history(n, {&y});
  }
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) { return softmax_op(x, axis, false, "softmax"); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return softmax_op(x, axis, true, "log_softmax"); }

}  // namespace strand::ops
