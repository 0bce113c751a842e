// Float dispatch inside the CPU backend: each kernel family's entry runs its T = float or
// double template for the dtype in its parameters.
#pragma once
#include "framework/core/dtype.h"
#include "framework/core/error.h"

namespace strand::cpu {

// Calls fn.template operator()<T>() with T = float or double per dtype. The ops check dtypes
// before they launch, so the error here only guards direct callers.
template <class Fn>
decltype(auto) by_float(const char* kernel, DType dt, Fn&& fn) {
  switch (dt) {
    case DType::F32: return fn.template operator()<float>();
    case DType::F64: return fn.template operator()<double>();
    default:
      throw DTypeError(detail::concat(kernel, ": the cpu kernel takes float32 or float64, got ", dtype_name(dt)));
  }
}

}  // namespace strand::cpu
