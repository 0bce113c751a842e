// Dropout kernel: one Philox call serves four consecutive global indices.
#include "framework/backend/cpu/dropout.h"

#include <cmath>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"
#include "framework/core/random.h"

namespace strand::cpu {

template <class T>
void dropout_apply(const T* x, T* y, int64_t n, double p, uint64_t seed, uint64_t offset) {
  if (n <= 0) return;
  // u = w / 2^32 >= p  <=>  w >= ceil(p * 2^32): an exact integer test (scaling by 2^32 is exact).
  const uint64_t threshold = static_cast<uint64_t>(std::ceil(p * 4294967296.0));
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  const uint64_t first = offset / 4, last = (offset + static_cast<uint64_t>(n) - 1) / 4;
  const int64_t counters = static_cast<int64_t>(last - first + 1);
  #pragma omp parallel for if (n > kParallelGrain)
  for (int64_t c = 0; c < counters; ++c) {
    const uint64_t counter = first + static_cast<uint64_t>(c);
    const auto w = random::philox4x32(seed, kDropoutStream, counter);
    for (uint64_t lane = 0; lane < 4; ++lane) {
      const uint64_t global = counter * 4 + lane;
      if (global < offset || global - offset >= static_cast<uint64_t>(n)) continue;  // block edges
      const int64_t i = static_cast<int64_t>(global - offset);
      y[i] = w[lane] >= threshold ? x[i] * scale : T(0);
    }
  }
}

template void dropout_apply<float>(const float*, float*, int64_t, double, uint64_t, uint64_t);
template void dropout_apply<double>(const double*, double*, int64_t, double, uint64_t, uint64_t);

void dropout(const backend::DropoutParams& p) {
  by_float("dropout", p.dtype, [&]<class T>() {
    const T* src = static_cast<const T*>(p.x);
    T* dst = static_cast<T*>(p.y);
    if (!p.row_offsets) {
      dropout_apply<T>(src, dst, p.n, p.p, p.seed, p.offset);
      return;
    }
    // Each row is one kernel call on its own counters; rows are independent, so any split of
    // them over threads gives the same bits.
    const int64_t rows = p.rows, row_len = p.row_len;
    #pragma omp parallel for if (p.n > kParallelGrain)
    for (int64_t r = 0; r < rows; ++r)
      dropout_apply<T>(src + r * row_len, dst + r * row_len, row_len, p.p, p.seed, p.row_offsets[r]);
  });
}

}  // namespace strand::cpu
