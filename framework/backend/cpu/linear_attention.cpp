// CPU Performer linear attention: positive random features through BLAS, the key/value sums
// (whole-sequence GEMMs when non-causal, running prefix sums when causal) and the hand-written
// backward. Parallel over (batch, head) slices; each slice is one thread's, so results do not
// depend on scheduling. See Note [Performer stabilisers] in framework/ops/linear_attention.cpp.
#include "framework/backend/cpu/linear_attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/backend/cpu/loops.h"

namespace strand::cpu {
namespace {

// Row-major C = alpha * op(A) op(B) + beta * C.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
}

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
  #pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// y += alpha * x
template <class T>
void axpy(T* y, T alpha, const T* x, int64_t n) {
  #pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Queries get one stabiliser per row, keys one per (batch, kv head) slice: both cancel between
// numerator and denominator, so the output and its gradient do not depend on them.
enum class Stabiliser { PerRow, PerSlice };

// phi[r, m] = exp(a[r, m] - c) / sqrt(M), a[r, m] = w_m . x_r' - |x_r'|^2 / 2, x' = root_scale * x,
// with c the largest exponent of the row (PerRow) or of all rows (PerSlice).
template <class T>
void positive_features(int64_t rows, int64_t dim, int64_t features, const T* x, const T* w, T root_scale,
                       Stabiliser stab, T* phi) {
  if (rows == 0) return;
  gemm(false, true, rows, features, dim, root_scale, x, dim, w, dim, T(0), phi, features);
  const T half_sq_scale = root_scale * root_scale / 2;
  T slice_max = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    T* a = phi + r * features;
    const T shift = half_sq_scale * dot(x + r * dim, x + r * dim, dim);
    T row_max = -std::numeric_limits<T>::infinity();
    #pragma omp simd reduction(max : row_max)
    for (int64_t m = 0; m < features; ++m) {
      a[m] -= shift;
      row_max = std::max(row_max, a[m]);
    }
    if (stab == Stabiliser::PerRow) {
      #pragma omp simd
      for (int64_t m = 0; m < features; ++m) a[m] = std::exp(a[m] - row_max);
    }
    slice_max = std::max(slice_max, row_max);
  }
  const T norm = T(1) / std::sqrt(static_cast<T>(features));
  const int64_t n = rows * features;
  if (stab == Stabiliser::PerSlice) {
    #pragma omp simd
    for (int64_t i = 0; i < n; ++i) phi[i] = std::exp(phi[i] - slice_max) * norm;
  } else {
    #pragma omp simd
    for (int64_t i = 0; i < n; ++i) phi[i] *= norm;
  }
}

// dx from dphi through phi: dx_r = root_scale * sum_m G[r,m] w_m - root_scale^2 * x_r * sum_m G[r,m],
// G = dphi * phi (d phi / d a = phi). The stabiliser is a constant here (see the enum's comment).
// dphi is overwritten with G.
template <class T>
void positive_features_backward(int64_t rows, int64_t dim, int64_t features, const T* x, const T* w, T root_scale,
                                const T* phi, T* dphi, T* dx) {
  if (rows == 0) return;
  std::vector<T> g_sum(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    T* g = dphi + r * features;
    const T* f = phi + r * features;
    T acc = 0;
    #pragma omp simd reduction(+ : acc)
    for (int64_t m = 0; m < features; ++m) {
      g[m] *= f[m];
      acc += g[m];
    }
    g_sum[r] = acc;
  }
  gemm(false, false, rows, dim, features, root_scale, dphi, features, w, dim, T(0), dx, dim);
  const T sq = root_scale * root_scale;
  for (int64_t r = 0; r < rows; ++r) axpy(dx + r * dim, -sq * g_sum[r], x + r * dim, dim);
}

// Causal forward of one query head: running S = sum_{j<=i} phi(k_j) v_j^T and z = sum_{j<=i} phi(k_j).
template <class T>
void causal_forward_scan(int64_t n, int64_t features, int64_t value_dim, const T* qf, const T* kf, const T* v,
                         T* out, T* den) {
  std::vector<T> kv_sum(static_cast<size_t>(features * value_dim), T(0)), k_sum(static_cast<size_t>(features), T(0));
  for (int64_t i = 0; i < n; ++i) {
    const T* kfi = kf + i * features;
    const T* qfi = qf + i * features;
    const T* vi = v + i * value_dim;
    T* oi = out + i * value_dim;
    std::fill(oi, oi + value_dim, T(0));
    T d = 0;
    for (int64_t m = 0; m < features; ++m) {
      k_sum[m] += kfi[m];
      T* s_row = kv_sum.data() + m * value_dim;
      axpy(s_row, kfi[m], vi, value_dim);
      d += qfi[m] * k_sum[m];
      axpy(oi, qfi[m], s_row, value_dim);
    }
    den[i] = d;
    const T inv = T(1) / d;
    #pragma omp simd
    for (int64_t c = 0; c < value_dim; ++c) oi[c] *= inv;
  }
}

// Causal backward of one query head. Forward scan: dqf_i = S_i dnum_i + z_i dden_i. Reverse scan
// with R_j = sum_{i>=j} phi(q_i) dnum_i^T, r_j = sum_{i>=j} phi(q_i) dden_i:
// dkf_j = R_j v_j + r_j and dv_j = R_j^T phi(k_j) (this head's share; heads of a group are summed later).
template <class T>
void causal_backward_scan(int64_t n, int64_t features, int64_t value_dim, const T* qf, const T* kf, const T* v,
                          const T* dnum, const T* dden, T* dqf, T* dkf, T* dv) {
  const size_t mat = static_cast<size_t>(features * value_dim);
  std::vector<T> acc(mat, T(0)), acc_vec(static_cast<size_t>(features), T(0));
  for (int64_t i = 0; i < n; ++i) {
    const T* kfi = kf + i * features;
    const T* vi = v + i * value_dim;
    const T* dni = dnum + i * value_dim;
    T* dqi = dqf + i * features;
    for (int64_t m = 0; m < features; ++m) {
      acc_vec[m] += kfi[m];
      T* s_row = acc.data() + m * value_dim;
      axpy(s_row, kfi[m], vi, value_dim);
      dqi[m] = dot(s_row, dni, value_dim) + acc_vec[m] * dden[i];
    }
  }
  std::fill(acc.begin(), acc.end(), T(0));
  std::fill(acc_vec.begin(), acc_vec.end(), T(0));
  for (int64_t j = n - 1; j >= 0; --j) {
    const T* qfj = qf + j * features;
    const T* kfj = kf + j * features;
    const T* vj = v + j * value_dim;
    const T* dnj = dnum + j * value_dim;
    T* dkj = dkf + j * features;
    T* dvj = dv + j * value_dim;
    std::fill(dvj, dvj + value_dim, T(0));
    for (int64_t m = 0; m < features; ++m) {
      acc_vec[m] += qfj[m] * dden[j];
      T* r_row = acc.data() + m * value_dim;
      axpy(r_row, qfj[m], dnj, value_dim);
      dkj[m] = dot(r_row, vj, value_dim) + acc_vec[m];
      axpy(dvj, kfj[m], r_row, value_dim);
    }
  }
}

// Key features of every (batch, kv head) slice and, when non-causal, their sums
// kv_sum = phi(K)^T V [M, Dv] and k_sum = phi(K)^T 1 [M].
template <class T>
void key_features(const LinearAttentionParams& p, const T* k, const T* v, const T* w, T root_scale, bool parallel,
                  std::vector<T>& kf, std::vector<T>& kv_sum, std::vector<T>& k_sum) {
  const int64_t slices = p.batch * p.kv_heads, n = p.kv_len, mf = p.features, dv = p.value_dim;
  kf.assign(static_cast<size_t>(slices * n * mf), T(0));
  if (!p.causal) {
    kv_sum.assign(static_cast<size_t>(slices * mf * dv), T(0));
    k_sum.assign(static_cast<size_t>(slices * mf), T(0));
  }
  #pragma omp parallel for schedule(static) if (parallel)
  for (int64_t s = 0; s < slices; ++s) {
    T* kfs = kf.data() + s * n * mf;
    positive_features(n, p.head_dim, mf, k + s * n * p.head_dim, w, root_scale, Stabiliser::PerSlice, kfs);
    if (p.causal) continue;
    gemm(true, false, mf, dv, n, T(1), kfs, mf, v + s * n * dv, dv, T(0), kv_sum.data() + s * mf * dv, dv);
    T* zs = k_sum.data() + s * mf;
    for (int64_t j = 0; j < n; ++j) axpy(zs, T(1), kfs + j * mf, mf);
  }
}

// Rough flop count of a call: below the grain one thread does it all.
bool worth_parallel(const LinearAttentionParams& p) {
  const int64_t rows = p.batch * (p.q_heads * p.q_len + p.kv_heads * p.kv_len);
  return rows * p.features * (p.head_dim + p.value_dim) > kParallelGrain;
}

}  // namespace

