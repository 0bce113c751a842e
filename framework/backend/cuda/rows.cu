// CUDA row kernels over a contiguous [rows, n] buffer: sum and max (with its first index) and
// the max backward, softmax / log-softmax and their backward, LayerNorm / RMSNorm forward and
// backward. One block per row with block-wide reductions; arithmetic follows
// framework/backend/cpu/{reduce,softmax,norm}.cpp (the type of each sum, where values are
// rounded), only the order of the additions inside a row differs.
#include "framework/backend/cuda/common.cuh"

namespace strand::cuda {
namespace {

// ---- reductions ----

template <class T>
__global__ void sum_rows_kernel(int64_t rows, int64_t n, const T* x, T* out, double scale) {
  __shared__ T smem[32];
  STRAND_ROW_LOOP(r, rows) {
    const T* row = x + r * n;
    T acc = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += row[j];
    acc = block_sum(acc, smem);
    if (threadIdx.x == 0) out[r] = scale != 1.0 ? static_cast<T>(acc * scale) : acc;
  }
}

// Whether (v, i) comes before (best, at) under the CPU's rule: the first NaN, else the largest
// value, ties to the smaller index.
template <class T>
__device__ bool better(T v, int64_t i, T best, int64_t at) {
  const bool vn = v != v, bn = best != best;
  if (vn || bn) return vn && (!bn || i < at);
  if (v != best) return v > best;
  return i < at;
}

template <class T>
__global__ void max_rows_kernel(int64_t rows, int64_t n, const T* x, T* out, int32_t* arg) {
  __shared__ T sval[kThreads];
  __shared__ int64_t sidx[kThreads];
  STRAND_ROW_LOOP(r, rows) {
    const T* row = x + r * n;
    T best = row[0];
    int64_t at = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      if (better(row[j], j, best, at)) {
        best = row[j];
        at = j;
      }
    __syncthreads();  // the previous row's readers are done with sval/sidx
    sval[threadIdx.x] = best;
    sidx[threadIdx.x] = at;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
      if (threadIdx.x < half && better(sval[threadIdx.x + half], sidx[threadIdx.x + half], sval[threadIdx.x],
                                       sidx[threadIdx.x])) {
        sval[threadIdx.x] = sval[threadIdx.x + half];
        sidx[threadIdx.x] = sidx[threadIdx.x + half];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      out[r] = sval[0];
      arg[r] = static_cast<int32_t>(sidx[0]);
    }
  }
}

template <class T>
__global__ void max_backward_kernel(int64_t rows, int64_t n, const T* x, T* out, const int32_t* arg) {
  STRAND_GRID_LOOP(r, rows) out[r * n + arg[r]] = x[r];
}

// ---- softmax ----

template <class T>
__global__ void softmax_kernel(int64_t rows, int64_t n, const T* x, T* y, bool log) {
  __shared__ T smem[32];
  STRAND_ROW_LOOP(r, rows) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T m = -infinity<T>();
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = xr[j] > m ? xr[j] : m;
    m = block_max(m, smem);
    // A fully masked row (-inf): shift by 0, giving 0/0 = NaN as the CPU and PyTorch do.
    if (m == -infinity<T>()) m = 0;
    T total = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) total += d_exp(xr[j] - m);
    total = block_sum(total, smem);
    // Each element is read and written by one thread, after every read of the sums above: x
    // and y may be the same buffer.
    if (log) {
      const T shift = m + d_log(total);
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = xr[j] - shift;
    } else {
      const T inv = T(1) / total;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = d_exp(xr[j] - m) * inv;
    }
  }
}

template <class T>
__global__ void softmax_backward_kernel(int64_t rows, int64_t n, const T* y, const T* g, T* dx, bool log) {
  __shared__ T smem[32];
  STRAND_ROW_LOOP(r, rows) {
    const T* yr = y + r * n;
    const T* gr = g + r * n;
    T* dr = dx + r * n;
    T dot = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) dot += log ? gr[j] : gr[j] * yr[j];
    dot = block_sum(dot, smem);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      dr[j] = log ? gr[j] - d_exp(yr[j]) * dot : yr[j] * (gr[j] - dot);
  }
}

