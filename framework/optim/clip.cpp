// Gradient norm and clipping over the gradients of a parameter list.
#include "framework/optim/clip.h"

#include <cmath>

#include "framework/backend/clip.h"
#include "framework/core/error.h"
#include "framework/ops/dispatch.h"

namespace strand::optim {
namespace {

// The tensor as float32/float64 contiguous data (bfloat16/float16 ones are widened).
Tensor readable_grad(const Tensor& g) {
  if (g.dtype() == DType::F32 || g.dtype() == DType::F64) return ops::contiguous_data(g);
  STRAND_CHECK(is_floating(g.dtype()), DTypeError, "grad_norm: ", describe(g), " is not a float tensor");
  return g.copy_as(DType::F32, g.device());
}

// x[i] *= scale over a contiguous float32/float64 tensor, in place.
void scale_inplace(const Tensor& x, double scale) {
  backend::ClipParams p;
  p.device = x.device();
  p.dtype = x.dtype();
  p.op = backend::ClipOp::Scale;
  p.n = x.numel();
  p.x = x.raw_data();
  p.scale = scale;
  backend::clip_grad(p);
}

}  // namespace

double sum_of_squares(const Tensor& t) {
  if (!t.defined() || t.numel() == 0) return 0.0;
  const Tensor d = readable_grad(t);
  double sum = 0;
  backend::ClipParams k;
  k.device = d.device();
  k.dtype = d.dtype();
  k.op = backend::ClipOp::SumSquares;
  k.n = d.numel();
  k.x = d.raw_data();
  k.sum = &sum;
  backend::clip_grad(k);
  return sum;
}

double grad_norm(const std::vector<Tensor>& params) {
  double total = 0;
  for (const Tensor& p : params) total += sum_of_squares(p.grad());
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  STRAND_CHECK(max_norm > 0 && !std::isnan(max_norm), ValueError, "clip_grad_norm: max_norm must be > 0, got ",
               max_norm);
  const double norm = grad_norm(params);
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const double scale = max_norm / (norm + 1e-6);
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if ((g.dtype() == DType::F32 || g.dtype() == DType::F64) && g.is_contiguous()) {
      scale_inplace(g, scale);
      g.bump_version();
    } else {
      // Strided or half-precision gradients: scale a float copy and write it back.
      Tensor d = readable_grad(g);
      scale_inplace(d, scale);
      g.copy_from(d);
    }
  }
  return norm;
}

}  // namespace strand::optim