template <class T>
void linear_attention_forward(const LinearAttentionParams& p, const T* q, const T* k, const T* v, const T* w,
                              T* out, T* den) {
  const T root_scale = static_cast<T>(std::pow(static_cast<double>(p.head_dim), -0.25));
  const int64_t group = p.q_heads / p.kv_heads, mf = p.features, dv = p.value_dim, n = p.q_len;
  const bool parallel = worth_parallel(p);
  std::vector<T> kf, kv_sum, k_sum;
  key_features(p, k, v, w, root_scale, parallel, kf, kv_sum, k_sum);

  const int64_t q_slices = p.batch * p.q_heads;
  #pragma omp parallel for schedule(static) if (parallel)
  for (int64_t s = 0; s < q_slices; ++s) {
    const int64_t kv_slice = (s / p.q_heads) * p.kv_heads + (s % p.q_heads) / group;
    std::vector<T> qf(static_cast<size_t>(n * mf));
    positive_features(n, p.head_dim, mf, q + s * n * p.head_dim, w, root_scale, Stabiliser::PerRow, qf.data());
    T* o = out + s * n * dv;
    T* d = den + s * n;
    if (p.causal) {
      causal_forward_scan(n, mf, dv, qf.data(), kf.data() + kv_slice * p.kv_len * mf, v + kv_slice * p.kv_len * dv,
                          o, d);
      continue;
    }
    if (n == 0) continue;
    gemm(false, false, n, dv, mf, T(1), qf.data(), mf, kv_sum.data() + kv_slice * mf * dv, dv, T(0), o, dv);
    const T* z = k_sum.data() + kv_slice * mf;
    for (int64_t i = 0; i < n; ++i) {
      d[i] = dot(qf.data() + i * mf, z, mf);
      const T inv = T(1) / d[i];
      #pragma omp simd
      for (int64_t c = 0; c < dv; ++c) o[i * dv + c] *= inv;
    }
  }
}

