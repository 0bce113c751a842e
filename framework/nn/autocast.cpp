// The thread's compute dtype and the casts Linear and attention apply under it.
#include "framework/nn/autocast.h"

#include "framework/core/error.h"
#include "framework/ops/view.h"

namespace strand::nn {
namespace {

// Per thread: a guard set by the trainer's thread must not leak into another thread's forward.
thread_local DType g_compute = DType::F32;

}  // namespace

DType autocast_dtype() { return g_compute; }

AutocastGuard::AutocastGuard(DType compute) : previous_(g_compute) {
  STRAND_CHECK(compute == DType::F32 || compute == DType::BF16 || compute == DType::F16, DTypeError,
               "autocast: the compute dtype is float32, bfloat16 or float16, got ", dtype_name(compute));
  g_compute = compute;
}

AutocastGuard::~AutocastGuard() { g_compute = previous_; }

Tensor autocast(const Tensor& x) {
  if (g_compute == DType::F32 || x.dtype() != DType::F32) return x;
  return ops::to_dtype(x, g_compute);
}

Tensor autocast_round(const Tensor& x) {
  if (g_compute == DType::F32 || x.dtype() != DType::F32) return x;
  return ops::to_dtype(ops::to_dtype(x, g_compute), DType::F32);
}

}  // namespace strand::nn
