// Tile-level building blocks of the CPU attention kernels: a small GEMM with register blocking
// (an AVX-512 micro-kernel for float, a plain vectorisable loop otherwise), a vectorisable exp, and
// per-thread scratch taken from the caching allocator so that benchmarks see it in peak bytes.
#pragma once
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "framework/backend/cpu/vec_math.h"
#include "framework/core/allocator.h"

namespace strand::cpu::attention_tile {

// exp for the online softmax: the vectorisable float exp of vec_math.h (fmadd comes from there too).
inline float exp_approx(float x) { return vexp(x); }
inline double exp_approx(double x) { return vexp(x); }

// C[m x n] (+)= A . B over kd, with A(r, p) = a[r * a_rs + p * a_cs] (so A may be read transposed),
// B row-major with row stride ldb, C row-major with row stride ldc.
template <class T>
inline void gemm_plain(int64_t m, int64_t n, int64_t kd, const T* a, int64_t a_rs, int64_t a_cs, const T* b,
                       int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  for (int64_t r = 0; r < m; ++r) {
    T* cr = c + r * ldc;
    if (!accumulate)
      for (int64_t x = 0; x < n; ++x) cr[x] = T(0);
    for (int64_t p = 0; p < kd; ++p) {
      const T av = a[r * a_rs + p * a_cs];
      const T* bp = b + p * ldb;
      #pragma omp simd
      for (int64_t x = 0; x < n; ++x) cr[x] += av * bp[x];
    }
  }
}

#if defined(__AVX512F__)
// R rows x NV vectors of 16 floats of C held in registers for the whole kd loop; the last vector
// is masked (columns past n). Each step: NV loads of B, R broadcasts of A, R*NV FMAs.
template <int R, int NV>
void gemm_block_avx512(int64_t kd, const float* a, int64_t a_rs, int64_t a_cs, const float* b, int64_t ldb,
                       float* c, int64_t ldc, __mmask16 tail, bool accumulate) {
  __m512 acc[R][NV];
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? _mm512_maskz_loadu_ps(v == NV - 1 ? tail : __mmask16(0xFFFF), c + r * ldc + 16 * v)
                             : _mm512_setzero_ps();
  for (int64_t p = 0; p < kd; ++p) {
    __m512 bv[NV];
    const float* bp = b + p * ldb;
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(tail, bp + 16 * v) : _mm512_loadu_ps(bp + 16 * v);
    const float* ap = a + p * a_cs;
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(ap[r * a_rs]);
      #pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (v == NV - 1) _mm512_mask_storeu_ps(c + r * ldc + 16 * v, tail, acc[r][v]);
      else _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
    }
}

using BlockKernel = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t,
                             __mmask16, bool);

// Rows per register block for NV vectors: as many as keep <= 24 accumulators (32 zmm registers
// hold the accumulators, NV B vectors and one broadcast).
constexpr int kMaxVectors = 6;
constexpr int rows_for(int nv) { return nv <= 2 ? 12 : nv == 3 ? 8 : nv == 4 ? 6 : 4; }

template <int NV, int... Rs>
constexpr std::array<BlockKernel, sizeof...(Rs)> block_kernels(std::integer_sequence<int, Rs...>) {
  return {&gemm_block_avx512<Rs + 1, NV>...};
}
template <int NV>
inline const BlockKernel* kernels_for() {
  static constexpr auto table = block_kernels<NV>(std::make_integer_sequence<int, rows_for(NV)>());
  return table.data();
}