template <class T>
void linear_attention_backward(const LinearAttentionParams& p, const T* q, const T* k, const T* v, const T* w,
                               const T* out, const T* den, const T* dout, T* dq, T* dk, T* dv) {
  const T root_scale = static_cast<T>(std::pow(static_cast<double>(p.head_dim), -0.25));
  const int64_t group = p.q_heads / p.kv_heads, mf = p.features, vd = p.value_dim, n = p.q_len, nk = p.kv_len;
  const bool parallel = worth_parallel(p);
  std::vector<T> kf, kv_sum, k_sum;
  key_features(p, k, v, w, root_scale, parallel, kf, kv_sum, k_sum);

  // Per query head: dq, and its share of d phi(K) and dV (summed over the heads of a group below,
  // in a fixed order, so the result does not depend on the thread count).
  const int64_t q_slices = p.batch * p.q_heads;
  std::vector<T> dkf_heads(static_cast<size_t>(q_slices * nk * mf)), dv_heads(static_cast<size_t>(q_slices * nk * vd));
  #pragma omp parallel for schedule(static) if (parallel)
  for (int64_t s = 0; s < q_slices; ++s) {
    const int64_t kv_slice = (s / p.q_heads) * p.kv_heads + (s % p.q_heads) / group;
    const T* qs = q + s * n * p.head_dim;
    const T* kfs = kf.data() + kv_slice * nk * mf;
    const T* vs = v + kv_slice * nk * vd;
    std::vector<T> qf(static_cast<size_t>(n * mf)), dqf(static_cast<size_t>(n * mf));
    positive_features(n, p.head_dim, mf, qs, w, root_scale, Stabiliser::PerRow, qf.data());
    // out_i = num_i / den_i: dnum_i = g_i / den_i, dden_i = -(g_i . out_i) / den_i.
    std::vector<T> dnum(static_cast<size_t>(n * vd)), dden(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const T* gi = dout + (s * n + i) * vd;
      const T inv = T(1) / den[s * n + i];
      dden[i] = -dot(gi, out + (s * n + i) * vd, vd) * inv;
      #pragma omp simd
      for (int64_t c = 0; c < vd; ++c) dnum[i * vd + c] = gi[c] * inv;
    }
    T* dkf_h = dkf_heads.data() + s * nk * mf;
    T* dv_h = dv_heads.data() + s * nk * vd;
    if (p.causal) {
      causal_backward_scan(n, mf, vd, qf.data(), kfs, vs, dnum.data(), dden.data(), dqf.data(), dkf_h, dv_h);
    } else if (n > 0) {
      const T* s_mat = kv_sum.data() + kv_slice * mf * vd;
      const T* z = k_sum.data() + kv_slice * mf;
      gemm(false, true, n, mf, vd, T(1), dnum.data(), vd, s_mat, vd, T(0), dqf.data(), mf);  // dnum S^T
      for (int64_t i = 0; i < n; ++i) axpy(dqf.data() + i * mf, dden[i], z, mf);
      std::vector<T> ds(static_cast<size_t>(mf * vd)), dz(static_cast<size_t>(mf), T(0));
      gemm(true, false, mf, vd, n, T(1), qf.data(), mf, dnum.data(), vd, T(0), ds.data(), vd);  // phi(Q)^T dnum
      for (int64_t i = 0; i < n; ++i) axpy(dz.data(), dden[i], qf.data() + i * mf, mf);
      gemm(false, true, nk, mf, vd, T(1), vs, vd, ds.data(), vd, T(0), dkf_h, mf);  // V dS^T
      for (int64_t j = 0; j < nk; ++j) axpy(dkf_h + j * mf, T(1), dz.data(), mf);
      gemm(false, false, nk, vd, mf, T(1), kfs, mf, ds.data(), vd, T(0), dv_h, vd);  // phi(K) dS
    } else {
      std::fill(dkf_h, dkf_h + nk * mf, T(0));
      std::fill(dv_h, dv_h + nk * vd, T(0));
    }
    positive_features_backward(n, p.head_dim, mf, qs, w, root_scale, qf.data(), dqf.data(), dq + s * n * p.head_dim);
  }

  const int64_t kv_slices = p.batch * p.kv_heads;
  #pragma omp parallel for schedule(static) if (parallel)
  for (int64_t s = 0; s < kv_slices; ++s) {
    const int64_t first = (s / p.kv_heads) * p.q_heads + (s % p.kv_heads) * group;
    std::vector<T> dkf(dkf_heads.begin() + first * nk * mf, dkf_heads.begin() + (first + 1) * nk * mf);
    T* dvs = dv + s * nk * vd;
    std::copy(dv_heads.begin() + first * nk * vd, dv_heads.begin() + (first + 1) * nk * vd, dvs);
    for (int64_t h = first + 1; h < first + group; ++h) {
      axpy(dkf.data(), T(1), dkf_heads.data() + h * nk * mf, nk * mf);
      axpy(dvs, T(1), dv_heads.data() + h * nk * vd, nk * vd);
    }
    positive_features_backward(nk, p.head_dim, mf, k + s * nk * p.head_dim, w, root_scale,
                               kf.data() + s * nk * mf, dkf.data(), dk + s * nk * p.head_dim);
  }
}

