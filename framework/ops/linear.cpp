// ops::linear: the fused mixed-precision linear layer (Note [Mixed precision] in
// nn/autocast.h) with its hand-written backward.
#include "framework/ops/linear.h"

#include "framework/autograd/node.h"
#include "framework/backend/column_sum.h"
#include "framework/backend/gemm.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

// w [K, N] rounded to `dtype` in its storage order: a contiguous copy, or, for the transpose
// of a contiguous [N, K] matrix, the transposed view of that matrix's rounded copy (no
// element-by-element transpose).
struct Rounded {
  Tensor t;             // [K, N]: contiguous, or a transposed view of a contiguous [N, K]
  bool transposed = false;
};

Tensor swap_axes(const Tensor& t) {
  return t.as_strided({t.size(1), t.size(0)}, {t.strides()[1], t.strides()[0]}, t.offset());
}

Tensor rounded_copy(const Tensor& t, DType dtype) {
  return t.dtype() == dtype ? contiguous_data(t) : t.copy_as(dtype, t.device());
}

Rounded round_weight(const Tensor& w, DType dtype) {
  if (!w.is_contiguous() && w.size(0) > 1 && w.size(1) > 1 && swap_axes(w).is_contiguous())
    return {swap_axes(rounded_copy(swap_axes(w), dtype)), true};
  return {rounded_copy(w, dtype), false};
}

// How the GEMM reads a [rows, cols] matrix `t` that is contiguous or a transposed contiguous one.
backend::GemmOperand operand(const Tensor& t, bool transposed, bool flip = false) {
  return {t.raw_data(), transposed ? t.size(0) : t.size(1), transposed != flip};
}

// C [m, n] (contiguous, c's dtype) = op(A) @ op(B) in `dtype`, plus an optional bias row.
void product(DType dtype, const backend::GemmOperand& a, const backend::GemmOperand& b, const Tensor& c, int64_t m,
             int64_t n, int64_t k, const void* bias = nullptr) {
  backend::GemmParams p;
  p.device = c.device();
  p.dtype = dtype;
  if (c.dtype() != dtype) p.c_dtype = c.dtype();
  p.m = m;
  p.n = n;
  p.k = k;
  p.a = a;
  p.b = b;
  p.c = c.raw_data();
  p.ldc = std::max<int64_t>(n, 1);
  p.bias = bias;
  backend::gemm(p);
}

struct LinearBackward final : Node {
  DType compute;
  bool has_bias, w_transposed, w_leaf;
  size_t x_slot = 0, w_slot = 0;  // the rounded x (for dw) and w (for dx)
  LinearBackward(DType c, bool bias, bool transposed, bool leaf)
      : Node("linear"), compute(c), has_bias(bias), w_transposed(transposed), w_leaf(leaf) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    const DType master = input_meta[1].dtype, x_dtype = input_meta[0].dtype;
    const Shape& w_shape = input_meta[1].shape;
    const int64_t k = w_shape[0], n = w_shape[1];
    const Tensor g = contiguous_data(grads[0]);
    const int64_t m = g.numel() / std::max<int64_t>(n, 1);
    const bool need_x = next_edges[0].node != nullptr, need_w = next_edges[1].node != nullptr;
    const bool need_b = has_bias && next_edges[2].node != nullptr;

    // One pass over g: its rounded copy (the GEMMs' operand) and its column sums (the bias gradient).
    Tensor g16 = compute == master ? g : Tensor::empty({m, n}, compute, g.device());
    Tensor db = need_b ? Tensor::empty({n}, master, g.device()) : Tensor();
    if (compute != master || need_b) {
      backend::ColumnSumCastParams p;
      p.device = g.device();
      p.dtype = master;
      p.out_dtype = compute;
      p.rows = m;
      p.n = n;
      p.x = g.raw_data();
      p.out = compute != master ? g16.raw_data() : nullptr;
      p.sum = need_b ? db.raw_data() : nullptr;
      backend::column_sum_cast(p);
    }
    const backend::GemmOperand gop{g16.raw_data(), n, false};
    Tensor dx, dw;
    if (need_x) {  // dx [M, K] = g [M, N] @ w^T, in x's dtype
      const Tensor w16 = saved(w_slot);
      dx = Tensor::empty(input_meta[0].shape, x_dtype, g.device());
      product(compute, gop, operand(w16, w_transposed, /*flip=*/true), dx, m, k, n);
    }
    if (need_w) {
      const Tensor x16 = saved(x_slot);
      const backend::GemmOperand xop{x16.raw_data(), k, false};
      if (!w_transposed) {  // dw [K, N] = x^T @ g
        dw = Tensor::empty({k, n}, master, g.device());
        product(compute, {xop.data, k, true}, gop, dw, k, n, m);
      } else {  // dw^T [N, K] = g^T @ x, handed back as the [K, N] view of it
        const Tensor dwt = Tensor::empty({n, k}, master, g.device());
        product(compute, {gop.data, n, true}, xop, dwt, n, k, m);
        // A view op before w (the LM head's transpose) turns it back without a copy; a leaf
        // takes a contiguous gradient.
        dw = w_leaf ? contiguous_data(swap_axes(dwt)) : swap_axes(dwt);
      }
    }
    if (!has_bias) return {dx, dw};
    return {dx, dw, db};
  }
};

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias, DType compute) {
  STRAND_CHECK(x.defined() && w.defined(), ValueError, "linear: an input is undefined");
  const Device device = check_same_device("linear", {&x, &w, &bias});
  STRAND_CHECK(device.is_cpu(), DeviceError, "linear: the fused mixed-precision linear runs on the cpu only, got ",
               device.str());
  check_float("linear", w);
  const DType master = w.dtype();
  STRAND_CHECK(compute == master || (master == DType::F32 && (compute == DType::BF16 || compute == DType::F16)),
               DTypeError, "linear: computes in ", dtype_name(master), ", or in bfloat16/float16 for a float32 weight; got ",
               dtype_name(compute));
  STRAND_CHECK(x.dtype() == master || x.dtype() == compute, DTypeError, "linear: input ", describe(x), " is neither ",
               dtype_name(master), " nor ", dtype_name(compute));
  STRAND_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(0), ShapeError, "linear: input ", describe(x),
               " does not end in the ", w.dim() == 2 ? w.size(0) : -1, " rows of weight ", describe(w));
  const int64_t k = w.size(0), n = w.size(1);
  STRAND_CHECK(!bias.defined() || (bias.dtype() == master && bias.dim() == 1 && bias.size(0) == n), ShapeError,
               "linear: bias must be ", dtype_name(master), " [", n, "], got ", describe(bias));

  const Tensor x16 = rounded_copy(x, compute);
  const Rounded w16 = round_weight(w, compute);
  const Tensor b = bias.defined() ? contiguous_data(bias) : Tensor();
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(n);
  Tensor y = Tensor::empty(out_shape, master, device);
  const int64_t m = x.numel() / std::max<int64_t>(k, 1);
  product(compute, {x16.raw_data(), std::max<int64_t>(k, 1), false}, operand(w16.t, w16.transposed), y, m, n, k,
          b.defined() ? b.raw_data() : nullptr);

  std::vector<const Tensor*> inputs{&x, &w};
  if (bias.defined()) inputs.push_back(&bias);
  if (auto node = autograd::make_node_n<LinearBackward>(inputs, compute, bias.defined(), w16.transposed, w.is_leaf())) {
    if (node->next_edges[0].node) node->w_slot = node->save(w16.t);
    if (node->next_edges[1].node) node->x_slot = node->save(x16);
    autograd::set_history(node, {&y});
  }
  return y;
}

}  // namespace strand::ops
