// Dropout: the mask is regenerated from (seed, offsets) in the backward instead of being saved.
#include "framework/ops/dropout.h"

#include "framework/autograd/node.h"
#include "framework/backend/dropout.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

// Maps src to dst (contiguous, same shape) through the mask of (seed, offset) or, with row
// offsets, of (seed, row_offsets[r] + c) for rows of `row_len` elements.
void apply_mask(const char* op, const Tensor& src, const Tensor& dst, double p, uint64_t seed, uint64_t offset,
                const std::vector<uint64_t>& row_offsets, int64_t row_len) {
  check_float_dtype(op, src.dtype());
  backend::DropoutParams k;
  k.device = src.device();
  k.dtype = src.dtype();
  k.x = src.raw_data();
  k.y = dst.raw_data();
  k.n = src.numel();
  k.p = p;
  k.seed = seed;
  k.offset = offset;
  if (!row_offsets.empty()) {
    k.row_offsets = row_offsets.data();
    k.rows = static_cast<int64_t>(row_offsets.size());
    k.row_len = row_len;
  }
  backend::dropout(k);
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
    Tensor dx = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
    apply_mask("dropout backward", gc, dx, p, seed, offset, row_offsets, row_len);
    return {dx};
  }
};

Tensor dropout_impl(const Tensor& x, double p, uint64_t seed, uint64_t offset, std::vector<uint64_t> row_offsets) {
  check_float("dropout", x);
  STRAND_CHECK(p >= 0.0 && p < 1.0, ValueError, "dropout: p must be in [0, 1), got ", p, " (input ",
               shape_str(x.shape()), ")");
  const int64_t row_len = x.dim() == 0 ? 1 : x.size(-1);
  if (p == 0.0) return x;  // nothing dropped: no copy, no graph node
  Tensor xc = contiguous_data(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  apply_mask("dropout", xc, y, p, seed, offset, row_offsets, row_len);
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
