// Materialised-scores attention, forward and backward, accumulated in double.
#include "framework/backend/cpu/attention_reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/backend/cpu/loops.h"

namespace strand::cpu {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

template <class T>
double dot(const T* a, const T* b, int64_t D) {
  double s = 0.0;
  #pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < D; ++d) s += static_cast<double>(a[d]) * static_cast<double>(b[d]);
  return s;
}

bool attends(const AttentionRefParams& p, int64_t b, int64_t h, int64_t i, int64_t j) {
  if (!p.mask) return true;
  const int64_t* s = p.mask_strides;
  return p.mask[b * s[0] + h * s[1] + i * s[2] + j * s[3]] != 0;
}

// Offsets of row i of query head h and of key row j of its kv head, in elements.
struct Index {
  const AttentionRefParams& p;
  int64_t group() const { return p.Hq / p.Hkv; }
  int64_t q_row(int64_t b, int64_t h, int64_t i) const { return ((b * p.Hq + h) * p.Nq + i); }
  int64_t k_row(int64_t b, int64_t g, int64_t j) const { return ((b * p.Hkv + g) * p.Nk + j); }
};

}  // namespace

template <class T>
void attention_reference_forward(const AttentionRefParams& p, const T* q, const T* k, const T* v, T* o, T* lse) {
  const Index ix{p};
  const int64_t rows = p.B * p.Hq * p.Nq, D = p.D;
  #pragma omp parallel if (rows * p.Nk * D > kParallelGrain)
  {
    std::vector<double> score(static_cast<size_t>(p.Nk)), acc(static_cast<size_t>(D));
    #pragma omp for
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r % p.Nq, h = (r / p.Nq) % p.Hq, b = r / (p.Nq * p.Hq);
      const int64_t g = h / ix.group();
      const T* qi = q + r * D;
      double m = kNegInf;
      for (int64_t j = 0; j < p.Nk; ++j) {
        score[j] = attends(p, b, h, i, j) ? p.scale * dot(qi, k + ix.k_row(b, g, j) * D, D) : kNegInf;
        m = std::max(m, score[j]);
      }
      T* oi = o + r * D;
      if (m == kNegInf) {  // no key to attend: defined as o = 0, lse = -inf
        for (int64_t d = 0; d < D; ++d) oi[d] = T(0);
        lse[r] = static_cast<T>(kNegInf);
        continue;
      }
      double sum = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < p.Nk; ++j) {
        if (score[j] == kNegInf) continue;
        const double e = std::exp(score[j] - m);
        sum += e;
        const T* vj = v + ix.k_row(b, g, j) * D;
        #pragma omp simd
        for (int64_t d = 0; d < D; ++d) acc[d] += e * static_cast<double>(vj[d]);
      }
      for (int64_t d = 0; d < D; ++d) oi[d] = static_cast<T>(acc[d] / sum);
      lse[r] = static_cast<T>(m + std::log(sum));
    }
  }
}

