// CPU rotary position embedding: a cos/sin table per distinct position row, then one pass over
// every (batch, head, row) rotating the two halves of the head vector.
#include "framework/backend/cpu/rope.h"

#include <cmath>
#include <vector>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {

template <class T>
void rope_apply(const RopeParams& p) {
  const int64_t half = p.head_dim / 2;
  if (p.batch == 0 || p.heads == 0 || p.seq == 0 || half == 0) return;
  // Tables are built once per position list (one, or one per batch row), in double so that
  // large positions (long sequences) keep their angle accurate before rounding to T.
  const int64_t tables = p.pos_batch_stride == 0 ? 1 : p.batch;
  std::vector<T> cos_table(static_cast<size_t>(tables * p.seq * half)), sin_table(cos_table.size());
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[static_cast<size_t>(i)] = std::pow(p.base, -2.0 * static_cast<double>(i) / static_cast<double>(p.head_dim));
  const double sign = p.inverse ? -1.0 : 1.0;
  #pragma omp parallel for if (tables * p.seq * half > kParallelGrain)
  for (int64_t r = 0; r < tables * p.seq; ++r) {
    const int64_t b = r / p.seq, n = r % p.seq;
    const double pos = static_cast<double>(p.positions[b * p.pos_batch_stride + n * p.pos_row_stride]);
    for (int64_t i = 0; i < half; ++i) {
      const double angle = pos * inv_freq[static_cast<size_t>(i)];
      cos_table[static_cast<size_t>(r * half + i)] = static_cast<T>(std::cos(angle));
      sin_table[static_cast<size_t>(r * half + i)] = static_cast<T>(sign * std::sin(angle));
    }
  }

  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const int64_t rows = p.batch * p.heads * p.seq, ds = p.x_dim_stride;
  #pragma omp parallel for if (rows * p.head_dim > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r % p.seq, bh = r / p.seq, h = bh % p.heads, b = bh / p.heads;
    const T* xr = x + b * p.x_batch_stride + h * p.x_head_stride + n * p.x_row_stride;
    T* yr = y + r * p.head_dim;
    const int64_t t = (tables == 1 ? 0 : b) * p.seq + n;
    const T* c = cos_table.data() + t * half;
    const T* s = sin_table.data() + t * half;
    #pragma omp simd
    for (int64_t i = 0; i < half; ++i) {
      const T a = xr[i * ds], bb = xr[(i + half) * ds];
      yr[i] = a * c[i] - bb * s[i];
      yr[i + half] = bb * c[i] + a * s[i];
    }
  }
}

template void rope_apply<float>(const RopeParams&);
template void rope_apply<double>(const RopeParams&);

void rope(const RopeParams& p) {
  by_float("rope", p.dtype, [&]<class T>() { rope_apply<T>(p); });
}

}  // namespace strand::cpu
