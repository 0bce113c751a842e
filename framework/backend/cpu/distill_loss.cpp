// Logit-distillation kernels: KL(softmax(t / T) || softmax(s / T)) per row, and its gradient
// T (softmax(s / T) - softmax(t / T)) in the student's logits, in double accumulators.
#include "framework/backend/cpu/distill_loss.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {
namespace {

// log sum_j exp(x[j] / temperature), with the max taken first.
template <class T>
double scaled_logsumexp(const T* x, int64_t V, double inv_t) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < V; ++j) m = std::max(m, static_cast<double>(x[j]) * inv_t);
  double s = 0.0;
  for (int64_t j = 0; j < V; ++j) s += std::exp(static_cast<double>(x[j]) * inv_t - m);
  return m + std::log(s);
}

template <class T>
void forward(const backend::DistillLossParams& p) {
  const T* s = static_cast<const T*>(p.student);
  const T* t = static_cast<const T*>(p.teacher);
  T* lse_s = static_cast<T*>(p.lse_student);
  T* lse_t = static_cast<T*>(p.lse_teacher);
  const double inv_t = 1.0 / p.temperature, t2 = p.temperature * p.temperature;
  const int64_t V = p.V;
  #pragma omp parallel for if (p.N * V > kParallelGrain)
  for (int64_t r = 0; r < p.N; ++r) {
    if (p.targets[r] == p.ignore_index) {
      lse_s[r] = lse_t[r] = T(0);
      p.row_loss[r] = 0.0;
      continue;
    }
    const T* sr = s + r * p.ld;
    const T* tr = t + r * p.ld;
    const double ls = scaled_logsumexp(sr, V, inv_t), lt = scaled_logsumexp(tr, V, inv_t);
    // KL = sum_j p_t (log p_t - log p_s), log p = x / T - lse.
    double kl = 0.0;
    for (int64_t j = 0; j < V; ++j) {
      const double log_pt = static_cast<double>(tr[j]) * inv_t - lt;
      const double log_ps = static_cast<double>(sr[j]) * inv_t - ls;
      kl += std::exp(log_pt) * (log_pt - log_ps);
    }
    lse_s[r] = static_cast<T>(ls);
    lse_t[r] = static_cast<T>(lt);
    p.row_loss[r] = t2 * kl;
  }
}

template <class T>
void backward(const backend::DistillLossParams& p) {
  const T* s = static_cast<const T*>(p.student);
  const T* t = static_cast<const T*>(p.teacher);
  const T* lse_s = static_cast<const T*>(p.lse_student);
  const T* lse_t = static_cast<const T*>(p.lse_teacher);
  T* d = static_cast<T*>(p.dstudent);
  const double inv_t = 1.0 / p.temperature;
  // d(T^2 KL) / ds_j = T (p_s,j - p_t,j).
  const double scale = p.scale * p.temperature;
  const int64_t V = p.V;
  #pragma omp parallel for if (p.N * V > kParallelGrain)
  for (int64_t r = 0; r < p.N; ++r) {
    T* dr = d + r * V;
    if (p.targets[r] == p.ignore_index) {
      std::fill(dr, dr + V, T(0));
      continue;
    }
    const T* sr = s + r * p.ld;
    const T* tr = t + r * p.ld;
    const double ls = lse_s[r], lt = lse_t[r];
    for (int64_t j = 0; j < V; ++j) {
      const double ps = std::exp(static_cast<double>(sr[j]) * inv_t - ls);
      const double pt = std::exp(static_cast<double>(tr[j]) * inv_t - lt);
      dr[j] = static_cast<T>(scale * (ps - pt));
    }
  }
}

}  // namespace

void distill_loss(const backend::DistillLossParams& p) {
  by_float("distill_loss", p.dtype, [&]<class T>() {
    if (p.op == backend::DistillLossOp::Forward) forward<T>(p);
    else backward<T>(p);
  });
}

}  // namespace strand::cpu
