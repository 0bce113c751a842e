// The chunked LM head + cross-entropy: per chunk of rows one GEMM for the logits, the fused
// cross-entropy kernels on them, and (backward) the logits recomputed, dlogits formed in place
// of nothing larger than the chunk, then dh and dweight by two more GEMMs. The distillation
// term (student against teacher logits) is chunked the same way.
#include "framework/ops/chunked_loss.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "framework/autograd/node.h"
#include "framework/backend/cross_entropy.h"
#include "framework/backend/distill_loss.h"
#include "framework/backend/elementwise.h"
#include "framework/backend/gemm.h"
#include "framework/ops/dispatch.h"
#include "framework/ops/join.h"
#include "framework/ops/loss.h"
#include "framework/ops/reduce.h"

namespace strand::ops {
namespace {

using autograd::Node;

// Pointer to row `row` of a contiguous [*, cols] tensor (device-neutral arithmetic on the address).
void* row_ptr(const Tensor& t, int64_t row, int64_t cols) {
  return static_cast<char*>(t.raw_data()) + static_cast<size_t>(row * cols) * dtype_size(t.dtype());
}

// C[m, n] = op(A) @ op(B), all row-major with the given leading dimensions.
void gemm(const Tensor& like, int64_t m, int64_t n, int64_t k, const void* a, int64_t lda, bool ta, const void* b,
          int64_t ldb, bool tb, void* c, int64_t ldc) {
  backend::GemmParams p;
  p.device = like.device();
  p.dtype = like.dtype();
  p.m = m;
  p.n = n;
  p.k = k;
  p.a = {a, lda, ta};
  p.b = {b, ldb, tb};
  p.c = c;
  p.ldc = ldc;
  backend::gemm(p);
}

// The logits of rows [r0, r0 + rows) into buf [>= rows, V]: h_rows @ weight^T.
void chunk_logits(const Tensor& h, const Tensor& weight, int64_t r0, int64_t rows, const Tensor& buf) {
  const int64_t C = h.size(1), V = weight.size(0);
  gemm(h, rows, V, C, row_ptr(h, r0, C), C, false, weight.raw_data(), C, true, buf.raw_data(), V);
}

// dh rows = dlogits @ weight and dweight (+)= dlogits^T @ h rows, for the chunk at r0; `part`
// holds a later chunk's dweight before it is added to dw, in chunk order.
void chunk_head_backward(const Tensor& h, const Tensor& weight, const Tensor& dlogits, int64_t r0, int64_t rows,
                         bool want_dh, bool want_dw, const Tensor& dh, const Tensor& dw, const Tensor& part) {
  const int64_t C = h.size(1), V = weight.size(0);
  if (want_dh) gemm(h, rows, C, V, dlogits.raw_data(), V, false, weight.raw_data(), C, false, row_ptr(dh, r0, C), C);
  if (!want_dw) return;
  const Tensor& into = r0 == 0 ? dw : part;
  gemm(h, V, C, rows, dlogits.raw_data(), V, true, row_ptr(h, r0, C), C, false, into.raw_data(), C);
  if (r0 > 0) {
    backend::AxpyParams a;
    a.device = dw.device();
    a.dtype = dw.dtype();
    a.n = dw.numel();
    a.dst = dw.raw_data();
    a.src = part.raw_data();
    backend::axpy(a);
  }
}

struct ChunkedLossBackward final : Node {
  int64_t chunk;
  int32_t ignore_index;
  int64_t count;  // divisor of the loss: targets not ignored (Mean) or 1 (Sum)
  ChunkedLossBackward(int64_t c, int32_t ignore, int64_t n) : Node("chunked_cross_entropy"), chunk(c), ignore_index(ignore), count(n) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const Tensor h = saved(0), weight = saved(1), targets = saved(2), lse = saved(3);
    const int64_t N = h.size(0), V = weight.size(0);
    const bool want_dh = next_edges[0].node != nullptr, want_dw = next_edges[1].node != nullptr;
    Tensor dh = Tensor::empty(h.shape(), h.dtype(), h.device());
    Tensor dw = Tensor::empty(weight.shape(), weight.dtype(), weight.device());
    if (count == 0 || N == 0) {  // every target ignored (or no rows): the loss is the constant 0
      dh.fill_(0.0);
      dw.fill_(0.0);
      return {dh, dw, Tensor()};
    }
    const double scale = g[0].item() / static_cast<double>(count);
    const int64_t rows_max = std::min(chunk, N);
    const Tensor logits = Tensor::empty({rows_max, V}, h.dtype(), h.device());
    const Tensor dlogits = Tensor::empty({rows_max, V}, h.dtype(), h.device());
    Tensor part;  // one chunk's dweight, added to dw in chunk order
    if (want_dw && N > rows_max) part = Tensor::empty(weight.shape(), weight.dtype(), weight.device());
    for (int64_t r0 = 0; r0 < N; r0 += rows_max) {
      const int64_t rows = std::min(rows_max, N - r0);
      chunk_logits(h, weight, r0, rows, logits);
      backend::CrossEntropyParams p;
      p.device = h.device();
      p.dtype = h.dtype();
      p.op = backend::CrossEntropyOp::Backward;
      p.logits = logits.raw_data();
      p.ld = V;
      p.N = rows;
      p.V = V;
      p.targets = targets.data<int32_t>() + r0;
      p.ignore_index = ignore_index;
      p.lse = row_ptr(lse, r0, 1);
      p.scale = scale;
      p.dlogits = dlogits.raw_data();
      backend::cross_entropy(p);
      chunk_head_backward(h, weight, dlogits, r0, rows, want_dh, want_dw, dh, dw, part);
    }
    return {want_dh ? dh : Tensor(), want_dw ? dw : Tensor(), Tensor()};
  }
};


struct ChunkedDistillBackward final : Node {
  int64_t chunk;
  int32_t ignore_index;
  double temperature;
  int64_t count;  // divisor of the loss
  ChunkedDistillBackward(int64_t c, int32_t ignore, double t, int64_t n)
      : Node("chunked_distill_loss"), chunk(c), ignore_index(ignore), temperature(t), count(n) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const Tensor h = saved(0), weight = saved(1), th = saved(2), tw = saved(3), targets = saved(4);
    const Tensor lse_s = saved(5), lse_t = saved(6);
    const int64_t N = h.size(0), V = weight.size(0);
    const bool want_dh = next_edges[0].node != nullptr, want_dw = next_edges[1].node != nullptr;
    Tensor dh = Tensor::zeros(h.shape(), h.dtype(), h.device());
    Tensor dw = Tensor::zeros(weight.shape(), weight.dtype(), weight.device());
    if (count == 0 || N == 0) return {dh, dw};
    const int64_t rows_max = std::min(chunk, N);
    const Tensor logits = Tensor::empty({rows_max, V}, h.dtype(), h.device());
    const Tensor teacher = Tensor::empty({rows_max, V}, h.dtype(), h.device());
    const Tensor dlogits = Tensor::empty({rows_max, V}, h.dtype(), h.device());
    Tensor part;
    if (want_dw && N > rows_max) part = Tensor::empty(weight.shape(), weight.dtype(), weight.device());
    backend::DistillLossParams p;
    p.device = h.device();
    p.dtype = h.dtype();
    p.op = backend::DistillLossOp::Backward;
    p.ld = V;
    p.V = V;
    p.ignore_index = ignore_index;
    p.temperature = temperature;
    p.scale = g[0].item() / static_cast<double>(count);
    for (int64_t r0 = 0; r0 < N; r0 += rows_max) {
      const int64_t rows = std::min(rows_max, N - r0);
      chunk_logits(h, weight, r0, rows, logits);
      chunk_logits(th, tw, r0, rows, teacher);
      p.student = logits.raw_data();
      p.teacher = teacher.raw_data();
      p.N = rows;
      p.targets = targets.data<int32_t>() + r0;
      p.lse_student = row_ptr(lse_s, r0, 1);
      p.lse_teacher = row_ptr(lse_t, r0, 1);
      p.dstudent = dlogits.raw_data();
      backend::distill_loss(p);
      chunk_head_backward(h, weight, dlogits, r0, rows, want_dh, want_dw, dh, dw, part);
    }
    return {want_dh ? dh : Tensor(), want_dw ? dw : Tensor()};
  }
};

}  // namespace