template <class T>
void attention_reference_backward(const AttentionRefParams& p, const T* q, const T* k, const T* v, const T* o,
                                  const T* lse, const T* dout, const T* dlse, T* dq, T* dk, T* dv) {
  const Index ix{p};
  const int64_t rows = p.B * p.Hq * p.Nq, D = p.D;
  const bool parallel = rows * p.Nk * D > kParallelGrain;
  // Per query row: delta = rowsum(dO * O) - dlse, so that dS = P * (dP - delta).
  std::vector<double> delta(static_cast<size_t>(rows));

  // Pass 1, one query row per iteration: delta and dQ = scale * dS K.
  #pragma omp parallel if (parallel)
  {
    std::vector<double> acc(static_cast<size_t>(D));
    #pragma omp for
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r % p.Nq, h = (r / p.Nq) % p.Hq, b = r / (p.Nq * p.Hq);
      const int64_t g = h / ix.group();
      T* dqi = dq + r * D;
      const double l = lse[r];
      if (l == kNegInf) {
        delta[r] = 0.0;
        for (int64_t d = 0; d < D; ++d) dqi[d] = T(0);
        continue;
      }
      const T* qi = q + r * D;
      const T* doi = dout + r * D;
      delta[r] = dot(doi, o + r * D, D) - static_cast<double>(dlse[r]);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < p.Nk; ++j) {
        if (!attends(p, b, h, i, j)) continue;
        const T* kj = k + ix.k_row(b, g, j) * D;
        const double prob = std::exp(p.scale * dot(qi, kj, D) - l);
        const double ds = prob * (dot(doi, v + ix.k_row(b, g, j) * D, D) - delta[r]);
        #pragma omp simd
        for (int64_t d = 0; d < D; ++d) acc[d] += ds * static_cast<double>(kj[d]);
      }
      for (int64_t d = 0; d < D; ++d) dqi[d] = static_cast<T>(p.scale * acc[d]);
    }
  }

  // Pass 2, one key row per iteration: dV = P^T dO and dK = scale * dS^T Q, summed over every
  // query head of the kv head and every query row.
  const int64_t key_rows = p.B * p.Hkv * p.Nk;
  #pragma omp parallel if (parallel)
  {
    std::vector<double> acc_k(static_cast<size_t>(D)), acc_v(static_cast<size_t>(D));
    #pragma omp for
    for (int64_t kr = 0; kr < key_rows; ++kr) {
      const int64_t j = kr % p.Nk, g = (kr / p.Nk) % p.Hkv, b = kr / (p.Nk * p.Hkv);
      const T* kj = k + kr * D;
      const T* vj = v + kr * D;
      std::fill(acc_k.begin(), acc_k.end(), 0.0);
      std::fill(acc_v.begin(), acc_v.end(), 0.0);
      for (int64_t h = g * ix.group(); h < (g + 1) * ix.group(); ++h) {
        for (int64_t i = 0; i < p.Nq; ++i) {
          const int64_t r = ix.q_row(b, h, i);
          const double l = lse[r];
          if (l == kNegInf || !attends(p, b, h, i, j)) continue;
          const T* qi = q + r * D;
          const T* doi = dout + r * D;
          const double prob = std::exp(p.scale * dot(qi, kj, D) - l);
          const double ds = prob * (dot(doi, vj, D) - delta[r]);
          #pragma omp simd
          for (int64_t d = 0; d < D; ++d) {
            acc_v[d] += prob * static_cast<double>(doi[d]);
            acc_k[d] += ds * static_cast<double>(qi[d]);
          }
        }
      }
      T* dkj = dk + kr * D;
      T* dvj = dv + kr * D;
      for (int64_t d = 0; d < D; ++d) {
        dkj[d] = static_cast<T>(p.scale * acc_k[d]);
        dvj[d] = static_cast<T>(acc_v[d]);
      }
    }
  }
}

template void attention_reference_forward<float>(const AttentionRefParams&, const float*, const float*,
                                                 const float*, float*, float*);
template void attention_reference_forward<double>(const AttentionRefParams&, const double*, const double*,
                                                  const double*, double*, double*);
template void attention_reference_backward<float>(const AttentionRefParams&, const float*, const float*,
                                                  const float*, const float*, const float*, const float*,
                                                  const float*, float*, float*, float*);
template void attention_reference_backward<double>(const AttentionRefParams&, const double*, const double*,
                                                   const double*, const double*, const double*, const double*,
                                                   const double*, double*, double*, double*);

void attention_reference_forward_kernel(const backend::AttentionReferenceForwardParams& p) {
  auto run = [&]<class T>() {
    attention_reference_forward<T>(p, static_cast<const T*>(p.q), static_cast<const T*>(p.k),
                                   static_cast<const T*>(p.v), static_cast<T*>(p.o), static_cast<T*>(p.lse));
  };
  if (p.dtype == DType::F64) run.template operator()<double>();
  else run.template operator()<float>();
}

void attention_reference_backward_kernel(const backend::AttentionReferenceBackwardParams& p) {
  auto run = [&]<class T>() {
    attention_reference_backward<T>(p, static_cast<const T*>(p.q), static_cast<const T*>(p.k),
                                    static_cast<const T*>(p.v), static_cast<const T*>(p.o),
                                    static_cast<const T*>(p.lse), static_cast<const T*>(p.d_o),
                                    static_cast<const T*>(p.d_lse), static_cast<T*>(p.dq), static_cast<T*>(p.dk),
                                    static_cast<T*>(p.dv));
  };
  if (p.dtype == DType::F64) run.template operator()<double>();
  else run.template operator()<float>();
}

}  // namespace strand::cpu
