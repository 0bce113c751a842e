// CPU dropout kernel on the counter-based Philox stream: the keep decision of element i depends
// only on (seed, offset + i), never on the thread that computes it.
#pragma once
#include <cstdint>

#include "framework/backend/dropout.h"

namespace strand::cpu {

using backend::kDropoutStream;

// y[i] = x[i] / (1 - p) where the uniform u of global index offset + i satisfies u >= p, else 0.
// u is one 32-bit word of philox4x32(seed, kDropoutStream, (offset + i) / 4), lane (offset + i) % 4,
// divided by 2^32. x and y contiguous with n elements (y may equal x); 0 < p < 1. The backward is
// the same map applied to the gradient.
template <class T>
void dropout_apply(const T* x, T* y, int64_t n, double p, uint64_t seed, uint64_t offset);

// The family entry registered with the device seam (backend/dropout.h).
void dropout(const backend::DropoutParams& p);

}  // namespace strand::cpu
