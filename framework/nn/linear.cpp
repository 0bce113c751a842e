// Linear layer: one matmul against the [in, out] weight, plus a broadcast bias.
#include "framework/nn/linear.h"

#include "framework/core/error.h"
#include "framework/nn/autocast.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/linear.h"
#include "framework/ops/matmul.h"
#include "framework/ops/view.h"

namespace strand::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, uint64_t seed, DType dtype)
    : Linear(in_features, out_features, LinearOptions{bias, seed, 0.02, dtype}) {}

Linear::Linear(int64_t in_features, int64_t out_features, const LinearOptions& options)
    : in_features_(in_features), out_features_(out_features) {
  STRAND_CHECK(in_features > 0 && out_features > 0, ValueError, "linear: features must be positive, got in ",
               in_features, ", out ", out_features);
  STRAND_CHECK(options.init_std >= 0, ValueError, "linear: init_std must be >= 0, got ", options.init_std);
  weight_ = register_parameter(
      "weight", Tensor::randn({in_features, out_features}, options.seed, options.dtype, options.init_std));
  if (options.bias) bias_ = register_parameter("bias", Tensor::zeros({out_features}, options.dtype));
}

Tensor Linear::forward(const Tensor& x) const {
  STRAND_CHECK(x.dim() >= 1 && x.size(-1) == in_features_, ShapeError, "linear: input ", describe(x),
               " does not end in in_features ", in_features_, " (weight ", shape_str(weight_.shape()), ")");
  // float32 weights on the cpu take the fused op (ops/linear.h): the bias added in the GEMM and
  // its gradient summed by columns in one pass, no broadcast add and no transposed copy of the
  // output gradient; under autocast it also rounds both operands to the compute dtype and
  // writes float32 gradients from the GEMMs.
  const DType compute = autocast_dtype();
  if (x.device().is_cpu() && weight_.dtype() == DType::F32 && (x.dtype() == DType::F32 || x.dtype() == compute))
    return ops::linear(x, weight_, bias_, compute);
  // matmul wants a matrix on the left: a single vector goes through as one row.
  // Under autocast both operands are rounded to the compute dtype; the product is float32.
  const Tensor xc = autocast(x), w = autocast(weight_);
  Tensor y = x.dim() == 1 ? ops::reshape(ops::matmul(ops::reshape(xc, {1, in_features_}), w), {out_features_})
                          : ops::matmul(xc, w);
  return bias_.defined() ? ops::add(y, bias_) : y;
}

}  // namespace strand::nn
