// concat, split and stack. concat copies; split returns views of its input; stack is unsqueeze
// then concat. Their backward passes are each other: slices of the gradient, concat of gradients.
#include "framework/ops/join.h"

#include "framework/autograd/node.h"
#include "framework/backend/join.h"
#include "framework/ops/dispatch.h"
#include "framework/ops/view.h"

namespace strand::ops {
namespace {

using autograd::Node;

struct ConcatBackward final : Node {
  int64_t axis;
  std::vector<int64_t> sizes;  // each input's length along axis
  ConcatBackward(int64_t a, std::vector<int64_t> s) : Node("concat"), axis(a), sizes(std::move(s)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    std::vector<Tensor> out(sizes.size());
    int64_t start = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (next_edges[i].node) out[i] = slice(g[0], axis, start, start + sizes[i]);
      start += sizes[i];
    }
    return out;
  }
};

struct SplitBackward final : Node {
  int64_t axis;
  explicit SplitBackward(int64_t a) : Node("split"), axis(a) {}
  // The engine hands zeros for pieces that received no gradient, so every g[i] is defined.
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {concat(g, axis)}; }
};

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t axis) {
  STRAND_CHECK(!xs.empty(), ValueError, "concat: no tensors given");
  const Tensor& first = xs[0];
  for (size_t i = 0; i < xs.size(); ++i)
    STRAND_CHECK(xs[i].defined(), ValueError, "concat: input ", i, " is undefined");
  const int64_t nd = first.dim();
  axis = wrap_axis(axis, nd, "concat");
  std::vector<const Tensor*> inputs;
  std::vector<int64_t> sizes;
  Shape out_shape = first.shape();
  out_shape[axis] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    check_same_device("concat", {&first, &x});
    STRAND_CHECK(x.dtype() == first.dtype(), DTypeError, "concat: input ", i, " is ", describe(x), ", input 0 is ",
                 describe(first));
    bool fits = x.dim() == nd;
    for (int64_t d = 0; fits && d < nd; ++d) fits = d == axis || x.shape()[d] == first.shape()[d];
    STRAND_CHECK(fits, ShapeError, "concat: input ", i, " has shape ", shape_str(x.shape()), ", input 0 has ",
                 shape_str(first.shape()), "; they must match on every axis but ", axis);
    inputs.push_back(&x);
    sizes.push_back(x.shape()[axis]);
    out_shape[axis] += x.shape()[axis];
  }

  Tensor y = Tensor::empty(out_shape, first.dtype(), first.device());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= out_shape[d];
  for (int64_t d = axis + 1; d < nd; ++d) inner *= out_shape[d];
  const int64_t es = static_cast<int64_t>(dtype_size(first.dtype()));
  const int64_t out_row = out_shape[axis] * inner * es;
  int64_t at = 0;  // bytes into an output row where the current input's slab starts
  backend::CopyBlocksParams p;
  p.device = first.device();
  p.dst_stride = out_row;
  p.rows = outer;
  for (size_t i = 0; i < xs.size(); ++i) {
    Tensor xc = contiguous_data(xs[i]);
    const int64_t slab = sizes[i] * inner * es;
    p.dst = static_cast<char*>(y.raw_data()) + at;
    p.src = xc.raw_data();
    p.src_stride = slab;
    p.row_bytes = slab;
    backend::copy_blocks(p);
    at += slab;
  }
  if (auto n = autograd::make_node_n<ConcatBackward>(inputs, axis, sizes)) autograd::set_history(n, {&y});
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis) {
  axis = wrap_axis(axis, x.dim(), "split");
  const int64_t length = x.shape()[axis];
  int64_t total = 0;
  for (int64_t s : sizes) {
    STRAND_CHECK(s >= 0, ValueError, "split: negative size ", s, " for ", shape_str(x.shape()), " along axis ", axis);
    total += s;
  }
  STRAND_CHECK(total == length, ValueError, "split: sizes ", shape_str(sizes), " sum to ", total, ", but axis ",
               axis, " of ", shape_str(x.shape()), " has length ", length);
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    Shape shape = x.shape();
    shape[axis] = s;
    pieces.push_back(x.as_strided(shape, x.strides(), x.offset() + start * x.strides()[axis]));
    start += s;
  }
  if (auto n = autograd::make_node<SplitBackward>({&x}, axis)) {
    std::vector<Tensor*> outs;
    for (Tensor& p : pieces) outs.push_back(&p);
    autograd::set_history(n, outs);
  }
  return pieces;
}

Tensor stack(const std::vector<Tensor>& xs, int64_t axis) {
  STRAND_CHECK(!xs.empty(), ValueError, "stack: no tensors given");
  for (size_t i = 0; i < xs.size(); ++i) {
    STRAND_CHECK(xs[i].defined(), ValueError, "stack: input ", i, " is undefined");
    STRAND_CHECK(xs[i].shape() == xs[0].shape(), ShapeError, "stack: input ", i, " has shape ",
                 shape_str(xs[i].shape()), ", input 0 has ", shape_str(xs[0].shape()), "; all must be equal");
  }
  axis = wrap_axis(axis, xs[0].dim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (const Tensor& x : xs) expanded.push_back(unsqueeze(x, axis));
  return concat(expanded, axis);
}

}  // namespace strand::ops
