// Tile-level building blocks of the bfloat16 attention kernels on AVX512-BF16: a register-blocked
// product on vdpbf16ps (bf16 pairs in, float32 accumulators), and the packings of operands into
// the pair layout it reads. Every function carries the target attribute, so this header compiles
// in a build for any x86-64; callers run it only where cpu_has_avx512_bf16() (dispatch.h) holds.
//
// Note [bf16 pairs]
// vdpbf16ps multiplies 32-bit lanes that each hold two bf16 values (element 2i in the low half,
// 2i+1 in the high half) and adds both products to one float32 lane: the reduction index of a
// product runs in pairs. A "word" below is such a pair, as uint32_t. The product C += A . B
// reads A(r, p) as one word broadcast to all lanes and B's pair row p as 16 words per vector,
// column c in lane c. So B is packed [pairs][columns] of words: row 2p's value in the low half
// and row 2p + 1's in the high half, a zero high half past an odd end. A is read where it lies
// when its pairs are adjacent bf16 values (a row of K along D), or from an interleaved copy.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#define STRAND_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

namespace strand::cpu::attention_bf16 {

// C[m x n] = (accumulate ? C : 0) + scale * sum_p A(r, p) . B(p, c) over kp pairs, with
// A(r, p) = a[r * a_rs + p * a_ps] and B(p, c) = b[p * ldb + c] (words), C float32 row-major.
// R rows x NV vectors of 16 columns stay in registers for the whole loop; the last vector is masked.
template <int R, int NV>
STRAND_BF16_TARGET void dp_block(int64_t kp, const uint32_t* a, int64_t a_rs, int64_t a_ps, const uint32_t* b,
                                 int64_t ldb, float* c, int64_t ldc, __mmask16 tail, bool accumulate, float scale) {
  __m512 acc[R][NV];
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512bh bv[NV];
    const uint32_t* bp = b + p * ldb;
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = (__m512bh)(v == NV - 1 ? _mm512_maskz_loadu_epi32(tail, bp + 16 * v) : _mm512_loadu_si512(bp + 16 * v));
    const uint32_t* ap = a + p * a_ps;
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[r * a_rs]));
      #pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  const __m512 sc = _mm512_set1_ps(scale);
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mk = v == NV - 1 ? tail : __mmask16(0xFFFF);
      float* cp = c + r * ldc + 16 * v;
      __m512 x = scale == 1.0f ? acc[r][v] : _mm512_mul_ps(acc[r][v], sc);
      if (accumulate) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, cp));
      _mm512_mask_storeu_ps(cp, mk, x);
    }
}

using DpKernel = void (*)(int64_t, const uint32_t*, int64_t, int64_t, const uint32_t*, int64_t, float*, int64_t,
                          __mmask16, bool, float);

// Rows per register block for NV vectors, as in attention_tile.h: at most 24 accumulators.
constexpr int kMaxVectors = 6;
constexpr int rows_for(int nv) { return nv <= 2 ? 12 : nv == 3 ? 8 : nv == 4 ? 6 : 4; }

template <int NV, int... Rs>
constexpr std::array<DpKernel, sizeof...(Rs)> dp_kernels(std::integer_sequence<int, Rs...>) {
  return {&dp_block<Rs + 1, NV>...};
}
template <int NV>
inline const DpKernel* dp_kernels_for() {
  static constexpr auto table = dp_kernels<NV>(std::make_integer_sequence<int, rows_for(NV)>());
  return table.data();
}

// The whole product, cut into register blocks: up to 96 columns in one pass, wider C in strips of 64.
STRAND_BF16_TARGET inline void dp_gemm(int64_t m, int64_t n, int64_t kp, const uint32_t* a, int64_t a_rs,
                                       int64_t a_ps, const uint32_t* b, int64_t ldb, float* c, int64_t ldc,
                                       bool accumulate, float scale = 1.0f) {
  for (int64_t x0 = 0; x0 < n;) {
    const int64_t width = n - x0 <= 16 * kMaxVectors ? n - x0 : 64;
    const int nv = static_cast<int>((width + 15) / 16);
    const int rem = static_cast<int>(width - 16 * (nv - 1));
    const __mmask16 tail = static_cast<__mmask16>(rem == 16 ? 0xFFFF : (1u << rem) - 1);
    const DpKernel* table = nullptr;
    switch (nv) {
      case 1: table = dp_kernels_for<1>(); break;
      case 2: table = dp_kernels_for<2>(); break;
      case 3: table = dp_kernels_for<3>(); break;
      case 4: table = dp_kernels_for<4>(); break;
      case 5: table = dp_kernels_for<5>(); break;
      default: table = dp_kernels_for<6>(); break;
    }
    const int rows = rows_for(nv);
    for (int64_t r0 = 0; r0 < m; r0 += rows) {
      const int64_t rr = std::min<int64_t>(rows, m - r0);
      table[rr - 1](kp, a + r0 * a_rs, a_rs, a_ps, b + x0, ldb, c + r0 * ldc + x0, ldc, tail, accumulate, scale);
    }
    x0 += width;
  }
}

