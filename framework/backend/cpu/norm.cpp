// CPU LayerNorm / RMSNorm kernels: row statistics accumulated in double, unit-stride SIMD loops
// along each row, OpenMP across rows (forward) or across fixed row blocks (backward).
#include "framework/backend/cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {
namespace {

// Row statistics are summed in double: a float32 sum over thousands of channels loses digits
// that the variance (a difference of nearby numbers) needs, and the row is in cache anyway.
using Acc = double;

// The backward splits the rows into at most this many fixed blocks; each keeps its own partial
// dweight/dbias rows, so the scratch is kMaxRowBlocks * n values however long the sequence.
constexpr int64_t kMaxRowBlocks = 64;

// y = xhat * w + b over one row, with the weight/bias branches hoisted out of the SIMD loop.
template <class T, bool HasWeight, bool HasBias>
void scale_shift_row(int64_t n, const T* x, T shift, T scale, const T* w, const T* b, T* y) {
  #pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    T v = (x[j] - shift) * scale;
    if constexpr (HasWeight) v *= w[j];
    if constexpr (HasBias) v += b[j];
    y[j] = v;
  }
}

template <class T>
void scale_shift(int64_t n, const T* x, T shift, T scale, const T* w, const T* b, T* y) {
  if (w && b) scale_shift_row<T, true, true>(n, x, shift, scale, w, b, y);
  else if (w) scale_shift_row<T, true, false>(n, x, shift, scale, w, b, y);
  else if (b) scale_shift_row<T, false, true>(n, x, shift, scale, w, b, y);
  else scale_shift_row<T, false, false>(n, x, shift, scale, w, b, y);
}

// dx, and the row's contribution to the partial dweight (pw) and dbias (pb) sums, for one row.
template <class T, bool Centred, bool HasWeight>
void backward_row(int64_t n, const T* x, const T* g, const T* w, T mean, T rstd, T* dx, Acc* pw, Acc* pb) {
  Acc sum_dxhat = 0, sum_dxhat_xhat = 0;
  #pragma omp simd reduction(+ : sum_dxhat, sum_dxhat_xhat)
  for (int64_t j = 0; j < n; ++j) {
    const T xhat = Centred ? (x[j] - mean) * rstd : x[j] * rstd;
    const T dxhat = HasWeight ? g[j] * w[j] : g[j];
    sum_dxhat += dxhat;
    sum_dxhat_xhat += dxhat * xhat;
  }
  const T a = Centred ? static_cast<T>(sum_dxhat / static_cast<Acc>(n)) : T(0);
  const T b = static_cast<T>(sum_dxhat_xhat / static_cast<Acc>(n));
  if (dx && pw && pb) {
    // Training's case: dx and both parameter rows in one pass over x and g instead of three,
    // with the same arithmetic per element as the separate loops below, so the same bits
    // (tests/framework/ops/norm_test.cpp checks it).
    #pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const T xhat = Centred ? (x[j] - mean) * rstd : x[j] * rstd;
      const T dxhat = HasWeight ? g[j] * w[j] : g[j];
      dx[j] = rstd * (dxhat - a - xhat * b);
      pw[j] += static_cast<Acc>(g[j]) * ((Centred ? x[j] - mean : x[j]) * rstd);
      pb[j] += g[j];
    }
    return;
  }
  if (dx) {
    #pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const T xhat = Centred ? (x[j] - mean) * rstd : x[j] * rstd;
      const T dxhat = HasWeight ? g[j] * w[j] : g[j];
      dx[j] = rstd * (dxhat - a - xhat * b);
    }
  }
  if (pw) {
    #pragma omp simd
    for (int64_t j = 0; j < n; ++j) pw[j] += static_cast<Acc>(g[j]) * ((Centred ? x[j] - mean : x[j]) * rstd);
  }
  if (pb) {
    #pragma omp simd
    for (int64_t j = 0; j < n; ++j) pb[j] += g[j];
  }
}

template <class T, bool Centred, bool HasWeight>
void norm_backward_impl(const NormBackwardParams<T>& p) {
  const int64_t rows = p.rows, n = p.n;
  const int64_t blocks = std::min(rows, kMaxRowBlocks);
  const int64_t stride = n * ((p.dweight ? 1 : 0) + (p.dbias ? 1 : 0));  // scratch per block
  std::vector<Acc> partial(static_cast<size_t>(blocks * stride), Acc(0));
  #pragma omp parallel for schedule(static) if (rows * n > kParallelGrain)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    Acc* pw = p.dweight ? partial.data() + blk * stride : nullptr;
    Acc* pb = p.dbias ? partial.data() + blk * stride + (p.dweight ? n : 0) : nullptr;
    const int64_t r0 = blk * rows / blocks, r1 = (blk + 1) * rows / blocks;
    for (int64_t r = r0; r < r1; ++r)
      backward_row<T, Centred, HasWeight>(n, p.x + r * n, p.g + r * n, p.weight, Centred ? p.mean[r] : T(0),
                                          p.rstd[r], p.dx ? p.dx + r * n : nullptr, pw, pb);
  }
  // Blocks summed in index order: the same bits for any thread count.
  auto reduce_blocks = [&](int64_t column_offset, T* out) {
    std::vector<Acc> total(static_cast<size_t>(n), Acc(0));
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const Acc* src = partial.data() + blk * stride + column_offset;
      #pragma omp simd
      for (int64_t j = 0; j < n; ++j) total[j] += src[j];
    }
    for (int64_t j = 0; j < n; ++j) out[j] = static_cast<T>(total[j]);
  };
  if (p.dweight) reduce_blocks(0, p.dweight);
  if (p.dbias) reduce_blocks(p.dweight ? n : 0, p.dbias);
}

}  // namespace

