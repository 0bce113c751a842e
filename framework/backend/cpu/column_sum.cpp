// Column sums and a rounded copy of a [rows, n] matrix, one read of it: the output-gradient
// pass of the mixed-precision linear layer (bias gradient + the bf16 operand of both GEMMs).
#include "framework/backend/cpu/column_sum.h"

#include <algorithm>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"
#include "framework/core/error.h"

namespace strand::cpu {
namespace {

// Columns per task: their 64 float64 sums live in eight AVX-512 registers while the rows
// stream by. The sums are float64 whatever the input (one rounding at the end): a bias
// gradient whose true value is zero, as a key bias's (the softmax ignores a constant per
// query), then stays at the size of its terms' own errors instead of gathering one rounding a
// row; the pass is bound by reading the matrix either way.
constexpr int64_t kBlock = 64;

template <class T>
void store(T v, DType out_dtype, void* out, int64_t i) {
  if (out_dtype == DType::BF16) {
    static_cast<uint16_t*>(out)[i] = float_to_bf16_bits(static_cast<float>(v));
  } else if (out_dtype == DType::F16) {
    static_cast<uint16_t*>(out)[i] = float_to_f16_bits(static_cast<float>(v));
  } else {
    static_cast<T*>(out)[i] = v;
  }
}

template <class T>
void run(const backend::ColumnSumCastParams& p) {
  const T* x = static_cast<const T*>(p.x);
  const int64_t blocks = (p.n + kBlock - 1) / kBlock;
  #pragma omp parallel for schedule(static) if (p.rows * p.n > kParallelGrain)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t j0 = b * kBlock, len = std::min(kBlock, p.n - j0);
    double acc[kBlock] = {};
    for (int64_t i = 0; i < p.rows; ++i) {
      const T* row = x + i * p.n + j0;
      if (p.sum != nullptr) {
        #pragma omp simd
        for (int64_t j = 0; j < len; ++j) acc[j] += row[j];
      }
      if (p.out == nullptr) continue;
      if (p.out_dtype == DType::BF16) {
        uint16_t* o = static_cast<uint16_t*>(p.out) + i * p.n + j0;
        #pragma omp simd
        for (int64_t j = 0; j < len; ++j) o[j] = float_to_bf16_bits(static_cast<float>(row[j]));
      } else {
        for (int64_t j = 0; j < len; ++j) store(row[j], p.out_dtype, p.out, i * p.n + j0 + j);
      }
    }
    if (p.sum != nullptr)
      for (int64_t j = 0; j < len; ++j) static_cast<T*>(p.sum)[j0 + j] = static_cast<T>(acc[j]);
  }
}

}  // namespace

void column_sum_cast(const backend::ColumnSumCastParams& p) {
  STRAND_CHECK(p.out_dtype == p.dtype || p.out_dtype == DType::BF16 || p.out_dtype == DType::F16, DTypeError,
               "column_sum_cast: writes ", dtype_name(p.dtype), ", bfloat16 or float16, not ",
               dtype_name(p.out_dtype));
  by_float("column_sum_cast", p.dtype, [&]<class T>() { run<T>(p); });
}

}  // namespace strand::cpu
