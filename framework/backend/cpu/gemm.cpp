// GEMM kernels: thin wrappers of cblas_sgemm/cblas_dgemm, and the loop over batch entries.
#include "framework/backend/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>

#include "framework/backend/cpu/dispatch.h"
#include "framework/core/error.h"

namespace strand::cpu {
namespace {

// Below this many multiply-adds per product, a batch runs one product per thread: OpenBLAS
// would not split such a product across threads anyway, so the batch is the parallelism.
constexpr int64_t kSmallProduct = int64_t{128} * 128 * 128;

blasint to_blas(int64_t v, const char* what) {
  STRAND_CHECK(v >= 0 && v <= INT_MAX, ValueError, "gemm: ", what, " = ", v, " does not fit a BLAS int");
  return static_cast<blasint>(v);
}

CBLAS_TRANSPOSE blas_trans(bool t) { return t ? CblasTrans : CblasNoTrans; }

void blas_gemm(bool ta, bool tb, blasint m, blasint n, blasint k, const float* a, blasint lda, const float* b,
               blasint ldb, float beta, float* c, blasint ldc) {
  cblas_sgemm(CblasRowMajor, blas_trans(ta), blas_trans(tb), m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
void blas_gemm(bool ta, bool tb, blasint m, blasint n, blasint k, const double* a, blasint lda, const double* b,
               blasint ldb, double beta, double* c, blasint ldc) {
  cblas_dgemm(CblasRowMajor, blas_trans(ta), blas_trans(tb), m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
}

// Element offset of batch entry `index` (row-major over `shape`) under `strides`.
int64_t batch_offset(int64_t index, const Shape& shape, const Shape& strides) {
  int64_t off = 0;
  for (size_t d = shape.size(); d-- > 0;) {
    off += (index % shape[d]) * strides[d];
    index /= shape[d];
  }
  return off;
}

template <class T>
void gemm_typed(const backend::GemmParams& p) {
  const int64_t count = numel_of(p.batch);
  STRAND_CHECK(p.a_batch_strides.size() == p.batch.size() && p.b_batch_strides.size() == p.batch.size() &&
                   (p.sum_over_batch || p.c_batch_strides.size() == p.batch.size()),
               ValueError, "gemm: batch ", shape_str(p.batch), " needs one stride per axis for each operand");
  if (p.m == 0 || p.n == 0) return;
  if (p.k == 0 || count == 0) {
    // An empty sum: C is zero (the only case where C is filled rather than written by BLAS).
    const int64_t entries = p.sum_over_batch || count == 0 ? 1 : count;
    for (int64_t e = 0; e < entries; ++e) {
      T* c = static_cast<T*>(p.c) + (p.sum_over_batch ? 0 : batch_offset(e, p.batch, p.c_batch_strides));
      for (int64_t i = 0; i < p.m; ++i) std::fill(c + i * p.ldc, c + i * p.ldc + p.n, T(0));
    }
    return;
  }
  const blasint m = to_blas(p.m, "m"), n = to_blas(p.n, "n"), k = to_blas(p.k, "k");
  const blasint lda = to_blas(p.a.ld, "lda"), ldb = to_blas(p.b.ld, "ldb"), ldc = to_blas(p.ldc, "ldc");
  auto product = [&](int64_t e, T beta, T* c) {
    const T* a = static_cast<const T*>(p.a.data) + batch_offset(e, p.batch, p.a_batch_strides);
    const T* b = static_cast<const T*>(p.b.data) + batch_offset(e, p.batch, p.b_batch_strides);
    blas_gemm(p.a.trans, p.b.trans, m, n, k, a, lda, b, ldb, beta, c, ldc);
  };
  if (p.sum_over_batch) {
    // In batch order, so the sum is the same for every thread count.
    for (int64_t e = 0; e < count; ++e) product(e, e == 0 ? T(0) : T(1), static_cast<T*>(p.c));
    return;
  }
  const bool per_thread = count > 1 && p.m * p.n * p.k <= kSmallProduct && omp_get_max_threads() > 1;
  #pragma omp parallel for schedule(static) if (per_thread)
  for (int64_t e = 0; e < count; ++e) product(e, T(0), static_cast<T*>(p.c) + batch_offset(e, p.batch, p.c_batch_strides));
}

}  // namespace

void gemm(const backend::GemmParams& p) {
  by_float("gemm", p.dtype, [&]<class T>() { gemm_typed<T>(p); });
}

}  // namespace strand::cpu
