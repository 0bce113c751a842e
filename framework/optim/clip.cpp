// Gradient norm and clipping over the gradients of a parameter list.
#include "framework/optim/clip.h"

#include <cmath>

#include "framework/backend/cpu/adamw.h"
#include "framework/core/error.h"
#include "framework/ops/dispatch.h"

namespace strand::optim {
namespace {

// The gradient as float32/float64 contiguous data (bfloat16/float16 gradients are widened).
Tensor readable_grad(const Tensor& g) {
  STRAND_CHECK(g.device().is_cpu(), DeviceError, "grad_norm: gradient ", describe(g),
               " is not on the cpu; there is no device kernel yet");
  if (g.dtype() == DType::F32 || g.dtype() == DType::F64) return ops::contiguous_data(g);
  STRAND_CHECK(is_floating(g.dtype()), DTypeError, "grad_norm: gradient ", describe(g), " is not a float tensor");
  return g.copy_as(DType::F32, Device::cpu());
}

}  // namespace

double grad_norm(const std::vector<Tensor>& params) {
  double total = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor d = readable_grad(g);
    total += ops::dispatch_float("grad_norm", d.dtype(),
                                 [&]<class T>() { return cpu::sum_squares<T>(d.numel(), d.data<T>()); });
  }
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
      ops::dispatch_float("clip_grad_norm", g.dtype(),
                          [&]<class T>() { cpu::scale_inplace<T>(g.numel(), g.data<T>(), scale); });
      g.bump_version();
    } else {
      // Strided or half-precision gradients: scale a float copy and write it back.
      Tensor d = readable_grad(g);
      ops::dispatch_float("clip_grad_norm", d.dtype(),
                          [&]<class T>() { cpu::scale_inplace<T>(d.numel(), d.data<T>(), scale); });
      g.copy_from(d);
    }
  }
  return norm;
}

}  // namespace strand::optim
