// Norm modules: parameters and shape checks around the fused ops in ops/norm.h.
#include "framework/nn/layer_norm.h"

#include "framework/core/error.h"
#include "framework/ops/norm.h"

namespace strand::nn {
namespace {

void check_norm_args(const char* op, int64_t features, double eps) {
  STRAND_CHECK(features > 0, ValueError, op, ": features must be positive, got ", features);
  STRAND_CHECK(eps > 0, ValueError, op, ": eps must be > 0, got ", eps);
}

void check_input(const char* op, const Tensor& x, int64_t features) {
  STRAND_CHECK(x.dim() >= 1 && x.size(-1) == features, ShapeError, op, ": input ", describe(x),
               " does not end in features ", features);
}

}  // namespace

LayerNorm::LayerNorm(int64_t features, double eps, bool bias, DType dtype) : features_(features), eps_(eps) {
  check_norm_args("layer_norm", features, eps);
  weight_ = register_parameter("weight", Tensor::ones({features}, dtype));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({features}, dtype));
}

Tensor LayerNorm::forward(const Tensor& x) const {
  check_input("layer_norm", x, features_);
  return ops::layer_norm(x, weight_, bias_, eps_);
}

RMSNorm::RMSNorm(int64_t features, double eps, DType dtype) : features_(features), eps_(eps) {
  check_norm_args("rms_norm", features, eps);
  weight_ = register_parameter("weight", Tensor::ones({features}, dtype));
}

Tensor RMSNorm::forward(const Tensor& x) const {
  check_input("rms_norm", x, features_);
  return ops::rms_norm(x, weight_, eps_);
}

}  // namespace strand::nn
