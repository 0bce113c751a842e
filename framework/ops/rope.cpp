// Rotary position embedding: input checks, the forward through the CPU kernel, and the backward
// node, which applies the inverse rotation (the map is orthogonal, so its adjoint is its inverse).
#include "framework/ops/rope.h"

#include "framework/autograd/node.h"
#include "framework/backend/rope.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

constexpr const char* kOp = "rope";

// Rotates x (or un-rotates it when inverse) into a new contiguous tensor.
Tensor rope_kernel(const Tensor& x, const Tensor& positions, double base, bool inverse) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const char* op = inverse ? "rope backward" : kOp;
  check_same_device(op, {&x, &positions});
  check_float_dtype(op, x.dtype());
  backend::RopeParams p;
  p.device = x.device();
  p.dtype = x.dtype();
  p.x = x.raw_data();
  p.y = y.raw_data();
  p.batch = x.shape()[0];
  p.heads = x.shape()[1];
  p.seq = x.shape()[2];
  p.head_dim = x.shape()[3];
  p.x_batch_stride = x.strides()[0];
  p.x_head_stride = x.strides()[1];
  p.x_row_stride = x.strides()[2];
  p.x_dim_stride = x.strides()[3];
  p.positions = positions.data<int32_t>();
  p.pos_batch_stride = positions.dim() == 2 ? positions.strides()[0] : 0;
  p.pos_row_stride = positions.strides().back();
  p.base = base;
  p.inverse = inverse;
  backend::rope(p);
  return y;
}

struct RopeBackward final : Node {
  double base;
  explicit RopeBackward(double b) : Node(kOp), base(b) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return {rope_kernel(g[0], saved(0), base, /*inverse=*/true)};
  }
};

}  // namespace

Tensor rope(const Tensor& x, const Tensor& positions, double base) {
  STRAND_CHECK(x.defined() && positions.defined(), ValueError, kOp, ": x and positions must be defined");
  check_same_device(kOp, {&x, &positions});
  check_float(kOp, x);
  STRAND_CHECK(x.dim() == 4, ShapeError, kOp, ": x must be [B, H, N, D], got ", describe(x));
  STRAND_CHECK(x.shape()[3] % 2 == 0, ShapeError, kOp, ": head dimension D must be even, got x ", describe(x));
  STRAND_CHECK(positions.dtype() == DType::I32, DTypeError, kOp, ": positions must be int32, got ",
               describe(positions));
  const int64_t batch = x.shape()[0], seq = x.shape()[2];
  const bool shared = positions.dim() == 1 && positions.shape()[0] == seq;
  const bool per_row = positions.dim() == 2 && positions.shape()[0] == batch && positions.shape()[1] == seq;
  STRAND_CHECK(shared || per_row, ShapeError, kOp, ": positions must be [N] or [B, N] for x [B, H, N, D] = ",
               shape_str(x.shape()), ", got ", describe(positions));
  STRAND_CHECK(base > 0.0, ValueError, kOp, ": base must be > 0, got ", base);
  for (double v : positions.to_vector())
    STRAND_CHECK(v >= 0, ValueError, kOp, ": positions must be >= 0, got ", v, " (positions ",
                 shape_str(positions.shape()), ")");

  Tensor y = rope_kernel(x, positions, base, /*inverse=*/false);
  if (auto n = autograd::make_node<RopeBackward>({&x}, base)) {
    n->save(positions);
    autograd::set_history(n, {&y});
  }
  return y;
}

}  // namespace strand::ops