// ---- norms (statistics in double, as on the CPU) ----

template <class T>
__global__ void norm_forward_kernel(int64_t rows, int64_t n, const T* x, const T* w, const T* b, double eps, T* y,
                                    T* mean, T* rstd, bool centred) {
  __shared__ double smem[32];
  STRAND_ROW_LOOP(r, rows) {
    const T* xr = x + r * n;
    double m = 0;
    if (centred) {
      double s = 0;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += static_cast<double>(xr[j]);
      m = block_sum(s, smem) / static_cast<double>(n);
    }
    // Squared deviations from the mean (a second pass: no cancellation), or squares for RMSNorm.
    double ss = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const double d = static_cast<double>(xr[j]) - m;
      ss += d * d;
    }
    ss = block_sum(ss, smem);
    const double rs = 1.0 / sqrt(ss / static_cast<double>(n) + eps);
    if (threadIdx.x == 0) {
      if (centred) mean[r] = static_cast<T>(m);
      rstd[r] = static_cast<T>(rs);
    }
    const T shift = static_cast<T>(m), scale = static_cast<T>(rs);
    T* yr = y + r * n;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      T v = (xr[j] - shift) * scale;
      if (w) v *= w[j];
      if (b) v += b[j];
      yr[j] = v;
    }
  }
}

// dx per row; the row sums of dxhat and dxhat * xhat in double.
template <class T>
__global__ void norm_backward_dx_kernel(int64_t rows, int64_t n, const T* x, const T* g, const T* w, const T* mean,
                                        const T* rstd, T* dx) {
  __shared__ double smem[32];
  STRAND_ROW_LOOP(r, rows) {
    const T* xr = x + r * n;
    const T* gr = g + r * n;
    const T mu = mean ? mean[r] : T(0), rs = rstd[r];
    double s1 = 0, s2 = 0;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const T xhat = mean ? (xr[j] - mu) * rs : xr[j] * rs;
      const T dxhat = w ? gr[j] * w[j] : gr[j];
      s1 += static_cast<double>(dxhat);
      s2 += static_cast<double>(dxhat * xhat);
    }
    s1 = block_sum(s1, smem);
    s2 = block_sum(s2, smem);
    const T a = mean ? static_cast<T>(s1 / static_cast<double>(n)) : T(0);
    const T bb = static_cast<T>(s2 / static_cast<double>(n));
    T* dr = dx + r * n;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const T xhat = mean ? (xr[j] - mu) * rs : xr[j] * rs;
      const T dxhat = w ? gr[j] * w[j] : gr[j];
      dr[j] = rs * (dxhat - a - xhat * bb);
    }
  }
}

// Partial dweight / dbias of row block blockIdx.y, one thread per column: pw[blk * n + j] and
// pb[blk * n + j], each summed over the block's rows in order.
template <class T>
__global__ void norm_backward_partial_kernel(int64_t rows, int64_t n, int64_t blocks, const T* x, const T* g,
                                             const T* mean, const T* rstd, double* pw, double* pb) {
  const int64_t blk = blockIdx.y;
  const int64_t r0 = blk * rows / blocks, r1 = (blk + 1) * rows / blocks;
  STRAND_GRID_LOOP(j, n) {
    double sw = 0, sb = 0;
    for (int64_t r = r0; r < r1; ++r) {
      const T gv = g[r * n + j];
      const T xv = x[r * n + j];
      if (pw) sw += static_cast<double>(gv) * static_cast<double>((mean ? xv - mean[r] : xv) * rstd[r]);
      if (pb) sb += static_cast<double>(gv);
    }
    if (pw) pw[blk * n + j] = sw;
    if (pb) pb[blk * n + j] = sb;
  }
}

// out[j] = sum over blocks, in block order, of partial[blk * n + j].
template <class T>
__global__ void sum_blocks_kernel(int64_t n, int64_t blocks, const double* partial, T* out) {
  STRAND_GRID_LOOP(j, n) {
    double s = 0;
    for (int64_t blk = 0; blk < blocks; ++blk) s += partial[blk * n + j];
    out[j] = static_cast<T>(s);
  }
}

}  // namespace