int64_t auto_chunk_rows(int64_t vocab, DType dtype, int64_t target_bytes) {
  const int64_t row_bytes = std::max<int64_t>(vocab, 1) * static_cast<int64_t>(dtype_size(dtype));
  return std::max<int64_t>(1, target_bytes / row_bytes);
}

ChunkedLoss chunked_cross_entropy(const Tensor& h, const Tensor& weight, const Tensor& targets, int64_t chunk_rows,
                                  int32_t ignore_index, Reduction reduction) {
  const char* op = "chunked_cross_entropy";
  const Device device = check_same_device(op, {&h, &weight, &targets});
  check_float(op, h);
  check_same_dtype(op, h, weight);
  STRAND_CHECK(targets.dtype() == DType::I32, DTypeError, op, ": targets must be int32, got ", describe(targets));
  STRAND_CHECK(h.dim() == 2 && weight.dim() == 2 && h.size(1) == weight.size(1), ShapeError, op, ": h ",
               shape_str(h.shape()), " must be [N, C] and weight ", shape_str(weight.shape()), " [V, C]");
  STRAND_CHECK(targets.dim() == 1 && targets.size(0) == h.size(0), ShapeError, op, ": targets ",
               shape_str(targets.shape()), " must be [N] for h ", shape_str(h.shape()));
  STRAND_CHECK(chunk_rows > 0, ValueError, op, ": chunk_rows must be positive, got ", chunk_rows);
  const int64_t N = h.size(0), V = weight.size(0);
  const Tensor hc = contiguous_data(h), wc = contiguous_data(weight), tc = contiguous_data(targets);

  const int64_t count = checked_target_count(tc, V, ignore_index, h.dtype(), op);
  backend::CrossEntropyParams p;
  p.device = device;
  p.dtype = h.dtype();
  p.N = N;
  p.V = V;
  p.targets = tc.data<int32_t>();
  p.ignore_index = ignore_index;
  const int64_t divisor = reduction == Reduction::Mean ? count : 1;

  const Tensor lse = Tensor::empty({N}, h.dtype(), device);
  std::vector<double> row_loss(static_cast<size_t>(N));  // host memory
  std::vector<Tensor> best;
  const int64_t rows_max = std::max<int64_t>(1, std::min(chunk_rows, N));
  const Tensor logits = Tensor::empty({rows_max, V}, h.dtype(), device);
  for (int64_t r0 = 0; r0 < N; r0 += rows_max) {
    const int64_t rows = std::min(rows_max, N - r0);
    chunk_logits(hc, wc, r0, rows, logits);
    p.op = backend::CrossEntropyOp::Forward;
    p.logits = logits.raw_data();
    p.ld = V;
    p.N = rows;
    p.targets = tc.data<int32_t>() + r0;
    p.lse = row_ptr(lse, r0, 1);
    p.row_loss = row_loss.data() + r0;
    backend::cross_entropy(p);
    best.push_back(argmax(logits.as_strided({rows, V}, {V, 1}, 0), -1));
  }
  double total = 0.0;  // summed in row order, as the unchunked path: the same bits for equal rows
  for (double l : row_loss) total += l;
  const double loss = divisor > 0 ? total / static_cast<double>(divisor) : 0.0;

  ChunkedLoss out;
  out.loss = Tensor::full({}, loss, h.dtype(), device);
  out.predictions = best.empty() ? Tensor::empty({0}, DType::I32, device) : best.size() == 1 ? best[0] : concat(best, 0);
  if (auto n = autograd::make_node<ChunkedLossBackward>({&h, &weight, &targets}, rows_max, ignore_index, divisor)) {
    n->save(hc);
    n->save(wc);
    n->save(tc);
    n->save(lse);
    autograd::set_history(n, {&out.loss});
  }
  return out;
}


