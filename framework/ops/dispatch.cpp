// Op input checks.
#include "framework/ops/dispatch.h"

namespace strand::ops {

Device check_same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (first)
      STRAND_CHECK(t->device() == first->device(), DeviceError, op, ": device mix, ", describe(*first), " and ",
                   describe(*t));
    else
      first = t;
  }
  return first ? first->device() : Device::cpu();
}

void check_float_dtype(const char* op, DType dt) {
  if (dt != DType::F32 && dt != DType::F64)
    throw DTypeError(detail::concat(op, ": expects float32 or float64, got ", dtype_name(dt),
                                    " (convert with ops::to_dtype)"));
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  STRAND_CHECK(a.dtype() == b.dtype(), DTypeError, op, ": dtype mix, ", describe(a), " and ", describe(b));
}

void check_float(const char* op, const Tensor& t) {
  STRAND_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, DTypeError, op, ": expects float32 or float64, got ",
               describe(t));
}

Tensor contiguous_data(const Tensor& t) { return t.is_contiguous() ? t : t.copy_as(t.dtype(), t.device()); }

}  // namespace strand::ops
