// Elementwise ops and their backward. Broadcasting backward sums the gradient back to each
// input's shape (sum_to).
#include "framework/ops/elementwise.h"

#include "framework/autograd/node.h"
#include "framework/backend/elementwise.h"
#include "framework/ops/dispatch.h"
#include "framework/ops/reduce.h"
#include "framework/ops/view.h"

namespace strand::ops {
namespace {

using autograd::Node;

// Strides of t read as `shape` under broadcasting (0 on broadcast axes).
Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  const int64_t nd = static_cast<int64_t>(shape.size()), td = t.dim();
  Shape st(nd, 0);
  for (int64_t i = 0; i < td; ++i)
    if (t.shape()[i] != 1) st[nd - td + i] = t.strides()[i];
  return st;
}

Tensor binary_forward(backend::Binary op, const char* name, const Tensor& a, const Tensor& b) {
  backend::BinaryParams p;
  p.device = check_same_device(name, {&a, &b});
  check_same_dtype(name, a, b);
  check_float_dtype(name, a.dtype());
  p.dtype = a.dtype();
  p.op = op;
  p.shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor y = Tensor::empty(p.shape, a.dtype(), p.device);
  p.out = y.raw_data();
  p.a = a.raw_data();
  p.a_strides = broadcast_strides(a, p.shape);
  p.b = b.raw_data();
  p.b_strides = broadcast_strides(b, p.shape);
  backend::elementwise_binary(p);
  return y;
}

// y = map(x) for a map of backend::MapParams (a unary function, scale and shift, or a power).
Tensor map_forward(backend::MapParams& p, const char* name, const Tensor& x) {
  p.device = x.device();
  check_float_dtype(name, x.dtype());
  p.dtype = x.dtype();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  p.shape = x.shape();
  p.out = y.raw_data();
  p.x = x.raw_data();
  p.x_strides = x.strides();
  backend::elementwise_map(p);
  return y;
}

Tensor unary_forward(backend::Unary f, const char* name, const Tensor& x) {
  backend::MapParams p;
  p.kind = backend::MapKind::Unary;
  p.unary = f;
  return map_forward(p, name, x);
}

struct AddBackward final : Node {
  Shape a_shape, b_shape;
  double b_sign;
  AddBackward(const char* name, Shape a, Shape b, double sign)
      : Node(name), a_shape(std::move(a)), b_shape(std::move(b)), b_sign(sign) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor gb = sum_to(g[0], b_shape);
    return {sum_to(g[0], a_shape), b_sign < 0 ? neg(gb) : gb};
  }
};

struct MulBackward final : Node {
  Shape a_shape, b_shape;
  MulBackward(Shape a, Shape b) : Node("mul"), a_shape(std::move(a)), b_shape(std::move(b)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const bool need_a = next_edges[0].node != nullptr, need_b = next_edges[1].node != nullptr;
    return {need_a ? sum_to(mul(g[0], saved(1)), a_shape) : Tensor(),
            need_b ? sum_to(mul(g[0], saved(0)), b_shape) : Tensor()};
  }
};

struct DivBackward final : Node {
  Shape a_shape, b_shape;
  DivBackward(Shape a, Shape b) : Node("div"), a_shape(std::move(a)), b_shape(std::move(b)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor b = saved(1);
    Tensor ga = div(g[0], b);
    Tensor gb;
    if (next_edges[1].node) gb = sum_to(neg(mul(ga, div(saved(0), b))), b_shape);  // -g a / b^2
    return {next_edges[0].node ? sum_to(ga, a_shape) : Tensor(), gb};
  }
};

struct ScaleBackward final : Node {
  double scale;
  ScaleBackward(const char* name, double s) : Node(name), scale(s) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return {scale == 1.0 ? g[0] : mul_scalar(g[0], scale)};
  }
};

struct PowBackward final : Node {
  double p;
  explicit PowBackward(double e) : Node("pow_scalar"), p(e) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return {mul(g[0], mul_scalar(pow_scalar(saved(0), p - 1), p))};
  }
};

// d/dx f(x) expressed through the saved input x or output y.
enum class Deriv { Exp, Log, Sqrt, Tanh, Square };
struct UnaryBackward final : Node {
  Deriv d;
  UnaryBackward(const char* name, Deriv dd) : Node(name), d(dd) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor s = saved(0);
    switch (d) {
      case Deriv::Exp: return {mul(g[0], s)};                                    // s = y
      case Deriv::Log: return {div(g[0], s)};                                    // s = x
      case Deriv::Sqrt: return {div(g[0], mul_scalar(s, 2.0))};                  // s = y
      case Deriv::Tanh: return {mul(g[0], add_scalar(neg(square(s)), 1.0))};    // s = y
      case Deriv::Square: return {mul(g[0], mul_scalar(s, 2.0))};                // s = x
    }
    return {};
  }
};

// True when t is the only handle on its storage and covers all of it contiguously: writing
// over it changes no other tensor.
bool owns_whole_buffer(const Tensor& t) {
  return t.defined() && t.impl().use_count() == 1 && t.storage().use_count() == 1 && t.offset() == 0 &&
         t.is_contiguous() && t.nbytes() == t.storage()->nbytes();
}

