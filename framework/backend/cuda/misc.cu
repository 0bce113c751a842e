// CUDA kernels of the smaller families: rotary embedding, embedding gather and scatter-add,
// dropout (the CPU's Philox words, framework/core/random.h), the fused AdamW step, the clip's
// sum of squares and scaling, and concat's strided block copy. One thread per element
// throughout; each follows its framework/backend/cpu/*.cpp counterpart operation for operation.
#include "framework/backend/cuda/common.cuh"
#include "framework/core/random.h"

namespace strand::cuda {
namespace {

template <class T>
__global__ void rope_kernel(RopeArgs a, const T* x, T* y) {
  const int64_t half = a.head_dim / 2;
  const int64_t rows = a.batch * a.heads * a.seq;
  STRAND_GRID_LOOP(idx, rows * half) {
    const int64_t r = idx / half, i = idx % half;
    const int64_t n = r % a.seq, bh = r / a.seq, h = bh % a.heads, b = bh / a.heads;
    // Angles and their cos/sin in double, rounded to T, as the CPU's tables are.
    const double pos = static_cast<double>(a.positions[b * a.pos_batch_stride + n * a.pos_row_stride]);
    const double angle = pos * a.inv_freq[i];
    const T c = static_cast<T>(cos(angle));
    const T s = static_cast<T>((a.inverse ? -1.0 : 1.0) * sin(angle));
    const T* xr = x + b * a.x_batch_stride + h * a.x_head_stride + n * a.x_row_stride;
    const T lo = xr[i * a.x_dim_stride], hi = xr[(i + half) * a.x_dim_stride];
    T* yr = y + r * a.head_dim;
    yr[i] = lo * c - hi * s;
    yr[i + half] = hi * c + lo * s;
  }
}

template <class T>
__global__ void gather_kernel(const int32_t* ids, int64_t n, int64_t C, const T* table, T* dst) {
  STRAND_GRID_LOOP(idx, n * C) {
    const int64_t i = idx / C, c = idx % C;
    dst[idx] = table[static_cast<int64_t>(ids[i]) * C + c];
  }
}

// Row v adds its positions in increasing order from zero: the CPU's sum, bit for bit.
template <class T>
__global__ void scatter_add_kernel(const int64_t* start, const int64_t* order, int64_t V, int64_t C, const T* src,
                                   T* dst) {
  STRAND_GRID_LOOP(idx, V * C) {
    const int64_t v = idx / C, c = idx % C;
    T acc = T(0);
    for (int64_t k = start[v]; k < start[v + 1]; ++k) acc += src[order[k] * C + c];
    dst[idx] = acc;
  }
}

template <class T>
__global__ void dropout_kernel(const T* x, T* y, int64_t n, uint64_t threshold, T scale, uint64_t seed,
                               uint64_t philox_stream, uint64_t offset, const uint64_t* row_offsets, int64_t row_len) {
  STRAND_GRID_LOOP(i, n) {
    const uint64_t c = row_offsets ? row_offsets[i / row_len] + static_cast<uint64_t>(i % row_len)
                                   : offset + static_cast<uint64_t>(i);
    uint32_t w[4];
    random::philox4x32_words(seed, philox_stream, c / 4, w);
    y[i] = w[c % 4] >= threshold ? x[i] * scale : T(0);
  }
}

template <class T>
__global__ void adamw_kernel(int64_t n, T decay, T b1, T omb1, T b2, T omb2, T step_size, T inv_sqrt_bc2, T eps,
                             T* param, const T* grad, T* m, T* v) {
  STRAND_GRID_LOOP(i, n) {
    const T g = grad[i];
    const T mi = b1 * m[i] + omb1 * g;
    const T vi = b2 * v[i] + omb2 * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - step_size * mi / (d_sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

template <class T>
__global__ void sum_squares_kernel(int64_t n, const T* x, double* partial) {
  __shared__ double smem[32];
  const int64_t blocks = (n + kClipBlock - 1) / kClipBlock;
  STRAND_ROW_LOOP(b, blocks) {
    const int64_t lo = b * kClipBlock, hi = lo + kClipBlock < n ? lo + kClipBlock : n;
    double acc = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      const double xi = static_cast<double>(x[i]);
      acc += xi * xi;
    }
    acc = block_sum(acc, smem);
    if (threadIdx.x == 0) partial[b] = acc;
  }
}

template <class T>
__global__ void scale_kernel(int64_t n, T* x, T s) {
  STRAND_GRID_LOOP(i, n) x[i] *= s;
}

__global__ void copy_bytes_kernel(char* dst, int64_t dst_stride, const char* src, int64_t src_stride, int64_t rows,
                                  int64_t row_bytes) {
  STRAND_GRID_LOOP(i, rows * row_bytes) {
    const int64_t r = i / row_bytes, b = i % row_bytes;
    dst[r * dst_stride + b] = src[r * src_stride + b];
  }
}

}  // namespace

void rope(const RopeArgs& a) {
  const int64_t half = a.head_dim / 2;
  if (a.batch == 0 || a.heads == 0 || a.seq == 0 || half == 0) return;
  set_device(a.device);
  by_float("rope", a.dt, [&](auto zero) {
    using T = decltype(zero);
    rope_kernel<T><<<blocks_for(a.batch * a.heads * a.seq * half), kThreads, 0, stream(a.device)>>>(
        a, static_cast<const T*>(a.x), static_cast<T*>(a.y));
  });
  check_launch("rope");
}

void embedding_gather(int device, Dt dt, const int32_t* ids, int64_t n, int64_t C, const void* table, void* dst) {
  if (n <= 0 || C <= 0) return;
  set_device(device);
  by_float("embedding", dt, [&](auto zero) {
    using T = decltype(zero);
    gather_kernel<T><<<blocks_for(n * C), kThreads, 0, stream(device)>>>(ids, n, C, static_cast<const T*>(table),
                                                                          static_cast<T*>(dst));
  });
  check_launch("embedding gather");
}

void embedding_scatter_add(int device, Dt dt, const int64_t* start, const int64_t* order, int64_t V, int64_t C,
                           const void* src, void* dst) {
  if (V <= 0 || C <= 0) return;
  set_device(device);
  by_float("embedding", dt, [&](auto zero) {
    using T = decltype(zero);
    scatter_add_kernel<T><<<blocks_for(V * C), kThreads, 0, stream(device)>>>(
        start, order, V, C, static_cast<const T*>(src), static_cast<T*>(dst));
  });
  check_launch("embedding scatter-add");
}

void dropout(int device, Dt dt, const void* x, void* y, int64_t n, uint64_t threshold, double keep_scale,
             uint64_t seed, uint64_t philox_stream, uint64_t offset, const uint64_t* row_offsets, int64_t row_len) {
  if (n <= 0) return;
  set_device(device);
  by_float("dropout", dt, [&](auto zero) {
    using T = decltype(zero);
    dropout_kernel<T><<<blocks_for(n), kThreads, 0, stream(device)>>>(
        static_cast<const T*>(x), static_cast<T*>(y), n, threshold, static_cast<T>(keep_scale), seed, philox_stream,
        offset, row_offsets, row_len);
  });
  check_launch("dropout");
}

void adamw(const AdamWArgs& a) {
  if (a.n <= 0) return;
  set_device(a.device);
  by_float("adamw_update", a.dt, [&](auto zero) {
    using T = decltype(zero);
    adamw_kernel<T><<<blocks_for(a.n), kThreads, 0, stream(a.device)>>>(
        a.n, static_cast<T>(a.decay), static_cast<T>(a.beta1), static_cast<T>(a.one_minus_beta1),
        static_cast<T>(a.beta2), static_cast<T>(a.one_minus_beta2), static_cast<T>(a.step_size),
        static_cast<T>(a.inv_sqrt_bc2), static_cast<T>(a.eps), static_cast<T*>(a.param),
        static_cast<const T*>(a.grad), static_cast<T*>(a.m), static_cast<T*>(a.v));
  });
  check_launch("adamw_update");
}

void sum_squares_blocks(int device, Dt dt, int64_t n, const void* x, double* partial) {
  if (n <= 0) return;
  set_device(device);
  by_float("clip_grad", dt, [&](auto zero) {
    using T = decltype(zero);
    sum_squares_kernel<T><<<row_blocks((n + kClipBlock - 1) / kClipBlock), kThreads, 0, stream(device)>>>(
        n, static_cast<const T*>(x), partial);
  });
  check_launch("clip_grad sum of squares");
}

void scale_inplace(int device, Dt dt, int64_t n, void* x, double scale) {
  if (n <= 0) return;
  set_device(device);
  by_float("clip_grad", dt, [&](auto zero) {
    using T = decltype(zero);
    scale_kernel<T><<<blocks_for(n), kThreads, 0, stream(device)>>>(n, static_cast<T*>(x), static_cast<T>(scale));
  });
  check_launch("clip_grad scale");
}

void copy_blocks(int device, void* dst, int64_t dst_stride, const void* src, int64_t src_stride, int64_t rows,
                 int64_t row_bytes) {
  if (rows <= 0 || row_bytes <= 0) return;
  set_device(device);
  cudaStream_t st = stream(device);
  const auto width = static_cast<size_t>(row_bytes);
  if (rows == 1) {
    const cudaError_t e = cudaMemcpyAsync(dst, src, width, cudaMemcpyDeviceToDevice, st);
    if (e != cudaSuccess) throw DeviceError(detail::concat("copy_blocks: cudaMemcpyAsync: ", cudaGetErrorString(e)));
    return;
  }
  // cudaMemcpy2D takes pitches of at least the row length and below 2^31 (cudaDevAttrMaxPitch).
  constexpr int64_t kMaxPitch = (int64_t{1} << 31) - 1;
  if (dst_stride >= row_bytes && src_stride >= row_bytes && dst_stride <= kMaxPitch && src_stride <= kMaxPitch) {
    const cudaError_t e = cudaMemcpy2DAsync(dst, static_cast<size_t>(dst_stride), src, static_cast<size_t>(src_stride),
                                            width, static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, st);
    if (e != cudaSuccess) throw DeviceError(detail::concat("copy_blocks: cudaMemcpy2DAsync: ", cudaGetErrorString(e)));
    return;
  }
  // Strides below the row length (rows that overlap in the source) are not a pitched copy.
  copy_bytes_kernel<<<blocks_for(rows * row_bytes), kThreads, 0, st>>>(
      static_cast<char*>(dst), dst_stride, static_cast<const char*>(src), src_stride, rows, row_bytes);
  check_launch("copy_blocks");
}

}  // namespace strand::cuda