template void linear_attention_forward<float>(const LinearAttentionParams&, const float*, const float*, const float*,
                                              const float*, float*, float*);
template void linear_attention_forward<double>(const LinearAttentionParams&, const double*, const double*,
                                               const double*, const double*, double*, double*);
template void linear_attention_backward<float>(const LinearAttentionParams&, const float*, const float*, const float*,
                                               const float*, const float*, const float*, const float*, float*, float*,
                                               float*);
template void linear_attention_backward<double>(const LinearAttentionParams&, const double*, const double*,
                                                const double*, const double*, const double*, const double*,
                                                const double*, double*, double*, double*);

void linear_attention_forward_kernel(const backend::LinearAttentionForwardParams& p) {
  auto run = [&]<class T>() {
    linear_attention_forward<T>(p, static_cast<const T*>(p.q), static_cast<const T*>(p.k),
                                static_cast<const T*>(p.v), static_cast<const T*>(p.w), static_cast<T*>(p.out),
                                static_cast<T*>(p.den));
  };
  if (p.dtype == DType::F64) run.template operator()<double>();
  else run.template operator()<float>();
}

void linear_attention_backward_kernel(const backend::LinearAttentionBackwardParams& p) {
  auto run = [&]<class T>() {
    linear_attention_backward<T>(p, static_cast<const T*>(p.q), static_cast<const T*>(p.k),
                                 static_cast<const T*>(p.v), static_cast<const T*>(p.w),
                                 static_cast<const T*>(p.out), static_cast<const T*>(p.den),
                                 static_cast<const T*>(p.dout), static_cast<T*>(p.dq), static_cast<T*>(p.dk),
                                 static_cast<T*>(p.dv));
  };
  if (p.dtype == DType::F64) run.template operator()<double>();
  else run.template operator()<float>();
}

}  // namespace strand::cpu