void reduce_rows(int device, Dt dt, RowReduce op, int64_t rows, int64_t n, const void* x, void* out, int32_t* arg,
                 double scale) {
  if (rows <= 0) return;
  set_device(device);
  cudaStream_t st = stream(device);
  by_float("reduce_rows", dt, [&](auto zero) {
    using T = decltype(zero);
    const T* xs = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    switch (op) {
      case RowReduce::Sum: sum_rows_kernel<T><<<row_blocks(rows), kThreads, 0, st>>>(rows, n, xs, o, scale); break;
      case RowReduce::Max:
        if (n > 0) max_rows_kernel<T><<<row_blocks(rows), kThreads, 0, st>>>(rows, n, xs, o, arg);
        break;
      case RowReduce::MaxBackward:
        max_backward_kernel<T><<<blocks_for(rows), kThreads, 0, st>>>(rows, n, xs, o, arg);
        break;
    }
  });
  check_launch("reduce_rows");
}

void softmax_rows(int device, Dt dt, bool backward, bool log, int64_t rows, int64_t n, const void* x, const void* g,
                  void* out) {
  if (rows <= 0 || n <= 0) return;
  set_device(device);
  cudaStream_t st = stream(device);
  by_float("softmax_rows", dt, [&](auto zero) {
    using T = decltype(zero);
    if (backward)
      softmax_backward_kernel<T><<<row_blocks(rows), kThreads, 0, st>>>(
          rows, n, static_cast<const T*>(x), static_cast<const T*>(g), static_cast<T*>(out), log);
    else
      softmax_kernel<T><<<row_blocks(rows), kThreads, 0, st>>>(rows, n, static_cast<const T*>(x),
                                                               static_cast<T*>(out), log);
  });
  check_launch("softmax_rows");
}

void norm_rows(const NormArgs& a) {
  if (a.rows <= 0 || a.n <= 0) return;
  set_device(a.device);
  cudaStream_t st = stream(a.device);
  by_float("norm_rows", a.dt, [&](auto zero) {
    using T = decltype(zero);
    const T* x = static_cast<const T*>(a.x);
    const T* w = static_cast<const T*>(a.weight);
    if (a.op != 2) {
      const bool centred = a.op == 0;
      norm_forward_kernel<T><<<row_blocks(a.rows), kThreads, 0, st>>>(
          a.rows, a.n, x, w, centred ? static_cast<const T*>(a.bias) : nullptr, a.eps, static_cast<T*>(a.y),
          static_cast<T*>(a.mean), static_cast<T*>(a.rstd), centred);
      check_launch("norm_rows forward");
      return;
    }
    const T* g = static_cast<const T*>(a.g);
    const T* mean = static_cast<const T*>(a.mean);
    const T* rstd = static_cast<const T*>(a.rstd);
    if (a.dx) {
      norm_backward_dx_kernel<T><<<row_blocks(a.rows), kThreads, 0, st>>>(a.rows, a.n, x, g, w, mean, rstd,
                                                                          static_cast<T*>(a.dx));
      check_launch("norm_rows backward dx");
    }
    if (a.dweight || a.dbias) {
      const int64_t blocks = std::min(a.rows, kNormRowBlocks);
      double* pw = a.dweight ? a.partial : nullptr;
      double* pb = a.dbias ? a.partial + (a.dweight ? blocks * a.n : 0) : nullptr;
      const dim3 grid(static_cast<unsigned>(std::min<int64_t>((a.n + kThreads - 1) / kThreads, kMaxBlocks)),
                      static_cast<unsigned>(blocks));
      norm_backward_partial_kernel<T><<<grid, kThreads, 0, st>>>(a.rows, a.n, blocks, x, g, mean, rstd, pw, pb);
      check_launch("norm_rows backward partial sums");
      if (pw) sum_blocks_kernel<T><<<blocks_for(a.n), kThreads, 0, st>>>(a.n, blocks, pw, static_cast<T*>(a.dweight));
      if (pb) sum_blocks_kernel<T><<<blocks_for(a.n), kThreads, 0, st>>>(a.n, blocks, pb, static_cast<T*>(a.dbias));
      check_launch("norm_rows backward parameter sums");
    }
  });
}

}  // namespace strand::cuda
