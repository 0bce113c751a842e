// CUDA attention, forward and backward: plain tiled kernels, one warp per row, tiles in shared
// memory, softmax in the accumulation type (float32 for float32 and bf16 inputs, float64 for float64).
//
// Note [CUDA attention layout]
// Forward and dQ: a block holds kRowsPerBlock query rows of one (batch, query head), one warp per
// row; keys stream through shared memory kTile = 32 at a time, lane j scoring key j of the tile.
// The forward keeps the running max m, the sum l and o's accumulator (online softmax); the
// backward recomputes P = exp(S - lse) from the saved lse. dK and dV: a block holds kRowsPerBlock
// key rows of one (batch, kv head), one warp per key; queries of every head of its group stream
// through shared memory, lane i taking query i of the tile. Every output row is written by exactly
// one warp, so there are no atomics and every sum runs in a fixed order (bitwise reproducible).
// Each lane holds head_dim / 32 accumulators (head_dim <= kAttentionMaxHeadDim). Rows in shared
// memory are padded to head_dim + 1 so that 32 lanes reading 32 different rows hit 32 banks.
//
// Backward per (query i, key j), as in cpu/attention_backward.cpp:
//   p = exp(s - lse_i), dp = dO_i . v_j, ds = p (dp - Delta_i), Delta_i = dO_i . o_i - dlse_i,
//   dv_j += p dO_i, dk_j += ds (scale q_i), dq_i += scale ds k_j.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "framework/backend/cuda/attention_api.h"
#include "framework/backend/cuda/runtime_api.h"
#include "framework/core/error.h"

