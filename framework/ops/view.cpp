// View ops and their backward (each backward applies the inverse view to the gradient).
#include "framework/ops/view.h"

#include <algorithm>
#include <numeric>
#include <optional>

#include "framework/autograd/node.h"
#include "framework/core/error.h"
#include "framework/ops/dispatch.h"
#include "framework/ops/reduce.h"

namespace strand::ops {
namespace {

using autograd::Node;

struct ReshapeBackward final : Node {
  Shape in_shape;
  explicit ReshapeBackward(Shape s) : Node("reshape"), in_shape(std::move(s)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {reshape(g[0], in_shape)}; }
};

struct PermuteBackward final : Node {
  std::vector<int64_t> inverse;
  explicit PermuteBackward(std::vector<int64_t> inv) : Node("permute"), inverse(std::move(inv)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {permute(g[0], inverse)}; }
};

struct SliceBackward final : Node {
  Shape in_shape;
  int64_t axis, start, end, step;
  SliceBackward(Shape s, int64_t a, int64_t b, int64_t e, int64_t st)
      : Node("slice"), in_shape(std::move(s)), axis(a), start(b), end(e), step(st) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor dx = Tensor::zeros(in_shape, g[0].dtype(), g[0].device());
    dx.as_strided(g[0].shape(), [&] {
        Shape st = dx.strides();
        st[axis] *= step;
        return st;
      }(), start * dx.strides()[axis]).copy_from(g[0]);
    return {dx};
  }
};

struct ExpandBackward final : Node {
  Shape in_shape;
  explicit ExpandBackward(Shape s) : Node("expand"), in_shape(std::move(s)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {sum_to(g[0], in_shape)}; }
};

struct IdentityBackward final : Node {
  using Node::Node;
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0]}; }
};

struct CastBackward final : Node {
  DType from;
  explicit CastBackward(DType d) : Node("to_dtype"), from(d) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0].copy_as(from, g[0].device())}; }
};

// Strides for viewing a tensor (shape, strides) as new_shape without copying, or empty when
// the memory layout does not allow it (the rule NumPy and PyTorch use).
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape) {
  Shape out(new_shape.size(), 1);
  if (shape.empty()) return out;
  if (numel_of(shape) == 0) return contiguous_strides(new_shape);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    // End of a chunk of axes that are contiguous with each other.
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

}  // namespace

Tensor reshape(const Tensor& x, Shape shape) {
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      STRAND_CHECK(infer < 0, ShapeError, "reshape: more than one -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0 && known > 0) shape[infer] = x.numel() / known;
  STRAND_CHECK(numel_of(shape) == x.numel(), ShapeError, "reshape: cannot view ", shape_str(x.shape()), " (",
               x.numel(), " elements) as ", shape_str(shape));
  Tensor y;
  if (auto st = view_strides(x.shape(), x.strides(), shape)) y = x.as_strided(shape, *st, x.offset());
  else y = x.copy_as(x.dtype(), x.device()).as_strided(shape, contiguous_strides(shape), 0);
  if (auto n = autograd::make_node<ReshapeBackward>({&x}, x.shape())) autograd::set_history(n, {&y});
  return y;
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& order) {
  const int64_t nd = x.dim();
  STRAND_CHECK(static_cast<int64_t>(order.size()) == nd, ShapeError, "permute: order of ", order.size(),
               " axes for a tensor of shape ", shape_str(x.shape()));
  Shape shape(nd), strides(nd);
  std::vector<int64_t> inverse(nd, -1);
  for (int64_t i = 0; i < nd; ++i) {
    const int64_t a = wrap_axis(order[i], nd, "permute");
    STRAND_CHECK(inverse[a] < 0, ValueError, "permute: axis ", a, " appears twice");
    inverse[a] = i;
    shape[i] = x.shape()[a];
    strides[i] = x.strides()[a];
  }
  Tensor y = x.as_strided(shape, strides, x.offset());
  if (auto n = autograd::make_node<PermuteBackward>({&x}, inverse)) autograd::set_history(n, {&y});
  return y;
}

Tensor transpose(const Tensor& x, int64_t a0, int64_t a1) {
  std::vector<int64_t> order(x.dim());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[wrap_axis(a0, x.dim(), "transpose")], order[wrap_axis(a1, x.dim(), "transpose")]);
  return permute(x, order);
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step) {
  axis = wrap_axis(axis, x.dim(), "slice");
  const int64_t n = x.shape()[axis];
  STRAND_CHECK(step > 0, ValueError, "slice: step must be positive, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  end = std::min(end, n);
  STRAND_CHECK(start >= 0 && start <= end, ValueError, "slice: range [", start, ", ", end, ") does not fit axis ",
               axis, " of ", shape_str(x.shape()));
  Shape shape = x.shape(), strides = x.strides();
  shape[axis] = (end - start + step - 1) / step;
  strides[axis] *= step;
  Tensor y = x.as_strided(shape, strides, x.offset() + start * x.strides()[axis]);
  if (auto nd = autograd::make_node<SliceBackward>({&x}, x.shape(), axis, start, end, step))
    autograd::set_history(nd, {&y});
  return y;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  const int64_t nd = static_cast<int64_t>(shape.size()), xd = x.dim();
  STRAND_CHECK(nd >= xd, ShapeError, "expand: cannot expand ", shape_str(x.shape()), " to ", shape_str(shape));
  Shape strides(nd, 0);
  for (int64_t i = 0; i < nd; ++i) {
    const int64_t j = i - (nd - xd);
    if (j < 0) continue;
    if (x.shape()[j] == shape[i]) strides[i] = x.strides()[j];
    else
      STRAND_CHECK(x.shape()[j] == 1, ShapeError, "expand: cannot expand ", shape_str(x.shape()), " to ",
                   shape_str(shape));
  }
  Tensor y = x.as_strided(shape, strides, x.offset());
  if (auto n = autograd::make_node<ExpandBackward>({&x}, x.shape())) autograd::set_history(n, {&y});
  return y;
}

Tensor unsqueeze(const Tensor& x, int64_t axis) {
  Shape s = x.shape();
  axis = wrap_axis(axis, x.dim() + 1, "unsqueeze");
  s.insert(s.begin() + axis, 1);
  return reshape(x, s);
}

Tensor squeeze(const Tensor& x, int64_t axis) {
  axis = wrap_axis(axis, x.dim(), "squeeze");
  STRAND_CHECK(x.shape()[axis] == 1, ShapeError, "squeeze: axis ", axis, " of ", shape_str(x.shape()),
               " is not of size 1");
  Shape s = x.shape();
  s.erase(s.begin() + axis);
  return reshape(x, s);
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor y = x.copy_as(x.dtype(), x.device());
  if (auto n = autograd::make_node<IdentityBackward>({&x}, "contiguous")) autograd::set_history(n, {&y});
  return y;
}

Tensor clone(const Tensor& x) {
  Tensor y = x.copy_as(x.dtype(), x.device());
  if (auto n = autograd::make_node<IdentityBackward>({&x}, "clone")) autograd::set_history(n, {&y});
  return y;
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  Tensor y = x.copy_as(dtype, x.device());
  if (is_floating(dtype))
    if (auto n = autograd::make_node<CastBackward>({&x}, x.dtype())) autograd::set_history(n, {&y});
  return y;
}

}  // namespace strand::ops