template <class T>
void layer_norm_forward(int64_t rows, int64_t n, const T* x, const T* weight, const T* bias, double eps, T* y,
                        T* mean, T* rstd) {
  if (n == 0) return;
  #pragma omp parallel for if (rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    Acc s = 0;
    #pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; ++j) s += xr[j];
    const Acc m = s / static_cast<Acc>(n);
    // Second pass over the (cached) row: sum of squared deviations, no cancellation.
    Acc ss = 0;
    #pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < n; ++j) {
      const Acc d = static_cast<Acc>(xr[j]) - m;
      ss += d * d;
    }
    const Acc rs = 1.0 / std::sqrt(ss / static_cast<Acc>(n) + eps);
    mean[r] = static_cast<T>(m);
    rstd[r] = static_cast<T>(rs);
    scale_shift<T>(n, xr, static_cast<T>(m), static_cast<T>(rs), weight, bias, y + r * n);
  }
}

template <class T>
void rms_norm_forward(int64_t rows, int64_t n, const T* x, const T* weight, double eps, T* y, T* rstd) {
  if (n == 0) return;
  #pragma omp parallel for if (rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    Acc ss = 0;
    #pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < n; ++j) ss += static_cast<Acc>(xr[j]) * xr[j];
    const Acc rs = 1.0 / std::sqrt(ss / static_cast<Acc>(n) + eps);
    rstd[r] = static_cast<T>(rs);
    scale_shift<T>(n, xr, T(0), static_cast<T>(rs), weight, nullptr, y + r * n);
  }
}

template <class T>
void norm_backward(const NormBackwardParams<T>& p) {
  if (p.n == 0) return;
  const bool centred = p.mean != nullptr, weighted = p.weight != nullptr;
  if (centred && weighted) norm_backward_impl<T, true, true>(p);
  else if (centred) norm_backward_impl<T, true, false>(p);
  else if (weighted) norm_backward_impl<T, false, true>(p);
  else norm_backward_impl<T, false, false>(p);
}

template void layer_norm_forward<float>(int64_t, int64_t, const float*, const float*, const float*, double, float*,
                                        float*, float*);
template void layer_norm_forward<double>(int64_t, int64_t, const double*, const double*, const double*, double,
                                         double*, double*, double*);
template void rms_norm_forward<float>(int64_t, int64_t, const float*, const float*, double, float*, float*);
template void rms_norm_forward<double>(int64_t, int64_t, const double*, const double*, double, double*, double*);
template void norm_backward<float>(const NormBackwardParams<float>&);
template void norm_backward<double>(const NormBackwardParams<double>&);

void norm_rows(const backend::NormParams& p) {
  by_float("norm_rows", p.dtype, [&]<class T>() {
    switch (p.op) {
      case backend::NormOp::LayerNorm:
        layer_norm_forward<T>(p.rows, p.n, static_cast<const T*>(p.x), static_cast<const T*>(p.weight),
                              static_cast<const T*>(p.bias), p.eps, static_cast<T*>(p.y), static_cast<T*>(p.mean),
                              static_cast<T*>(p.rstd));
        return;
      case backend::NormOp::RmsNorm:
        rms_norm_forward<T>(p.rows, p.n, static_cast<const T*>(p.x), static_cast<const T*>(p.weight), p.eps,
                            static_cast<T*>(p.y), static_cast<T*>(p.rstd));
        return;
      case backend::NormOp::Backward: {
        NormBackwardParams<T> b;
        b.rows = p.rows;
        b.n = p.n;
        b.x = static_cast<const T*>(p.x);
        b.g = static_cast<const T*>(p.g);
        b.weight = static_cast<const T*>(p.weight);
        b.mean = static_cast<const T*>(p.mean);
        b.rstd = static_cast<const T*>(p.rstd);
        b.dx = static_cast<T*>(p.dx);
        b.dweight = static_cast<T*>(p.dweight);
        b.dbias = static_cast<T*>(p.dbias);
        norm_backward<T>(b);
        return;
      }
    }
  });
}

}  // namespace strand::cpu
