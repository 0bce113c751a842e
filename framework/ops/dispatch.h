// Helpers every op uses: input checks that name the op and the tensors.
#pragma once
#include <initializer_list>

#include "framework/core/error.h"
#include "framework/core/tensor.h"

namespace strand::ops {

// Throws DeviceError if the defined tensors are on different devices; returns their device
// (cpu when none is defined). Whether that device has the op's kernels is the seam's answer:
// backend::launch throws a DeviceError naming the kernel and the device when it has none.
Device check_same_device(const char* op, std::initializer_list<const Tensor*> ts);
// Throws DTypeError unless a and b have the same dtype, naming op, dtypes and shapes.
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
// Throws DTypeError unless t is float32 or float64.
void check_float(const char* op, const Tensor& t);

// Throws DTypeError unless dt is float32 or float64, naming the op and the dtype.
void check_float_dtype(const char* op, DType dt);

// t itself when contiguous, else a contiguous copy (no gradient recorded).
Tensor contiguous_data(const Tensor& t);

}  // namespace strand::ops