// exp(x) for 16 floats: the vec_math.h vexp (range reduction by ln 2, degree-6 polynomial), 0
// below -87 (so a masked score, -inf, gives 0).
// (The maskz forms with every lane set: GCC 12 warns about the undefined vector of the plain ones.)
STRAND_BF16_TARGET inline __m512 exp16(__m512 x) {
  constexpr __mmask16 kAll = 0xFFFF;
  const __m512 xc =
      _mm512_maskz_min_ps(kAll, _mm512_maskz_max_ps(kAll, x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_maskz_roundscale_ps(kAll, _mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693145751953125f), xc);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.3981999507e-3f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_maskz_slli_epi32(kAll, _mm512_maskz_cvtps_epi32(kAll, _mm512_add_ps(n, _mm512_set1_ps(127.0f))), 23);
  const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
  return _mm512_maskz_mul_ps(static_cast<__mmask16>(~under), p, _mm512_castsi512_ps(e));
}

// Lane 2i takes element i of the low row, lane 2i + 1 element i of the high row (16 + i), from
// _mm512_cvtne2ps_pbh(high, low).
STRAND_BF16_TARGET inline __m512i pair_interleave_index() {
  alignas(64) static constexpr uint16_t kIdx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_load_si512(kIdx);
}

// One pass over a score tile s (rows x cols, row stride ld), two rows at a time: e = exp(s[j][i]
// - sub[i]) (a masked score gives 0), sum[i] += e, and e rounded to bf16 and stored by what the
// product after it reads. Outputs (each may be null):
//   keep:  e back into s (float32)
//   rows:  rows[j][i] bf16 (row stride rows_ld, a multiple of 32)   A along i
//   words: words[p][i] = (e[2p][i], e[2p + 1][i]) (row stride w_ld)  A along j
// When mul is given, e is instead s[j][i] * (mul[j][i] - sub[i]) (dS from P and dP).
STRAND_BF16_TARGET inline void tile_pass(float* s, const float* mul, int64_t ld, int64_t rows, int64_t cols,
                                         const float* sub, float* sum, bool keep, uint16_t* rows_out, int64_t rows_ld,
                                         uint32_t* words, int64_t w_ld) {
  const __m512i idx = pair_interleave_index();
  for (int64_t j = 0; j < rows; j += 2) {
    const bool has_hi = j + 1 < rows;
    float* lo_row = s + j * ld;
    float* hi_row = lo_row + ld;
    for (int64_t x = 0; x < cols; x += 16) {
      const __mmask16 mk = static_cast<__mmask16>(cols - x >= 16 ? 0xFFFF : (1u << (cols - x)) - 1);
      const __m512 sb = _mm512_maskz_loadu_ps(mk, sub + x);
      __m512 lo, hi = _mm512_setzero_ps();
      if (mul) {
        lo = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, lo_row + x),
                           _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, mul + j * ld + x), sb));
        if (has_hi)
          hi = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, hi_row + x),
                             _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, mul + (j + 1) * ld + x), sb));
      } else {
        lo = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, lo_row + x), sb));
        if (has_hi) hi = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, hi_row + x), sb));
      }
      lo = _mm512_maskz_mov_ps(mk, lo);  // columns past cols: 0 (their scores are not set)
      hi = _mm512_maskz_mov_ps(mk, hi);
      if (sum) _mm512_mask_storeu_ps(sum + x, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, sum + x), _mm512_add_ps(lo, hi)));
      if (keep) {
        _mm512_mask_storeu_ps(lo_row + x, mk, lo);
        if (has_hi) _mm512_mask_storeu_ps(hi_row + x, mk, hi);
      }
      const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
      if (rows_out) {  // the low 16 values to row j, the high 16 to row j + 1 (masked stores, no shuffle)
        _mm512_mask_storeu_epi16(rows_out + j * rows_ld + x, 0x0000FFFFu, both);
        _mm512_mask_storeu_epi16(rows_out + (j + 1) * rows_ld + x - 16, 0xFFFF0000u, both);
      }
      if (words) _mm512_storeu_si512(words + (j / 2) * w_ld + x, _mm512_permutexvar_epi16(idx, both));
    }
  }
}

// bf16 rows src[i][0, d) (row stride ld values, `n` rows) as pairs of rows: out[p * d + c] =
// (src[2p][c], src[2p + 1][c]), a zero high half past an odd n. B for a reduction along the rows.
inline void pack_row_pairs(const uint16_t* src, int64_t ld, int64_t n, int64_t d, uint32_t* out) {
  for (int64_t p = 0; 2 * p < n; ++p) {
    const uint16_t* lo = src + 2 * p * ld;
    const uint16_t* hi = 2 * p + 1 < n ? lo + ld : nullptr;
    uint32_t* o = out + p * d;
    if (hi) {
      #pragma omp simd
      for (int64_t c = 0; c < d; ++c) o[c] = uint32_t{lo[c]} | (uint32_t{hi[c]} << 16);
    } else {
      #pragma omp simd
      for (int64_t c = 0; c < d; ++c) o[c] = uint32_t{lo[c]};
    }
  }
}

// bf16 rows src[i][0, d) (d even, row stride ld values) transposed by words: out[p * ldo + i] =
// (src[i][2p], src[i][2p + 1]), for i < n. B for a reduction along d, columns = rows of src.
inline void pack_col_pairs(const uint16_t* src, int64_t ld, int64_t n, int64_t d, uint32_t* out, int64_t ldo) {
  constexpr int64_t kRows = 16;  // 16 rows at a time, so each write fills a cache line
  for (int64_t i0 = 0; i0 < n; i0 += kRows) {
    const int64_t rows = std::min(kRows, n - i0);
    for (int64_t p = 0; p < d / 2; ++p)
      for (int64_t r = 0; r < rows; ++r) {
        const uint16_t* e = src + (i0 + r) * ld + 2 * p;
        out[p * ldo + i0 + r] = uint32_t{e[0]} | (uint32_t{e[1]} << 16);
      }
  }
}

}  // namespace strand::cpu::attention_bf16
