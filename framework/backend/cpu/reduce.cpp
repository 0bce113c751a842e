// CPU row reductions, vectorised along the row and parallel over rows.
#include "framework/backend/cpu/reduce.h"

#include <algorithm>
#include <vector>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {

template <class T>
void sum_rows(int64_t rows, int64_t n, const T* x, T* out) {
  if (rows == 1 && n > kParallelGrain) {
    // One long row: fixed-size blocks summed in parallel, then added in block order, so the
    // result does not depend on the thread count.
    constexpr int64_t kBlock = 1 << 14;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<T> partial(static_cast<size_t>(blocks));
    #pragma omp parallel for
    for (int64_t b = 0; b < blocks; ++b) {
      const T* p = x + b * kBlock;
      const int64_t len = std::min(kBlock, n - b * kBlock);
      T acc = 0;
      #pragma omp simd reduction(+ : acc)
      for (int64_t j = 0; j < len; ++j) acc += p[j];
      partial[static_cast<size_t>(b)] = acc;
    }
    T total = 0;
    for (T v : partial) total += v;
    out[0] = total;
    return;
  }
  #pragma omp parallel for if (rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * n;
    T acc = 0;
    #pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < n; ++j) acc += row[j];
    out[r] = acc;
  }
}

template <class T>
void max_rows(int64_t rows, int64_t n, const T* x, T* out, int32_t* arg) {
  #pragma omp parallel for if (rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * n;
    // The first position of the largest value, or of the first NaN (max propagates NaN). Two
    // vectorised passes, the maximum and then its first position, instead of one branch per
    // element: the same value and position as the scalar scan (±0 compare equal, so the search
    // finds the first of either, as a scan that moves only on a strictly larger value does).
    T best = row[0];
    bool nan = false;
    #pragma omp simd reduction(max : best) reduction(|| : nan)
    for (int64_t j = 0; j < n; ++j) {
      best = row[j] > best ? row[j] : best;
      nan = nan || row[j] != row[j];
    }
    int64_t at = 0;
    if (nan) {
      while (row[at] == row[at]) ++at;
    } else {
      while (row[at] != best) ++at;
    }
    out[r] = row[at];
    arg[r] = static_cast<int32_t>(at);
  }
}

template void sum_rows<float>(int64_t, int64_t, const float*, float*);
template void sum_rows<double>(int64_t, int64_t, const double*, double*);
template void max_rows<float>(int64_t, int64_t, const float*, float*, int32_t*);
template void max_rows<double>(int64_t, int64_t, const double*, double*, int32_t*);

void reduce_rows(const backend::ReduceRowsParams& p) {
  by_float("reduce_rows", p.dtype, [&]<class T>() {
    const T* x = static_cast<const T*>(p.x);
    T* o = static_cast<T*>(p.out);
    switch (p.op) {
      case backend::RowReduce::Sum:
        sum_rows<T>(p.rows, p.n, x, o);
        if (p.scale != 1.0)
          for (int64_t i = 0; i < p.rows; ++i) o[i] = static_cast<T>(o[i] * p.scale);
        return;
      case backend::RowReduce::Max: max_rows<T>(p.rows, p.n, x, o, p.arg); return;
      case backend::RowReduce::MaxBackward:
        for (int64_t r = 0; r < p.rows; ++r) o[r * p.n + p.arg[r]] = x[r];
        return;
    }
  });
}

}  // namespace strand::cpu
