// Dropout: the mask is regenerated from (seed, offsets) in the backward instead of being saved.
#include "framework/ops/dropout.h"

#include "framework/autograd/node.h"
#include "framework/backend/cpu/dropout.h"
#include "framework/backend/cpu/loops.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

// Maps src to dst (both contiguous, n elements) through the mask of (seed, offset) or, with
// row offsets, of (seed, row_offsets[r] + c) for rows of `row_len` elements.
template <class T>
void apply_mask(const T* src, T* dst, int64_t n, double p, uint64_t seed, uint64_t offset,
                const std::vector<uint64_t>& row_offsets, int64_t row_len) {
  if (row_offsets.empty()) {
    cpu::dropout_apply<T>(src, dst, n, p, seed, offset);
    return;
  }
  const int64_t rows = static_cast<int64_t>(row_offsets.size());
  // Each row is one kernel call on its own counters; rows are independent, so any split of them
  // over threads gives the same bits.
  #pragma omp parallel for if (n > cpu::kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    cpu::dropout_apply<T>(src + r * row_len, dst + r * row_len, row_len, p, seed, row_offsets[static_cast<size_t>(r)]);
  }
}

struct DropoutBackward final : Node {
  double p;
  uint64_t seed, offset;
  std::vector<uint64_t> row_offsets;  // empty: one offset for the whole tensor
  int64_t row_len;
  DropoutBackward(double pp, uint64_t s, uint64_t o, std::vector<uint64_t> rows, int64_t len)
      : Node("dropout"), p(pp), seed(s), offset(o), row_offsets(std::move(rows)), row_len(len) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    // dy/dx is the same mask and scale, so the kernel maps the gradient as it mapped x.
    Tensor gc = contiguous_data(g[0]);
    Tensor dx = Tensor::empty(gc.shape(), gc.dtype());
    dispatch_float("dropout backward", gc.dtype(), [&]<class T>() {
      apply_mask<T>(gc.data<T>(), dx.data<T>(), gc.numel(), p, seed, offset, row_offsets, row_len);
    });
    return {dx};
  }
};

Tensor dropout_impl(const Tensor& x, double p, uint64_t seed, uint64_t offset, std::vector<uint64_t> row_offsets) {
  check_cpu("dropout", {&x});
  check_float("dropout", x);
  STRAND_CHECK(p >= 0.0 && p < 1.0, ValueError, "dropout: p must be in [0, 1), got ", p, " (input ",
               shape_str(x.shape()), ")");
  const int64_t row_len = x.dim() == 0 ? 1 : x.size(-1);
  if (p == 0.0) return x;  // nothing dropped: no copy, no graph node
  Tensor xc = contiguous_data(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float("dropout", x.dtype(), [&]<class T>() {
    apply_mask<T>(xc.data<T>(), y.data<T>(), xc.numel(), p, seed, offset, row_offsets, row_len);
  });
  if (auto n = autograd::make_node<DropoutBackward>({&x}, p, seed, offset, std::move(row_offsets), row_len))
    autograd::set_history(n, {&y});
  return y;
}

}  // namespace

Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
  return dropout_impl(x, p, seed, offset, {});
}

Tensor dropout(const Tensor& x, double p, uint64_t seed, std::vector<uint64_t> row_offsets) {
  const int64_t row_len = x.dim() == 0 ? 1 : x.size(-1);
  const int64_t rows = row_len == 0 ? 0 : x.numel() / row_len;
  STRAND_CHECK(static_cast<int64_t>(row_offsets.size()) == rows, ShapeError, "dropout: ", row_offsets.size(),
               " row offsets for input ", shape_str(x.shape()), " (", rows, " rows of ", row_len, ")");
  return dropout_impl(x, p, seed, 0, std::move(row_offsets));
}

}  // namespace strand::ops
