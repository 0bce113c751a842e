// Reductions: the reduced axes are moved last and made contiguous, then each row is reduced.
#include "framework/ops/reduce.h"

#include <algorithm>
#include <utility>

#include "framework/autograd/node.h"
#include "framework/backend/reduce.h"
#include "framework/ops/dispatch.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/view.h"

namespace strand::ops {
namespace {

using autograd::Node;

struct Plan {
  std::vector<int64_t> order;  // kept axes, then reduced axes
  Shape out_shape;             // with keepdim
  Shape out_shape_squeezed;    // without
  int64_t rows = 1, n = 1;
};

Plan plan_reduction(const Tensor& x, const std::vector<int64_t>& axes, const char* op) {
  const int64_t nd = x.dim();
  std::vector<bool> reduced(nd, axes.empty());
  for (int64_t a : axes) {
    const int64_t w = wrap_axis(a, nd, op);
    STRAND_CHECK(!reduced[w], ValueError, op, ": axis ", a, " given twice");
    reduced[w] = true;
  }
  Plan p;
  for (int64_t i = 0; i < nd; ++i)
    if (!reduced[i]) {
      p.order.push_back(i);
      p.rows *= x.shape()[i];
      p.out_shape.push_back(x.shape()[i]);
      p.out_shape_squeezed.push_back(x.shape()[i]);
    } else {
      p.out_shape.push_back(1);
    }
  for (int64_t i = 0; i < nd; ++i)
    if (reduced[i]) {
      p.order.push_back(i);
      p.n *= x.shape()[i];
    }
  return p;
}

// x with the reduced axes last, contiguous, as raw data.
Tensor rows_view(const Tensor& x, const Plan& p) {
  autograd::NoGradGuard no_grad;
  return contiguous(permute(x, p.order));
}

struct SumBackward final : Node {
  Shape in_shape, kept_shape;
  double scale;
  SumBackward(const char* name, Shape in, Shape kept, double s)
      : Node(name), in_shape(std::move(in)), kept_shape(std::move(kept)), scale(s) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor gk = reshape(g[0], kept_shape);
    if (scale != 1.0) gk = mul_scalar(gk, scale);
    return {contiguous(expand(gk, in_shape))};
  }
};

struct MaxBackward final : Node {
  Plan plan;
  Shape in_shape;
  MaxBackward(Plan p, Shape in) : Node("max"), plan(std::move(p)), in_shape(std::move(in)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor gc = contiguous_data(g[0]);
    int32_t* arg = saved(0).data<int32_t>();
    // Scatter into the permuted layout, then permute back.
    Shape perm_shape;
    for (int64_t a : plan.order) perm_shape.push_back(in_shape[a]);
    Tensor dperm = Tensor::zeros(perm_shape, gc.dtype(), gc.device());
    check_float_dtype("max backward", gc.dtype());
    backend::ReduceRowsParams p;
    p.device = gc.device();
    p.dtype = gc.dtype();
    p.op = backend::RowReduce::MaxBackward;
    p.rows = plan.rows;
    p.n = plan.n;
    p.x = gc.raw_data();
    p.out = dperm.raw_data();
    p.arg = arg;
    backend::reduce_rows(p);
    std::vector<int64_t> inverse(plan.order.size());
    for (size_t i = 0; i < plan.order.size(); ++i) inverse[plan.order[i]] = static_cast<int64_t>(i);
    return {contiguous(permute(dperm, inverse))};
  }
};

Tensor reduce_sum(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim, double scale, const char* op) {
  check_float(op, x);
  Plan p = plan_reduction(x, axes, op);
  Tensor data = rows_view(x, p);
  Tensor y = Tensor::empty(keepdim ? p.out_shape : p.out_shape_squeezed, x.dtype(), x.device());
  backend::ReduceRowsParams k;
  k.device = x.device();
  k.dtype = x.dtype();
  k.op = backend::RowReduce::Sum;
  k.rows = p.rows;
  k.n = p.n;
  k.x = data.raw_data();
  k.out = y.raw_data();
  k.scale = scale;
  backend::reduce_rows(k);
  if (auto n = autograd::make_node<SumBackward>({&x}, op, x.shape(), p.out_shape, scale))
    autograd::set_history(n, {&y});
  return y;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  return reduce_sum(x, axes, keepdim, 1.0, "sum");
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  Plan p = plan_reduction(x, axes, "mean");
  STRAND_CHECK(p.n > 0, ShapeError, "mean: reducing ", shape_str(x.shape()), " over an empty axis");
  return reduce_sum(x, axes, keepdim, 1.0 / static_cast<double>(p.n), "mean");
}

namespace {

// The row maxima of x over the plan's axes, and the first position attaining each (int32).
std::pair<Tensor, Tensor> max_and_arg(const Tensor& x, const Plan& p, bool keepdim) {
  Tensor data = rows_view(x, p);
  Tensor y = Tensor::empty(keepdim ? p.out_shape : p.out_shape_squeezed, x.dtype(), x.device());
  Tensor arg = Tensor::empty({p.rows}, DType::I32, x.device());
  backend::ReduceRowsParams k;
  k.device = x.device();
  k.dtype = x.dtype();
  k.op = backend::RowReduce::Max;
  k.rows = p.rows;
  k.n = p.n;
  k.x = data.raw_data();
  k.out = y.raw_data();
  k.arg = arg.data<int32_t>();
  backend::reduce_rows(k);
  return {y, arg};
}

}  // namespace

Tensor max(const Tensor& x, const std::vector<int64_t>& axes, bool keepdim) {
  check_float("max", x);
  Plan p = plan_reduction(x, axes, "max");
  STRAND_CHECK(p.n > 0, ShapeError, "max: reducing ", shape_str(x.shape()), " over an empty axis");
  auto [y, arg] = max_and_arg(x, p, keepdim);
  if (auto n = autograd::make_node<MaxBackward>({&x}, p, x.shape())) {
    n->save(arg);
    autograd::set_history(n, {&y});
  }
  return y;
}

Tensor argmax(const Tensor& x, int64_t axis) {
  check_float("argmax", x);
  Plan p = plan_reduction(x, {axis}, "argmax");
  STRAND_CHECK(p.n > 0, ShapeError, "argmax: reducing ", shape_str(x.shape()), " over an empty axis");
  return reshape(max_and_arg(x.detach(), p, false).second, p.out_shape_squeezed);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t nd = x.dim(), sd = static_cast<int64_t>(shape.size());
  STRAND_CHECK(sd <= nd, ShapeError, "sum_to: cannot reduce ", shape_str(x.shape()), " to ", shape_str(shape));
  std::vector<int64_t> axes;
  for (int64_t i = 0; i < nd; ++i) {
    const int64_t j = i - (nd - sd);
    if (j < 0 || (shape[j] == 1 && x.shape()[i] != 1)) axes.push_back(i);
    else
      STRAND_CHECK(shape[j] == x.shape()[i], ShapeError, "sum_to: cannot reduce ", shape_str(x.shape()), " to ",
                   shape_str(shape));
  }
  if (axes.empty()) return reshape(x, shape);
  return reshape(sum(x, axes, true), shape);
}

}  // namespace strand::ops