inline void gemm_avx512(int64_t m, int64_t n, int64_t kd, const float* a, int64_t a_rs, int64_t a_cs,
                        const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  // Up to 96 columns go in one pass (D = 80 as 5 vectors); wider C is cut into 64-column strips.
  for (int64_t x0 = 0; x0 < n;) {
    const int64_t width = n - x0 <= 16 * kMaxVectors ? n - x0 : 64;
    const int nv = static_cast<int>((width + 15) / 16);
    const int rem = static_cast<int>(width - 16 * (nv - 1));
    const __mmask16 tail = static_cast<__mmask16>(rem == 16 ? 0xFFFF : (1u << rem) - 1);
    const BlockKernel* table = nullptr;
    switch (nv) {
      case 1: table = kernels_for<1>(); break;
      case 2: table = kernels_for<2>(); break;
      case 3: table = kernels_for<3>(); break;
      case 4: table = kernels_for<4>(); break;
      case 5: table = kernels_for<5>(); break;
      default: table = kernels_for<6>(); break;
    }
    const int rows = rows_for(nv);
    for (int64_t r0 = 0; r0 < m; r0 += rows) {
      const int64_t rr = std::min<int64_t>(rows, m - r0);
      table[rr - 1](kd, a + r0 * a_rs, a_rs, a_cs, b + x0, ldb, c + r0 * ldc + x0, ldc, tail, accumulate);
    }
    x0 += width;
  }
}
#endif

template <class T>
inline void gemm(int64_t m, int64_t n, int64_t kd, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t ldb,
                 T* c, int64_t ldc, bool accumulate) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    gemm_avx512(m, n, kd, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
    return;
  }
#endif
  gemm_plain(m, n, kd, a, a_rs, a_cs, b, ldb, c, ldc, accumulate);
}

// The online softmax's running max (FlashAttention-2), shared by the float32, bf16 and INT8
// forwards: folds the row maxima of a score tile s (nk keys x mq queries, row stride ld) into m;
// alpha[i] rescales what query i has accumulated so far and m_use[i] is what this tile's exps
// subtract (alpha 1 and m_use 0 while every key so far is masked). row_max is scratch [mq].
template <class T>
inline void online_max(int64_t mq, int64_t nk, const T* s, int64_t ld, T* m, T* m_use, T* alpha, T* row_max) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  std::fill(row_max, row_max + mq, kNegInf);
  for (int64_t j = 0; j < nk; ++j) {
    const T* row = s + j * ld;
    #pragma omp simd
    for (int64_t i = 0; i < mq; ++i) row_max[i] = std::max(row_max[i], row[i]);
  }
  #pragma omp simd
  for (int64_t i = 0; i < mq; ++i) {
    const T m_new = std::max(m[i], row_max[i]);
    const bool empty = m_new == kNegInf;
    alpha[i] = empty ? T(1) : exp_approx(m[i] - m_new);
    m_use[i] = empty ? T(0) : m_new;
    m[i] = m_new;
  }
}

// After a tile's exps: l = l * alpha + the tile's row sums, and each accumulator row (width d)
// rescaled by alpha before the tile's P . V is added.
template <class T>
inline void online_rescale(int64_t mq, int64_t d, T* l, const T* alpha, const T* sum, T* acc) {
  for (int64_t i = 0; i < mq; ++i) {
    l[i] = l[i] * alpha[i] + sum[i];
    if (alpha[i] != T(1)) {
      T* a = acc + i * d;
      #pragma omp simd
      for (int64_t x = 0; x < d; ++x) a[x] *= alpha[i];
    }
  }
}

// The end of a query block: o = acc / l per row and lse = m + log l (a row with every key
// masked, l = 0, gives o = 0 and lse = -inf). o rows have stride o_rs.
template <class T>
inline void online_finish(int64_t mq, int64_t d, const T* acc, const T* l, const T* m, T* o, int64_t o_rs, T* lse) {
  for (int64_t i = 0; i < mq; ++i) {
    const T inv = l[i] > T(0) ? T(1) / l[i] : T(0);
    const T* a = acc + i * d;
    T* oi = o + i * o_rs;
    #pragma omp simd
    for (int64_t x = 0; x < d; ++x) oi[x] = a[x] * inv;
    lse[i] = l[i] > T(0) ? m[i] + std::log(l[i]) : -std::numeric_limits<T>::infinity();
  }
}

// A buffer of n elements from the caching allocator (counted in memory::stats), freed on scope exit.
template <class T>
class Scratch {
 public:
  explicit Scratch(int64_t n)
      : bytes_(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T)),
        data_(static_cast<T*>(memory::allocate(Device::cpu(), bytes_))) {}
  ~Scratch() { memory::deallocate(Device::cpu(), data_, bytes_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* data() const { return data_; }

 private:
  size_t bytes_;
  T* data_;
};

}  // namespace strand::cpu::attention_tile
