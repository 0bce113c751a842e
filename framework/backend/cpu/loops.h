// Strided loops for CPU kernels: a contiguous output walked row by row (the last axis is a row),
// each input read through its own strides (stride 0 on broadcast axes). Large loops run on OpenMP.
#pragma once
#include <array>
#include <cstdint>

#include "framework/core/shape.h"

namespace strand::cpu {

// Below this many elements a loop stays on one thread: the fork costs more than it saves.
constexpr int64_t kParallelGrain = 1 << 15;

// For every row r of `shape`: row(out + r*inner, {in_k + offset_k(r)}, {inner stride of in_k}, inner).
template <size_t K, class TOut, class TIn, class RowFn>
void for_each_row(const Shape& shape, TOut* out, const std::array<const TIn*, K>& in,
                  const std::array<const int64_t*, K>& in_strides, RowFn&& row) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (nd == 0) {
    std::array<int64_t, K> s{};
    row(out, in, s, int64_t{1});
    return;
  }
  const int64_t inner = shape[nd - 1];
  const int64_t total = numel_of(shape);
  if (total == 0) return;
  const int64_t rows = total / inner;
  std::array<int64_t, K> inner_strides;
  for (size_t k = 0; k < K; ++k) inner_strides[k] = in_strides[k][nd - 1];
  #pragma omp parallel for if (total > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    std::array<const TIn*, K> ptr;
    std::array<int64_t, K> off{};
    int64_t rem = r;
    for (int64_t d = nd - 2; d >= 0; --d) {
      const int64_t idx = rem % shape[d];
      rem /= shape[d];
      for (size_t k = 0; k < K; ++k) off[k] += idx * in_strides[k][d];
    }
    for (size_t k = 0; k < K; ++k) ptr[k] = in[k] + off[k];
    row(out + r * inner, ptr, inner_strides, inner);
  }
}

}  // namespace strand::cpu
