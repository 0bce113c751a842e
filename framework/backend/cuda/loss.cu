// CUDA loss kernels: the fused cross-entropy (per-row log-sum-exp and loss; softmax - onehot)
// and logit distillation (temperature-scaled KL and its student gradient). One block per row
// for the forwards, one thread per logit for the backwards; the arithmetic of
// framework/backend/cpu/{cross_entropy,distill_loss}.cpp (exponentials in the dtype with double
// row sums for cross-entropy, everything in double for distillation).
#include "framework/backend/cuda/common.cuh"

namespace strand::cuda {
namespace {

template <class T>
__global__ void cross_entropy_forward_kernel(const T* logits, int64_t ld, int64_t N, int64_t V, const int32_t* targets,
                                             int32_t ignore_index, T* lse, double* row_loss) {
  __shared__ T tmax[32];
  __shared__ double dsum[32];
  STRAND_ROW_LOOP(r, N) {
    const int32_t t = targets[r];
    if (t == ignore_index) {  // the same for the whole block: no thread is left in a reduction
      if (threadIdx.x == 0) {
        lse[r] = T(0);
        row_loss[r] = 0.0;
      }
      continue;
    }
    const T* x = logits + r * ld;
    T m = -infinity<T>();
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = x[j] > m ? x[j] : m;
    m = block_max(m, tmax);
    double s = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += static_cast<double>(d_exp(x[j] - m));
    s = block_sum(s, dsum);
    if (threadIdx.x == 0) {
      const double l = static_cast<double>(m) + log(s);
      lse[r] = static_cast<T>(l);
      row_loss[r] = l - static_cast<double>(x[t]);
    }
  }
}

template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, int64_t ld, int64_t N, int64_t V,
                                              const int32_t* targets, int32_t ignore_index, const T* lse, T scale,
                                              T* dlogits) {
  STRAND_GRID_LOOP(i, N * V) {
    const int64_t r = i / V, j = i % V;
    const int32_t t = targets[r];
    if (t == ignore_index) {
      dlogits[i] = T(0);
      continue;
    }
    T v = d_exp(logits[r * ld + j] - lse[r]) * scale;
    if (j == t) v -= scale;
    dlogits[i] = v;
  }
}

template <class T>
__global__ void distill_forward_kernel(const T* student, const T* teacher, int64_t ld, int64_t N, int64_t V,
                                       const int32_t* targets, int32_t ignore_index, double inv_t, double t2,
                                       T* lse_s, T* lse_t, double* row_loss) {
  __shared__ double smem[32];
  STRAND_ROW_LOOP(r, N) {
    if (targets[r] == ignore_index) {  // uniform per block
      if (threadIdx.x == 0) {
        lse_s[r] = lse_t[r] = T(0);
        row_loss[r] = 0.0;
      }
      continue;
    }
    const T* sr = student + r * ld;
    const T* tr = teacher + r * ld;
    double ms = -infinity<double>(), mt = -infinity<double>();
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      ms = fmax(ms, static_cast<double>(sr[j]) * inv_t);
      mt = fmax(mt, static_cast<double>(tr[j]) * inv_t);
    }
    ms = block_max(ms, smem);
    mt = block_max(mt, smem);
    double ss = 0, st = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      ss += exp(static_cast<double>(sr[j]) * inv_t - ms);
      st += exp(static_cast<double>(tr[j]) * inv_t - mt);
    }
    const double ls = ms + log(block_sum(ss, smem));
    const double lt = mt + log(block_sum(st, smem));
    // KL = sum_j p_t (log p_t - log p_s), log p = x / T - lse.
    double kl = 0;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const double log_pt = static_cast<double>(tr[j]) * inv_t - lt;
      const double log_ps = static_cast<double>(sr[j]) * inv_t - ls;
      kl += exp(log_pt) * (log_pt - log_ps);
    }
    kl = block_sum(kl, smem);
    if (threadIdx.x == 0) {
      lse_s[r] = static_cast<T>(ls);
      lse_t[r] = static_cast<T>(lt);
      row_loss[r] = t2 * kl;
    }
  }
}

template <class T>
__global__ void distill_backward_kernel(const T* student, const T* teacher, int64_t ld, int64_t N, int64_t V,
                                        const int32_t* targets, int32_t ignore_index, double inv_t, const T* lse_s,
                                        const T* lse_t, double scale, T* d) {
  STRAND_GRID_LOOP(i, N * V) {
    const int64_t r = i / V, j = i % V;
    if (targets[r] == ignore_index) {
      d[i] = T(0);
      continue;
    }
    const double ps = exp(static_cast<double>(student[r * ld + j]) * inv_t - static_cast<double>(lse_s[r]));
    const double pt = exp(static_cast<double>(teacher[r * ld + j]) * inv_t - static_cast<double>(lse_t[r]));
    d[i] = static_cast<T>(scale * (ps - pt));
  }
}

}  // namespace

void cross_entropy(const CrossEntropyArgs& a) {
  if (a.N <= 0) return;
  set_device(a.device);
  cudaStream_t st = stream(a.device);
  by_float("cross_entropy", a.dt, [&](auto zero) {
    using T = decltype(zero);
    const T* logits = static_cast<const T*>(a.logits);
    if (!a.backward)
      cross_entropy_forward_kernel<T><<<row_blocks(a.N), kThreads, 0, st>>>(
          logits, a.ld, a.N, a.V, a.targets, a.ignore_index, static_cast<T*>(a.lse), a.row_loss);
    else if (a.V > 0)
      cross_entropy_backward_kernel<T><<<blocks_for(a.N * a.V), kThreads, 0, st>>>(
          logits, a.ld, a.N, a.V, a.targets, a.ignore_index, static_cast<const T*>(a.lse), static_cast<T>(a.scale),
          static_cast<T*>(a.dlogits));
  });
  check_launch("cross_entropy");
}

void distill_loss(const DistillArgs& a) {
  if (a.N <= 0) return;
  set_device(a.device);
  cudaStream_t st = stream(a.device);
  const double inv_t = 1.0 / a.temperature;
  by_float("distill_loss", a.dt, [&](auto zero) {
    using T = decltype(zero);
    const T* s = static_cast<const T*>(a.student);
    const T* t = static_cast<const T*>(a.teacher);
    if (!a.backward)
      distill_forward_kernel<T><<<row_blocks(a.N), kThreads, 0, st>>>(
          s, t, a.ld, a.N, a.V, a.targets, a.ignore_index, inv_t, a.temperature * a.temperature,
          static_cast<T*>(a.lse_student), static_cast<T*>(a.lse_teacher), a.row_loss);
    else if (a.V > 0)
      // d(T^2 KL) / ds_j = T (p_s,j - p_t,j).
      distill_backward_kernel<T><<<blocks_for(a.N * a.V), kThreads, 0, st>>>(
          s, t, a.ld, a.N, a.V, a.targets, a.ignore_index, inv_t, static_cast<const T*>(a.lse_student),
          static_cast<const T*>(a.lse_teacher), a.scale * a.temperature, static_cast<T*>(a.dstudent));
  });
  check_launch("distill_loss");
}

}  // namespace strand::cuda
