// Fused cross-entropy: forward keeps only the per-row log-sum-exp; backward recomputes softmax
// from the logits and that lse in one pass.
#include "framework/ops/loss.h"

#include "framework/autograd/node.h"
#include "framework/backend/cross_entropy.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {
namespace {

using autograd::Node;

// Row stride of logits [N, V] when each row is unit-stride, so the kernels read it in place;
// 0 when it must be copied first (a transposed or broadcast layout).
int64_t row_stride(const Tensor& logits) {
  const int64_t N = logits.shape()[0], V = logits.shape()[1];
  if (V > 1 && logits.strides()[1] != 1) return 0;
  return N > 1 ? logits.strides()[0] : V;
}

struct CrossEntropyBackward final : Node {
  int32_t ignore_index;
  int64_t count;  // divisor of the loss: targets not ignored (Mean) or 1 (Sum)
  CrossEntropyBackward(int32_t ignore, int64_t c) : Node("cross_entropy"), ignore_index(ignore), count(c) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor logits = saved(0), targets = saved(1), lse = saved(2);
    const int64_t N = logits.shape()[0], V = logits.shape()[1];
    Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
    if (count == 0) {  // every target ignored: the loss is the constant 0
      dlogits.fill_(0.0);
      return {dlogits, Tensor()};
    }
    const double scale = g[0].item() / static_cast<double>(count);
    check_float_dtype("cross_entropy backward", logits.dtype());
    backend::CrossEntropyParams p;
    p.device = logits.device();
    p.dtype = logits.dtype();
    p.op = backend::CrossEntropyOp::Backward;
    p.logits = logits.raw_data();
    p.ld = row_stride(logits);
    p.N = N;
    p.V = V;
    p.targets = targets.data<int32_t>();
    p.ignore_index = ignore_index;
    p.lse = lse.raw_data();
    p.scale = scale;
    p.dlogits = dlogits.raw_data();
    backend::cross_entropy(p);
    return {dlogits, Tensor()};
  }
};

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index, Reduction reduction) {
  const Device device = check_same_device("cross_entropy", {&logits, &targets});
  check_float("cross_entropy", logits);
  STRAND_CHECK(targets.dtype() == DType::I32, DTypeError, "cross_entropy: targets must be int32, got ",
               describe(targets));
  STRAND_CHECK(logits.dim() == 2, ShapeError, "cross_entropy: logits must be [N, V], got ",
               shape_str(logits.shape()));
  STRAND_CHECK(targets.dim() == 1 && targets.shape()[0] == logits.shape()[0], ShapeError,
               "cross_entropy: targets ", shape_str(targets.shape()), " must be [N] for logits ",
               shape_str(logits.shape()));
  const int64_t N = logits.shape()[0], V = logits.shape()[1];
  Tensor tc = contiguous_data(targets);
  const int64_t count = checked_target_count(tc, V, ignore_index, logits.dtype(), "cross_entropy",
                                             " (logits " + shape_str(logits.shape()) + ")");
  backend::CrossEntropyParams p;
  p.device = device;
  p.dtype = logits.dtype();
  p.N = N;
  p.V = V;
  p.targets = tc.data<int32_t>();
  p.ignore_index = ignore_index;

  // The kernels read rows in place when they are unit-stride; other layouts are copied once.
  Tensor xc = row_stride(logits) > 0 ? logits : contiguous_data(logits);
  const int64_t divisor = reduction == Reduction::Mean ? count : 1;

  Tensor lse = Tensor::empty({N}, logits.dtype(), device);
  std::vector<double> row_loss(static_cast<size_t>(N));  // host memory
  p.op = backend::CrossEntropyOp::Forward;
  p.logits = xc.raw_data();
  p.ld = row_stride(xc);
  p.lse = lse.raw_data();
  p.row_loss = row_loss.data();
  backend::cross_entropy(p);
  double total = 0.0;  // summed in row order: the same bits for any thread count
  for (double l : row_loss) total += l;
  const double loss = divisor > 0 ? total / static_cast<double>(divisor) : 0.0;
  Tensor y = Tensor::full({}, loss, logits.dtype(), device);

  if (auto n = autograd::make_node<CrossEntropyBackward>({&logits, &targets}, ignore_index, divisor)) {
    n->save(xc);
    n->save(tc);
    n->save(lse);
    autograd::set_history(n, {&y});
  }
  return y;
}

int64_t checked_target_count(const Tensor& targets, int64_t V, int32_t ignore_index, DType dtype,
                             const std::string& op, const std::string& context) {
  backend::CrossEntropyParams p;
  p.device = targets.device();
  p.dtype = dtype;
  p.N = targets.size(0);
  p.V = V;
  p.targets = targets.data<int32_t>();
  p.ignore_index = ignore_index;
  int64_t bad = -1, count = 0;
  int32_t bad_target = 0;
  p.op = backend::CrossEntropyOp::CheckTargets;
  p.first_bad = &bad;
  p.bad_target = &bad_target;
  p.count = &count;
  backend::cross_entropy(p);
  STRAND_CHECK(bad < 0, ValueError, op, ": target ", bad_target, " at row ", bad, " is outside [0, V) for V = ", V,
               context, " and is not ignore_index ", ignore_index);
  return count;
}

}  // namespace strand::ops
