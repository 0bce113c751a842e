// Dispatch inside the CPU backend: each kernel family's entry runs its T = float or double
// template for the dtype in its parameters, and the run-time CPU features that pick an ISA.
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

// Whether this CPU runs AVX512-BF16's vdpbf16ps and the AVX-512 subsets the bf16 tile kernels
// use with it (cpuid, through the compiler's builtins: the build itself may target any x86-64).
inline bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

}  // namespace strand::cpu
