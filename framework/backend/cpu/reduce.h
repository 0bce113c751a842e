// CPU row reductions over a contiguous [rows, n] buffer.
#pragma once
#include <cstdint>

#include "framework/backend/reduce.h"

namespace strand::cpu {

// out[r] = sum_j x[r*n + j]
template <class T>
void sum_rows(int64_t rows, int64_t n, const T* x, T* out);
// out[r] = max_j x[r*n + j], arg[r] = the first j attaining it.
template <class T>
void max_rows(int64_t rows, int64_t n, const T* x, T* out, int32_t* arg);

// The family entry registered with the device seam (backend/reduce.h).
void reduce_rows(const backend::ReduceRowsParams& p);

}  // namespace strand::cpu