namespace strand::cuda {
namespace {

constexpr int kTile = 32;         // keys (forward, dQ) or queries (dK, dV) per shared-memory tile
constexpr int kRowsPerBlock = 8;  // warps per block, one output row each
constexpr int kThreads = kRowsPerBlock * 32;
constexpr int kPer = static_cast<int>(kAttentionMaxHeadDim / 32);  // accumulators per lane
constexpr unsigned kFull = 0xffffffffu;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw DeviceError(detail::concat("cuda attention: ", what, ": ", cudaGetErrorString(e)));
}

__device__ inline float to_acc(float x) { return x; }
__device__ inline double to_acc(double x) { return x; }
__device__ inline float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline float exp_of(float x) { return expf(x); }
__device__ inline double exp_of(double x) { return exp(x); }
__device__ inline float log_of(float x) { return logf(x); }
__device__ inline double log_of(double x) { return log(x); }
template <class Acc>
__device__ inline Acc neg_inf() {
  return -static_cast<Acc>(INFINITY);
}

__device__ inline int64_t lmin(int64_t x, int64_t y) { return x < y ? x : y; }
__device__ inline int64_t lmax(int64_t x, int64_t y) { return x > y ? x : y; }

template <class Acc>
__device__ inline Acc warp_sum(Acc v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
template <class Acc>
__device__ inline Acc warp_max(Acc v) {
  for (int o = 16; o > 0; o /= 2) {
    const Acc w = __shfl_xor_sync(kFull, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// The mask of Note [CUDA attention layout]'s caller: local query row i, local key row j.
__device__ inline bool attends(const AttentionArgs& a, int64_t i, int64_t j) {
  const int64_t q = a.q_offset + i, k = a.k_offset + j;
  if (a.causal && k > q) return false;
  if (a.window && (q - k > a.window_left || k - q > a.window_right)) return false;
  return true;
}

// Local key rows [begin, end) outside which no query of local rows [i0, i1) attends.
__device__ inline void key_range(const AttentionArgs& a, int64_t i0, int64_t i1, int64_t& begin, int64_t& end) {
  begin = 0;
  end = a.k_len;
  const int64_t q_lo = a.q_offset + i0, q_hi = a.q_offset + i1 - 1;
  if (a.causal) end = lmin(end, q_hi - a.k_offset + 1);
  if (a.window) {
    end = lmin(end, q_hi + a.window_right - a.k_offset + 1);
    begin = lmax(begin, q_lo - a.window_left - a.k_offset);
  }
  if (end < begin) end = begin;
}

// Local query rows [begin, end) outside which no query attends a key of local rows [j0, j1).
__device__ inline void query_range(const AttentionArgs& a, int64_t j0, int64_t j1, int64_t& begin, int64_t& end) {
  begin = 0;
  end = a.q_len;
  const int64_t k_lo = a.k_offset + j0, k_hi = a.k_offset + j1 - 1;
  if (a.causal) begin = lmax(begin, k_lo - a.q_offset);
  if (a.window) {
    begin = lmax(begin, k_lo - a.window_right - a.q_offset);
    end = lmin(end, k_hi + a.window_left - a.q_offset + 1);
  }
  if (end < begin) end = begin;
}

// Copies rows [r0, r0 + n) of a [rows, D] matrix (row stride `stride`) into shared rows of
// width ld, as Acc, times `mul`; the whole block takes part.
template <class In, class Acc>
__device__ inline void load_rows(Acc* dst, int64_t ld, const In* src, int64_t stride, int64_t r0, int64_t n,
                                 int64_t d, Acc mul) {
  for (int64_t e = threadIdx.x; e < n * d; e += blockDim.x) {
    const int64_t r = e / d, x = e % d;
    dst[r * ld + x] = to_acc(src[(r0 + r) * stride + x]) * mul;
  }
}

template <class Acc>
__device__ inline Acc dot_rows(const Acc* a, const Acc* b, int64_t d) {
  Acc s = 0;
  for (int64_t x = 0; x < d; ++x) s += a[x] * b[x];
  return s;
}

template <class In, class Acc>
__global__ void __launch_bounds__(kThreads) forward_kernel(AttentionArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t d = a.head_dim, ld = d + 1;
  Acc* ks = reinterpret_cast<Acc*>(smem);  // [kTile][ld]
  Acc* vs = ks + kTile * ld;                // [kTile][ld]
  Acc* qs = vs + kTile * ld;                // [kRowsPerBlock][ld], q times scale

  const int64_t row_blocks = (a.q_len + kRowsPerBlock - 1) / kRowsPerBlock;
  const int64_t bh = blockIdx.x / row_blocks, i0 = (blockIdx.x % row_blocks) * kRowsPerBlock;
  const int64_t b = bh / a.q_heads, h = bh % a.q_heads, hk = h / (a.q_heads / a.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t rows = lmin(kRowsPerBlock, a.q_len - i0), i = i0 + warp;
  const bool active = warp < rows;

  const In* q = static_cast<const In*>(a.q) + b * a.q_batch_stride + h * a.q_head_stride;
  const In* k = static_cast<const In*>(a.k) + b * a.k_batch_stride + hk * a.k_head_stride;
  const In* v = static_cast<const In*>(a.v) + b * a.v_batch_stride + hk * a.v_head_stride;
  load_rows<In, Acc>(qs, ld, q, a.q_row_stride, i0, rows, d, static_cast<Acc>(a.scale));
  const Acc* qi = qs + warp * ld;

  Acc m = neg_inf<Acc>(), l = 0, acc[kPer];
  for (int t = 0; t < kPer; ++t) acc[t] = 0;
  int64_t j_begin, j_end;
  key_range(a, i0, i0 + rows, j_begin, j_end);
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile) {
    const int64_t nk = lmin(kTile, j_end - j0);
    __syncthreads();  // the previous tile is consumed (and, the first time, q is loaded)
    load_rows<In, Acc>(ks, ld, k, a.k_row_stride, j0, nk, d, Acc(1));
    load_rows<In, Acc>(vs, ld, v, a.v_row_stride, j0, nk, d, Acc(1));
    __syncthreads();
    if (!active) continue;
    Acc s = neg_inf<Acc>();
    if (lane < nk && attends(a, i, j0 + lane)) s = dot_rows(qi, ks + lane * ld, d);
    const Acc tile_max = warp_max(s), m_new = tile_max > m ? tile_max : m;
    if (m_new == neg_inf<Acc>()) continue;  // nothing attended yet (the same in every lane)
    const Acc corr = exp_of(m - m_new);     // 0 while m is -inf
    const Acc p = s == neg_inf<Acc>() ? Acc(0) : exp_of(s - m_new);
    l = l * corr + warp_sum(p);
    for (int t = 0; t < kPer; ++t) acc[t] *= corr;
    for (int jj = 0; jj < nk; ++jj) {
      const Acc pj = __shfl_sync(kFull, p, jj);
      for (int t = 0; t < kPer; ++t) {
        const int64_t x = lane + 32 * t;
        if (x < d) acc[t] += pj * vs[jj * ld + x];
      }
    }
    m = m_new;
  }
  if (!active) return;
  // A row with no key to attend: o = 0, lse = -inf.
  Acc* o = static_cast<Acc*>(a.o) + b * a.o_batch_stride + h * a.o_head_stride + i * a.o_row_stride;
  const Acc inv = l > 0 ? Acc(1) / l : Acc(0);
  for (int t = 0; t < kPer; ++t) {
    const int64_t x = lane + 32 * t;
    if (x < d) o[x] = acc[t] * inv;
  }
  if (lane == 0) {
    Acc* lse = static_cast<Acc*>(a.lse) + b * a.lse_batch_stride + h * a.lse_head_stride;
    lse[i] = l > 0 ? m + log_of(l) : neg_inf<Acc>();
  }
}

// Delta = dO . o - dlse per query row, into a.delta laid out [batch, q_heads, q_len].
template <class In, class Acc>
__global__ void delta_kernel(AttentionArgs a) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= a.batch * a.q_heads * a.q_len) return;
  const int64_t b = r / (a.q_heads * a.q_len), h = (r / a.q_len) % a.q_heads, i = r % a.q_len;
  const In* g = static_cast<const In*>(a.d_o) + b * a.do_batch_stride + h * a.do_head_stride + i * a.do_row_stride;
  const Acc* o = static_cast<const Acc*>(a.o) + b * a.o_batch_stride + h * a.o_head_stride + i * a.o_row_stride;
  Acc s = 0;
  for (int64_t x = 0; x < a.head_dim; ++x) s += to_acc(g[x]) * o[x];
  if (a.d_lse) s -= static_cast<const Acc*>(a.d_lse)[b * a.lse_batch_stride + h * a.lse_head_stride + i];
  static_cast<Acc*>(a.delta)[r] = s;
}

// The saved lse made safe to subtract: +inf for a row that attended nothing, so exp(s - lse) = 0.
template <class Acc>
__device__ inline Acc usable_lse(Acc lse) {
  return lse == neg_inf<Acc>() ? -lse : lse;
}

template <class In, class Acc>
__global__ void __launch_bounds__(kThreads) dq_kernel(AttentionArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t d = a.head_dim, ld = d + 1;
  Acc* ks = reinterpret_cast<Acc*>(smem);  // [kTile][ld]
  Acc* vs = ks + kTile * ld;                // [kTile][ld]
  Acc* qs = vs + kTile * ld;                // [kRowsPerBlock][ld], q times scale
  Acc* gs = qs + kRowsPerBlock * ld;        // [kRowsPerBlock][ld], dO

  const int64_t row_blocks = (a.q_len + kRowsPerBlock - 1) / kRowsPerBlock;
  const int64_t bh = blockIdx.x / row_blocks, i0 = (blockIdx.x % row_blocks) * kRowsPerBlock;
  const int64_t b = bh / a.q_heads, h = bh % a.q_heads, hk = h / (a.q_heads / a.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t rows = lmin(kRowsPerBlock, a.q_len - i0), i = i0 + warp;
  const bool active = warp < rows;

  const In* q = static_cast<const In*>(a.q) + b * a.q_batch_stride + h * a.q_head_stride;
  const In* g = static_cast<const In*>(a.d_o) + b * a.do_batch_stride + h * a.do_head_stride;
  const In* k = static_cast<const In*>(a.k) + b * a.k_batch_stride + hk * a.k_head_stride;
  const In* v = static_cast<const In*>(a.v) + b * a.v_batch_stride + hk * a.v_head_stride;
  load_rows<In, Acc>(qs, ld, q, a.q_row_stride, i0, rows, d, static_cast<Acc>(a.scale));
  load_rows<In, Acc>(gs, ld, g, a.do_row_stride, i0, rows, d, Acc(1));
  const Acc* qi = qs + warp * ld;
  const Acc* gi = gs + warp * ld;
  Acc lse_i = 0, delta_i = 0;
  if (active) {
    lse_i = usable_lse(static_cast<const Acc*>(a.lse)[b * a.lse_batch_stride + h * a.lse_head_stride + i]);
    delta_i = static_cast<const Acc*>(a.delta)[bh * a.q_len + i];
  }

  Acc acc[kPer];
  for (int t = 0; t < kPer; ++t) acc[t] = 0;
  int64_t j_begin, j_end;
  key_range(a, i0, i0 + rows, j_begin, j_end);
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kTile) {
    const int64_t nk = lmin(kTile, j_end - j0);
    __syncthreads();
    load_rows<In, Acc>(ks, ld, k, a.k_row_stride, j0, nk, d, Acc(1));
    load_rows<In, Acc>(vs, ld, v, a.v_row_stride, j0, nk, d, Acc(1));
    __syncthreads();
    if (!active) continue;
    Acc ds = 0;
    if (lane < nk && attends(a, i, j0 + lane)) {
      const Acc p = exp_of(dot_rows(qi, ks + lane * ld, d) - lse_i);
      ds = p * (dot_rows(gi, vs + lane * ld, d) - delta_i);
    }
    for (int jj = 0; jj < nk; ++jj) {
      const Acc dsj = __shfl_sync(kFull, ds, jj);
      for (int t = 0; t < kPer; ++t) {
        const int64_t x = lane + 32 * t;
        if (x < d) acc[t] += dsj * ks[jj * ld + x];
      }
    }
  }
  if (!active) return;
  Acc* dq = static_cast<Acc*>(a.dq) + b * a.dq_batch_stride + h * a.dq_head_stride + i * a.dq_row_stride;
  const Acc scale = static_cast<Acc>(a.scale);
  for (int t = 0; t < kPer; ++t) {
    const int64_t x = lane + 32 * t;
    if (x < d) dq[x] = acc[t] * scale;
  }
}

template <class In, class Acc>
__global__ void __launch_bounds__(kThreads) dkv_kernel(AttentionArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t d = a.head_dim, ld = d + 1;
  Acc* qs = reinterpret_cast<Acc*>(smem);  // [kTile][ld], q times scale
  Acc* gs = qs + kTile * ld;                // [kTile][ld], dO
  Acc* kr = gs + kTile * ld;                // [kRowsPerBlock][ld]
  Acc* vr = kr + kRowsPerBlock * ld;        // [kRowsPerBlock][ld]
  Acc* lse_s = vr + kRowsPerBlock * ld;     // [kTile]
  Acc* delta_s = lse_s + kTile;             // [kTile]

  const int64_t row_blocks = (a.k_len + kRowsPerBlock - 1) / kRowsPerBlock;
  const int64_t bhk = blockIdx.x / row_blocks, j0 = (blockIdx.x % row_blocks) * kRowsPerBlock;
  const int64_t b = bhk / a.kv_heads, hk = bhk % a.kv_heads, group = a.q_heads / a.kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t rows = lmin(kRowsPerBlock, a.k_len - j0), j = j0 + warp;
  const bool active = warp < rows;

  const In* k = static_cast<const In*>(a.k) + b * a.k_batch_stride + hk * a.k_head_stride;
  const In* v = static_cast<const In*>(a.v) + b * a.v_batch_stride + hk * a.v_head_stride;
  load_rows<In, Acc>(kr, ld, k, a.k_row_stride, j0, rows, d, Acc(1));
  load_rows<In, Acc>(vr, ld, v, a.v_row_stride, j0, rows, d, Acc(1));
  const Acc* kj = kr + warp * ld;
  const Acc* vj = vr + warp * ld;

  Acc dk[kPer], dv[kPer];
  for (int t = 0; t < kPer; ++t) dk[t] = dv[t] = 0;
  int64_t i_begin, i_end;
  query_range(a, j0, j0 + rows, i_begin, i_end);
  for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
    const int64_t bh = b * a.q_heads + h;
    const In* q = static_cast<const In*>(a.q) + b * a.q_batch_stride + h * a.q_head_stride;
    const In* g = static_cast<const In*>(a.d_o) + b * a.do_batch_stride + h * a.do_head_stride;
    const Acc* lse = static_cast<const Acc*>(a.lse) + b * a.lse_batch_stride + h * a.lse_head_stride;
    const Acc* delta = static_cast<const Acc*>(a.delta) + bh * a.q_len;
    for (int64_t q0 = i_begin; q0 < i_end; q0 += kTile) {
      const int64_t nq = lmin(kTile, i_end - q0);
      __syncthreads();  // the previous tile is consumed (and, the first time, k and v are loaded)
      load_rows<In, Acc>(qs, ld, q, a.q_row_stride, q0, nq, d, static_cast<Acc>(a.scale));
      load_rows<In, Acc>(gs, ld, g, a.do_row_stride, q0, nq, d, Acc(1));
      if (threadIdx.x < nq) {
        lse_s[threadIdx.x] = usable_lse(lse[q0 + threadIdx.x]);
        delta_s[threadIdx.x] = delta[q0 + threadIdx.x];
      }
      __syncthreads();
      if (!active) continue;
      Acc p = 0, ds = 0;
      if (lane < nq && attends(a, q0 + lane, j)) {
        p = exp_of(dot_rows(qs + lane * ld, kj, d) - lse_s[lane]);
        ds = p * (dot_rows(gs + lane * ld, vj, d) - delta_s[lane]);
      }
      for (int ii = 0; ii < nq; ++ii) {
        const Acc pi = __shfl_sync(kFull, p, ii);
        const Acc dsi = __shfl_sync(kFull, ds, ii);
        for (int t = 0; t < kPer; ++t) {
          const int64_t x = lane + 32 * t;
          if (x < d) {
            dv[t] += pi * gs[ii * ld + x];
            dk[t] += dsi * qs[ii * ld + x];  // qs holds scale q: dk = scale sum ds q
          }
        }
      }
    }
  }
  if (!active) return;
  Acc* dko = static_cast<Acc*>(a.dk) + b * a.dk_batch_stride + hk * a.dk_head_stride + j * a.dk_row_stride;
  Acc* dvo = static_cast<Acc*>(a.dv) + b * a.dv_batch_stride + hk * a.dv_head_stride + j * a.dv_row_stride;
  for (int t = 0; t < kPer; ++t) {
    const int64_t x = lane + 32 * t;
    if (x < d) {
      dko[x] = dk[t];
      dvo[x] = dv[t];
    }
  }
}

// Launches kernel on `blocks` blocks of kThreads with `smem_bytes` of dynamic shared memory
// (raising the kernel's limit above the default 48 KiB where needed) and checks the launch.
template <class Kernel>
void launch_kernel(Kernel kernel, int64_t blocks, size_t smem_bytes, const AttentionArgs& a, const char* what) {
  if (blocks == 0) return;
  if (blocks > 0x7fffffff) throw DeviceError(detail::concat("cuda attention: ", what, ": ", blocks, " blocks"));
  if (smem_bytes > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes)),
          what);
  // Note [One compute stream] (runtime_api.h): on the device's compute stream, like every kernel.
  kernel<<<static_cast<unsigned>(blocks), kThreads, smem_bytes, static_cast<cudaStream_t>(compute_stream(a.device))>>>(a);
  check(cudaGetLastError(), what);
}

