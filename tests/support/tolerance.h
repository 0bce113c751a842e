// The one definition of the floating-point epsilons the tests build their tolerances from, so
// that a tolerance reads as "so many roundings of this dtype" everywhere.
#pragma once
#include <limits>

#include "framework/core/dtype.h"

namespace strand::testing {

// Machine epsilon (the spacing of 1.0 and the next value) of float64 and float32.
inline constexpr double kEpsF64 = std::numeric_limits<double>::epsilon();
inline constexpr double kEpsF32 = std::numeric_limits<float>::epsilon();

// The epsilon of the arithmetic a tensor of `dt` goes through: float64 computes in double, and
// float32, bfloat16 and float16 compute in float (the last two are storage types whose own
// rounding a test adds separately).
inline double dtype_eps(DType dt) { return dt == DType::F64 ? kEpsF64 : kEpsF32; }

}  // namespace strand::testing
