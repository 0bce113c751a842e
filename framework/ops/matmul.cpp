// Matrix products through backend::gemm, with views passed to BLAS as transposes, and the
// hand-written backward: dA = dC @ B^T, dB = A^T @ dC (summed over the batch for a shared B).
// Two bfloat16 (or float16) operands give a float32 product (Note [Mixed precision] in
// framework/nn/autocast.h).
#include "framework/ops/matmul.h"

#include <algorithm>
#include <optional>

#include "framework/autograd/node.h"
#include "framework/backend/gemm.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

// How BLAS reads a strided [rows, cols] matrix: row-major with leading dimension ld, or the
// transpose of one. Size-1 axes accept any stride.
struct MatrixLayout {
  int64_t ld;
  bool trans;
};

std::optional<MatrixLayout> blas_layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  const int64_t min_ld_rows = std::max<int64_t>(cols, 1), min_ld_cols = std::max<int64_t>(rows, 1);
  if (rows == 0 || cols == 0) return MatrixLayout{min_ld_rows, false};  // BLAS reads nothing
  if (cols == 1 || col_stride == 1) {
    if (rows == 1) return MatrixLayout{min_ld_rows, false};
    if (row_stride >= min_ld_rows) return MatrixLayout{row_stride, false};
  }
  if (rows == 1 || row_stride == 1) {
    if (cols == 1) return MatrixLayout{min_ld_cols, true};
    if (col_stride >= min_ld_cols) return MatrixLayout{col_stride, true};
  }
  return std::nullopt;  // e.g. a stride-0 (expanded) axis, or a step-2 slice of columns
}

// The last two axes of t as BLAS reads them; t itself, or a contiguous copy when no layout fits.
struct MatrixArg {
  Tensor data;
  MatrixLayout layout;
};

MatrixArg matrix_arg(const Tensor& t) {
  const int64_t nd = t.dim();
  auto layout = [](const Tensor& x, int64_t d) {
    return blas_layout(x.shape()[d - 2], x.shape()[d - 1], x.strides()[d - 2], x.strides()[d - 1]);
  };
  if (auto l = layout(t, nd)) return {t, *l};
  Tensor c = contiguous_data(t);
  return {c, *layout(c, nd)};  // a contiguous matrix always has a row-major layout
}

Shape batch_shape(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }
Shape batch_strides(const Tensor& t) { return Shape(t.strides().begin(), t.strides().end() - 2); }

// [..., R, C] -> [R, C] with the last two axes swapped: a view, no copy, no gradient recorded.
Tensor matrix_transpose(const Tensor& t) {
  Shape shape = t.shape(), strides = t.strides();
  std::swap(shape[shape.size() - 1], shape[shape.size() - 2]);
  std::swap(strides[strides.size() - 1], strides[strides.size() - 2]);
  return t.as_strided(shape, strides, t.offset());
}

// t [..., R, C] viewed as one matrix [prod(...) * R, C], when the batch axes and R step through
// memory with a single stride (true of any contiguous activation): one large GEMM instead of many.
std::optional<Tensor> flatten_rows(const Tensor& t) {
  const int64_t nd = t.dim();
  int64_t rows = 1, row_stride = 0;
  bool found = false;
  for (int64_t d = nd - 2; d >= 0; --d) {
    const int64_t size = t.shape()[d], stride = t.strides()[d];
    if (size == 1) continue;
    if (!found) {
      row_stride = stride;
      found = true;
    } else if (stride != row_stride * rows) {
      return std::nullopt;
    }
    rows *= size;
  }
  if (!found) row_stride = std::max<int64_t>(t.shape()[nd - 1], 1);
  return t.as_strided({rows, t.shape()[nd - 1]}, {row_stride, t.strides()[nd - 1]}, t.offset());
}

backend::GemmOperand gemm_operand(const MatrixArg& m) { return {m.data.raw_data(), m.layout.ld, m.layout.trans}; }