struct ActivationBackward final : Node {
  backend::UnaryGrad f;
  ActivationBackward(const char* name, backend::UnaryGrad ff) : Node(name), f(ff) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor x = contiguous_data(saved(0));
    // The incoming gradient is overwritten by the result when nothing else can see it (the
    // engine hands over its only handle): the same elementwise arithmetic, one [T, 4C] buffer
    // fewer at the MLP's backward. Otherwise the result gets a fresh buffer.
    const bool reuse = owns_whole_buffer(g[0]) && g[0].dtype() == x.dtype() && g[0].shape() == x.shape() &&
                       g[0].device() == x.device();
    Tensor gc = reuse ? std::move(g[0]) : contiguous_data(g[0]);
    Tensor dx = reuse ? gc : Tensor::empty(x.shape(), x.dtype(), x.device());
    check_same_device(name().c_str(), {&x, &gc});
    check_float_dtype(name().c_str(), x.dtype());
    backend::ActivationGradParams p;
    p.device = x.device();
    p.dtype = x.dtype();
    p.f = f;
    p.n = x.numel();
    p.out = dx.raw_data();
    p.g = gc.raw_data();
    p.x = x.raw_data();
    backend::activation_grad(p);
    if (reuse) dx.bump_version();
    return {dx};
  }
};

Tensor unary_op(backend::Unary f, const char* name, const Tensor& x, Deriv d, bool save_output) {
  Tensor y = unary_forward(f, name, x);
  if (auto n = autograd::make_node<UnaryBackward>({&x}, name, d)) {
    n->save(save_output ? y : x);
    autograd::set_history(n, {&y});
  }
  return y;
}

Tensor activation(backend::Unary f, backend::UnaryGrad df, const char* name, const Tensor& x) {
  Tensor y = unary_forward(f, name, x);
  if (auto n = autograd::make_node<ActivationBackward>({&x}, name, df)) {
    n->save(x);
    autograd::set_history(n, {&y});
  }
  return y;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = binary_forward(backend::Binary::Add, "add", a, b);
  if (auto n = autograd::make_node<AddBackward>({&a, &b}, "add", a.shape(), b.shape(), 1.0))
    autograd::set_history(n, {&y});
  return y;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = binary_forward(backend::Binary::Sub, "sub", a, b);
  if (auto n = autograd::make_node<AddBackward>({&a, &b}, "sub", a.shape(), b.shape(), -1.0))
    autograd::set_history(n, {&y});
  return y;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = binary_forward(backend::Binary::Mul, "mul", a, b);
  if (auto n = autograd::make_node<MulBackward>({&a, &b}, a.shape(), b.shape())) {
    n->save(a);
    n->save(b);
    autograd::set_history(n, {&y});
  }
  return y;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor y = binary_forward(backend::Binary::Div, "div", a, b);
  if (auto n = autograd::make_node<DivBackward>({&a, &b}, a.shape(), b.shape())) {
    n->save(a);
    n->save(b);
    autograd::set_history(n, {&y});
  }
  return y;
}

Tensor add_scalar(const Tensor& x, double s) {
  backend::MapParams p;
  p.kind = backend::MapKind::Affine;
  p.alpha = 1.0;
  p.beta = s;
  Tensor y = map_forward(p, "add_scalar", x);
  if (auto n = autograd::make_node<ScaleBackward>({&x}, "add_scalar", 1.0)) autograd::set_history(n, {&y});
  return y;
}

Tensor mul_scalar(const Tensor& x, double s) {
  backend::MapParams p;
  p.kind = backend::MapKind::Affine;
  p.alpha = s;
  p.beta = 0.0;
  Tensor y = map_forward(p, "mul_scalar", x);
  if (auto n = autograd::make_node<ScaleBackward>({&x}, "mul_scalar", s)) autograd::set_history(n, {&y});
  return y;
}

Tensor pow_scalar(const Tensor& x, double p) {
  backend::MapParams mp;
  mp.kind = backend::MapKind::Power;
  mp.alpha = p;
  Tensor y = map_forward(mp, "pow_scalar", x);
  if (auto n = autograd::make_node<PowBackward>({&x}, p)) {
    n->save(x);
    autograd::set_history(n, {&y});
  }
  return y;
}

Tensor neg(const Tensor& x) {
  Tensor y = unary_forward(backend::Unary::Neg, "neg", x);
  if (auto n = autograd::make_node<ScaleBackward>({&x}, "neg", -1.0)) autograd::set_history(n, {&y});
  return y;
}

Tensor exp(const Tensor& x) { return unary_op(backend::Unary::Exp, "exp", x, Deriv::Exp, true); }
Tensor log(const Tensor& x) { return unary_op(backend::Unary::Log, "log", x, Deriv::Log, false); }
Tensor sqrt(const Tensor& x) { return unary_op(backend::Unary::Sqrt, "sqrt", x, Deriv::Sqrt, true); }
Tensor tanh(const Tensor& x) { return unary_op(backend::Unary::Tanh, "tanh", x, Deriv::Tanh, true); }
Tensor square(const Tensor& x) { return unary_op(backend::Unary::Square, "square", x, Deriv::Square, false); }
Tensor gelu(const Tensor& x) { return activation(backend::Unary::Gelu, backend::UnaryGrad::Gelu, "gelu", x); }
Tensor silu(const Tensor& x) { return activation(backend::Unary::Silu, backend::UnaryGrad::Silu, "silu", x); }

void axpy_(Tensor& dst, const Tensor& src, double alpha) {
  backend::AxpyParams p;
  p.device = check_same_device("axpy_", {&dst, &src});
  check_same_dtype("axpy_", dst, src);
  STRAND_CHECK(dst.shape() == src.shape() && dst.is_contiguous(), ShapeError, "axpy_: destination ", describe(dst),
               " and source ", describe(src), " must match, destination contiguous");
  check_float_dtype("axpy_", dst.dtype());
  Tensor s = contiguous_data(src);
  p.dtype = dst.dtype();
  p.n = dst.numel();
  p.alpha = alpha;
  p.dst = dst.raw_data();
  p.src = s.raw_data();
  backend::axpy(p);
  dst.bump_version();
}

}  // namespace strand::ops