Tensor chunked_distill_loss(const Tensor& h, const Tensor& weight, const Tensor& teacher_h,
                            const Tensor& teacher_weight, const Tensor& targets, double temperature,
                            int64_t chunk_rows, int32_t ignore_index, Reduction reduction) {
  const char* op = "chunked_distill_loss";
  const Device device = check_same_device(op, {&h, &weight, &teacher_h, &teacher_weight, &targets});
  check_float(op, h);
  check_same_dtype(op, h, weight);
  check_same_dtype(op, h, teacher_h);
  check_same_dtype(op, h, teacher_weight);
  STRAND_CHECK(targets.dtype() == DType::I32, DTypeError, op, ": targets must be int32, got ", describe(targets));
  STRAND_CHECK(h.dim() == 2 && weight.dim() == 2 && h.size(1) == weight.size(1), ShapeError, op, ": h ",
               shape_str(h.shape()), " must be [N, C] and weight ", shape_str(weight.shape()), " [V, C]");
  STRAND_CHECK(teacher_h.dim() == 2 && teacher_weight.dim() == 2 && teacher_h.size(1) == teacher_weight.size(1) &&
                   teacher_h.size(0) == h.size(0) && teacher_weight.size(0) == weight.size(0),
               ShapeError, op, ": teacher_h ", shape_str(teacher_h.shape()), " must be [N, Ct] and teacher_weight ",
               shape_str(teacher_weight.shape()), " [V, Ct] for h ", shape_str(h.shape()), " and weight ",
               shape_str(weight.shape()));
  STRAND_CHECK(targets.dim() == 1 && targets.size(0) == h.size(0), ShapeError, op, ": targets ",
               shape_str(targets.shape()), " must be [N] for h ", shape_str(h.shape()));
  STRAND_CHECK(chunk_rows > 0, ValueError, op, ": chunk_rows must be positive, got ", chunk_rows);
  STRAND_CHECK(temperature > 0 && std::isfinite(temperature), ValueError, op, ": temperature must be positive, got ",
               temperature);
  const int64_t N = h.size(0), V = weight.size(0);
  const Tensor hc = contiguous_data(h), wc = contiguous_data(weight), tc = contiguous_data(targets);
  const Tensor thc = contiguous_data(teacher_h).detach(), twc = contiguous_data(teacher_weight).detach();
  const int64_t count = checked_target_count(tc, V, ignore_index, h.dtype(), op);
  const int64_t divisor = reduction == Reduction::Mean ? count : 1;

  const Tensor lse_s = Tensor::empty({N}, h.dtype(), device), lse_t = Tensor::empty({N}, h.dtype(), device);
  std::vector<double> row_loss(static_cast<size_t>(N));  // host memory
  const int64_t rows_max = std::max<int64_t>(1, std::min(chunk_rows, N));
  const Tensor logits = Tensor::empty({rows_max, V}, h.dtype(), device);
  const Tensor teacher = Tensor::empty({rows_max, V}, h.dtype(), device);
  backend::DistillLossParams p;
  p.device = device;
  p.dtype = h.dtype();
  p.op = backend::DistillLossOp::Forward;
  p.ld = V;
  p.V = V;
  p.ignore_index = ignore_index;
  p.temperature = temperature;
  for (int64_t r0 = 0; r0 < N; r0 += rows_max) {
    const int64_t rows = std::min(rows_max, N - r0);
    chunk_logits(hc, wc, r0, rows, logits);
    chunk_logits(thc, twc, r0, rows, teacher);
    p.student = logits.raw_data();
    p.teacher = teacher.raw_data();
    p.N = rows;
    p.targets = tc.data<int32_t>() + r0;
    p.lse_student = row_ptr(lse_s, r0, 1);
    p.lse_teacher = row_ptr(lse_t, r0, 1);
    p.row_loss = row_loss.data() + r0;
    backend::distill_loss(p);
  }
  double total = 0.0;  // in row order: the same sum whatever the chunk size
  for (double l : row_loss) total += l;
  Tensor loss = Tensor::full({}, divisor > 0 ? total / static_cast<double>(divisor) : 0.0, h.dtype(), device);
  if (auto n = autograd::make_node<ChunkedDistillBackward>({&h, &weight}, rows_max, ignore_index, temperature,
                                                           divisor)) {
    for (const Tensor& t : {hc, wc, thc, twc, tc, lse_s, lse_t}) n->save(t);
    autograd::set_history(n, {&loss});
  }
  return loss;
}

}  // namespace strand::ops