// out[M, N] = A[M, K] @ B[K, N] (per batch entry; the caller sets the batch fields).
backend::GemmParams gemm_params(const MatrixArg& a, const MatrixArg& b, const Tensor& out, int64_t m, int64_t n,
                                int64_t k) {
  backend::GemmParams p;
  p.device = out.device();
  p.dtype = out.dtype();
  p.m = m;
  p.n = n;
  p.k = k;
  p.a = gemm_operand(a);
  p.b = gemm_operand(b);
  p.c = out.raw_data();
  p.ldc = std::max<int64_t>(n, 1);
  return p;
}

bool is_low_precision(DType t) { return t == DType::BF16 || t == DType::F16; }

// A bfloat16/float16 operand as float32 (exact: every such value is a float32), since the
// float32 GEMM kernel accumulates in float32 as a bf16 x bf16 -> f32 GEMM does.
Tensor widen(const Tensor& t) { return is_low_precision(t.dtype()) ? t.copy_as(DType::F32, t.device()) : t; }

// a [..., M, K] @ b [K, N] (shared) or b [..., K, N] (a's batch axes) into a fresh contiguous
// [..., M, N], written once by BLAS. Records no gradient; forward and backward both use it.
// Two low-precision operands give a float32 product, or one of their dtype when low_out is set
// (the GEMM rounds its float32 sums once).
Tensor matmul_values(const Tensor& a_in, const Tensor& b_in, bool low_out = false) {
  // Two operands of one low precision go to the GEMM as they are, with a float32 C (the
  // backend sums in float32: oneDNN's bf16 dot products where the CPU has them); a mix is
  // widened to float32 first.
  const bool low = is_low_precision(a_in.dtype()) && a_in.dtype() == b_in.dtype();
  const Tensor a = low ? a_in : widen(a_in), b = low ? b_in : widen(b_in);
  const bool shared_b = b.dim() == 2;
  Shape out_shape = batch_shape(a);
  out_shape.push_back(a.size(-2));
  out_shape.push_back(b.size(-1));
  const DType c_dtype = low && !low_out ? DType::F32 : a.dtype();
  Tensor out = Tensor::empty(out_shape, c_dtype, a.device());

  Tensor lhs = a;
  if (shared_b && a.dim() > 2)
    if (auto flat = flatten_rows(a)) lhs = *flat;  // out is contiguous, so it flattens the same way
  const MatrixArg A = matrix_arg(lhs), B = matrix_arg(b);
  Shape batch = batch_shape(lhs);
  backend::GemmParams p = gemm_params(A, B, out, lhs.size(-2), b.size(-1), a.size(-1));
  p.a_batch_strides = batch_strides(A.data);
  p.b_batch_strides = shared_b ? Shape(batch.size(), 0) : batch_strides(B.data);
  p.c_batch_strides = Shape(out.strides().begin(), out.strides().begin() + static_cast<int64_t>(batch.size()));
  p.batch = std::move(batch);
  if (low) {
    p.dtype = a.dtype();
    p.c_dtype = c_dtype;
  }
  backend::gemm(p);
  return out;
}

// Sum over the batch of a_i^T @ g_i -> [K, N], for a [..., M, K] and g [..., M, N]: the
// gradient of a shared right-hand matrix. One GEMM over the flattened rows when both flatten.
// Two low-precision operands stay as they are (a float32 result, or one of their dtype with
// low_out where the rows flatten into one product); a mix is widened.
Tensor matmul_tn_summed(const Tensor& a_in, const Tensor& g_in, bool low_out = false) {
  const bool low = is_low_precision(a_in.dtype()) && a_in.dtype() == g_in.dtype();
  const Tensor a = low ? a_in : widen(a_in), g = low ? g_in : widen(g_in);
  auto flat_a = flatten_rows(a), flat_g = flatten_rows(g);
  if (flat_a && flat_g) return matmul_values(matrix_transpose(*flat_a), *flat_g, low_out);
  Tensor out = Tensor::empty({a.size(-1), g.size(-1)}, low ? DType::F32 : a.dtype(), a.device());
  const MatrixArg A = matrix_arg(matrix_transpose(a)), G = matrix_arg(g);
  backend::GemmParams p = gemm_params(A, G, out, a.size(-1), g.size(-1), a.size(-2));
  p.batch = batch_shape(a);
  p.a_batch_strides = batch_strides(A.data);
  p.b_batch_strides = batch_strides(G.data);
  p.sum_over_batch = true;
  if (low) {
    p.dtype = a.dtype();
    p.c_dtype = DType::F32;
  }
  backend::gemm(p);
  return out;
}