int64_t blocks_of(int64_t heads, int64_t rows) { return heads * ((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

template <class In, class Acc>
void forward_typed(const AttentionArgs& a) {
  const int64_t ld = a.head_dim + 1;
  const size_t smem = sizeof(Acc) * static_cast<size_t>((2 * kTile + kRowsPerBlock) * ld);
  launch_kernel(forward_kernel<In, Acc>, blocks_of(a.batch * a.q_heads, a.q_len), smem, a, "attention forward");
}

template <class In, class Acc>
void backward_typed(const AttentionArgs& a) {
  const int64_t ld = a.head_dim + 1, rows = a.batch * a.q_heads * a.q_len;
  if (rows > 0) {
    delta_kernel<In, Acc>
        <<<static_cast<unsigned>((rows + 255) / 256), 256, 0, static_cast<cudaStream_t>(compute_stream(a.device))>>>(a);
    check(cudaGetLastError(), "attention delta");
  }
  const size_t dq_smem = sizeof(Acc) * static_cast<size_t>((2 * kTile + 2 * kRowsPerBlock) * ld);
  launch_kernel(dq_kernel<In, Acc>, blocks_of(a.batch * a.q_heads, a.q_len), dq_smem, a, "attention backward dq");
  const size_t kv_smem = sizeof(Acc) * static_cast<size_t>((2 * kTile + 2 * kRowsPerBlock) * ld + 2 * kTile);
  launch_kernel(dkv_kernel<In, Acc>, blocks_of(a.batch * a.kv_heads, a.k_len), kv_smem, a,
                "attention backward dk dv");
}

}  // namespace

void attention_forward(const AttentionArgs& a) {
  check(cudaSetDevice(a.device), "cudaSetDevice");
  switch (a.type) {
    case AttentionType::F32: forward_typed<float, float>(a); break;
    case AttentionType::F64: forward_typed<double, double>(a); break;
    case AttentionType::BF16: forward_typed<__nv_bfloat16, float>(a); break;
  }
}

void attention_backward(const AttentionArgs& a) {
  check(cudaSetDevice(a.device), "cudaSetDevice");
  switch (a.type) {
    case AttentionType::F32: backward_typed<float, float>(a); break;
    case AttentionType::F64: backward_typed<double, double>(a); break;
    case AttentionType::BF16: backward_typed<__nv_bfloat16, float>(a); break;
  }
}

}  // namespace strand::cuda
