// Dropout: the mask is regenerated from (seed, offset) in the backward instead of being saved.
#include "framework/ops/dropout.h"

#include "framework/autograd/node.h"
#include "framework/backend/cpu/dropout.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

struct DropoutBackward final : Node {
  double p;
  uint64_t seed, offset;
  DropoutBackward(double pp, uint64_t s, uint64_t o) : Node("dropout"), p(pp), seed(s), offset(o) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    // dy/dx is the same mask and scale, so the kernel maps the gradient as it mapped x.
    Tensor gc = contiguous_data(g[0]);
    Tensor dx = Tensor::empty(gc.shape(), gc.dtype());
    dispatch_float("dropout backward", gc.dtype(), [&]<class T>() {
      cpu::dropout_apply<T>(gc.data<T>(), dx.data<T>(), gc.numel(), p, seed, offset);
    });
    return {dx};
  }
};

}  // namespace

Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  check_cpu("dropout", {&x});
  check_float("dropout", x);
  STRAND_CHECK(p >= 0.0 && p < 1.0, ValueError, "dropout: p must be in [0, 1), got ", p, " (input ",
               shape_str(x.shape()), ")");
  if (p == 0.0) return x;  // nothing dropped: no copy, no graph node
  Tensor xc = contiguous_data(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float("dropout", x.dtype(), [&]<class T>() {
    cpu::dropout_apply<T>(xc.data<T>(), y.data<T>(), xc.numel(), p, seed, offset);
  });
  if (auto n = autograd::make_node<DropoutBackward>({&x}, p, seed, offset)) autograd::set_history(n, {&y});
  return y;
}

}  // namespace strand::ops