struct MatmulBackward final : Node {
  bool shared_b;
  size_t a_slot = 0, b_slot = 0;  // where a (needed for dB) and b (needed for dA) were saved
  explicit MatmulBackward(bool shared) : Node("matmul"), shared_b(shared) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    // Two low-precision operands (autocast): the float32 output gradient is rounded to their
    // dtype once, so that both products run on the low-precision GEMM, as under PyTorch's
    // autocast, where the product and so its gradient are bfloat16. Each operand's gradient is
    // then written in its dtype by the GEMM (float32 sums rounded once).
    const DType ta = input_meta[0].dtype, tb = input_meta[1].dtype;
    const bool low = is_low_precision(ta) && ta == tb;
    const Tensor go = low && g[0].dtype() != ta ? g[0].copy_as(ta, g[0].device()) : g[0];
    Tensor da, db;
    if (next_edges[0].node) da = matmul_values(go, matrix_transpose(saved(b_slot)), low);
    if (next_edges[1].node) {
      Tensor a = saved(a_slot);
      db = shared_b ? matmul_tn_summed(a, go, low) : matmul_values(matrix_transpose(a), go, low);
    }
    // A low-precision operand takes its gradient in its own dtype (rounded from float32).
    if (da.defined() && is_low_precision(ta) && da.dtype() != ta) da = da.copy_as(ta, da.device());
    if (db.defined() && is_low_precision(tb) && db.dtype() != tb) db = db.copy_as(tb, db.device());
    return {da, db};
  }
};

void check_matmul_inputs(const Tensor& a, const Tensor& b) {
  STRAND_CHECK(a.defined() && b.defined(), ValueError, "matmul: an input is undefined");
  check_same_device("matmul", {&a, &b});
  check_same_dtype("matmul", a, b);
  if (!is_low_precision(a.dtype())) check_float("matmul", a);
  STRAND_CHECK(a.dim() >= 2 && b.dim() >= 2, ShapeError,
               "matmul: expects a [..., M, K] and b [K, N] or [..., K, N] (reshape a vector to [1, K] or "
               "[K, 1]), got a ",
               a.shape(), " and b ", b.shape());
  STRAND_CHECK(a.size(-1) == b.size(-2), ShapeError, "matmul: inner dimensions differ, a ", a.shape(),
               " has K = ", a.size(-1), " but b ", b.shape(), " has K = ", b.size(-2));
  STRAND_CHECK(b.dim() == 2 || (b.dim() == a.dim() && batch_shape(a) == batch_shape(b)), ShapeError,
               "matmul: batch axes differ, a ", a.shape(), " and b ", b.shape(),
               " (b must be [K, N] or carry a's batch axes)");
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_matmul_inputs(a, b);
  Tensor y = matmul_values(a, b);
  if (auto n = autograd::make_node<MatmulBackward>({&a, &b}, b.dim() == 2)) {
    // Save only what a needed gradient reads: dA needs b, dB needs a.
    if (n->next_edges[0].node) n->b_slot = n->save(b);
    if (n->next_edges[1].node) n->a_slot = n->save(a);
    autograd::set_history(n, {&y});
  }
  return y;
}

}  // namespace strand::ops
