// Tiled attention backward on CPU, hand-written: probabilities are recomputed from q, k and the
// saved log-sum-exp, tile by tile, never as an Nq x Nk matrix.
//
// Note [Backward partitioning]
// A task owns one key block of one (batch, kv head) and walks every query block in reach for every
// query head of its group, so dK and dV of that block are summed inside the task: no two threads
// write the same dK/dV rows. dQ rows receive contributions from every key block; each thread sums
// its share into its own dQ buffer (thread 0 into dq itself), and the buffers are added in thread
// order at the end. Tasks go to threads round-robin (static schedule), so for a fixed thread count
// every sum runs in the same order and the result is bitwise reproducible.
//
// Per tile (scores kept keys x queries, Note [Transposed score tiles] in attention_forward.cpp):
//   S^T = K (scale Q)^T, P^T = exp(S^T - lse), dV += P^T dO, dP^T = V dO^T,
//   dS^T = P^T o (dP^T - Delta), dK += dS^T Q, dQ += (dS^T)^T K; dK and dQ are scaled once at the end.
// Delta = rowsum(dO o O) - dlse: the gradient of lse adds dlse * P to dS.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/backend/attention_mask.h"
#include "framework/backend/cpu/attention_bf16.h"
#include "framework/backend/cpu/attention_kernels.h"
#include "framework/backend/cpu/attention_tile.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {
namespace {

using attention_tile::exp_approx;
using attention_tile::gemm;
using attention_tile::Scratch;

constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockK = 64;
// Below this many multiply-adds (an upper bound, B * Hq * Nq * Nk * D) one thread is faster than a fork.
constexpr int64_t kParallelWork = int64_t{1} << 21;

// Per-head operands prepared once before the tile loop: (scale q)^T and dO^T, both [D, Nq], so that
// S^T and dP^T are plain row-major products; Delta and the lse with -inf rows made harmless.
template <class T>
struct Prepared {
  const T* qt;     // [B, Hq, D, Nq]
  const T* dot;    // [B, Hq, D, Nq]
  const T* delta;  // [B, Hq, Nq]
  const T* lse;    // [B, Hq, Nq], +inf where the row had no key (so exp(s - lse) = 0)
};

template <class T>
void prepare_heads(const AttentionParams& p, T* qt, T* dot, T* delta, T* lse_use) {
  const int64_t nq = p.q_len, d = p.head_dim, heads = p.batch * p.q_heads;
  const T scale = static_cast<T>(p.scale);
  #pragma omp parallel for schedule(static) if (heads > 1 && heads * nq * d > kParallelGrain)
  for (int64_t bh = 0; bh < heads; ++bh) {
    const int64_t b = bh / p.q_heads, h = bh % p.q_heads;
    const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* o = static_cast<const T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
    const T* d_o = static_cast<const T*>(p.d_o) + b * p.do_batch_stride + h * p.do_head_stride;
    const T* lse = static_cast<const T*>(p.lse) + b * p.lse_batch_stride + h * p.lse_head_stride;
    const T* d_lse =
        p.d_lse ? static_cast<const T*>(p.d_lse) + b * p.lse_batch_stride + h * p.lse_head_stride : nullptr;
    T* qt_h = qt + bh * d * nq;
    T* dot_h = dot + bh * d * nq;
    // Transposed 16 rows at a time, so that each write of the [D, Nq] layout fills a cache line.
    constexpr int64_t kRows = 16;
    for (int64_t i0 = 0; i0 < nq; i0 += kRows) {
      const int64_t rows = std::min(kRows, nq - i0);
      for (int64_t x = 0; x < d; ++x)
        for (int64_t r = 0; r < rows; ++r) {
          qt_h[x * nq + i0 + r] = q[(i0 + r) * p.q_row_stride + x] * scale;
          dot_h[x * nq + i0 + r] = d_o[(i0 + r) * p.do_row_stride + x];
        }
    }
    for (int64_t i = 0; i < nq; ++i) {
      const T* oi = o + i * p.o_row_stride;
      const T* gi = d_o + i * p.do_row_stride;
      T dsum = 0;
      #pragma omp simd reduction(+ : dsum)
      for (int64_t x = 0; x < d; ++x) dsum += gi[x] * oi[x];
      delta[bh * nq + i] = dsum - (d_lse ? d_lse[i] : T(0));
      lse_use[bh * nq + i] = lse[i] == -std::numeric_limits<T>::infinity() ? std::numeric_limits<T>::infinity() : lse[i];
    }
  }
}

// Where one thread adds its dQ contributions: dq itself or a contiguous buffer.
template <class T>
struct DqTarget {
  T* base;
  int64_t batch_stride, head_stride, row_stride;
  T* rows(int64_t b, int64_t h, int64_t i) const { return base + b * batch_stride + h * head_stride + i * row_stride; }
};

template <class T>
struct BackwardWork {
  std::vector<T> s, dp, dk, dv;
  BackwardWork(int64_t bq, int64_t bk, int64_t d)
      : s(static_cast<size_t>(bk * bq)), dp(s.size()), dk(static_cast<size_t>(bk * d)), dv(dk.size()) {}
};

// Gradients of the key block [j0, j0 + nk) of (b, kv head hk) over every query head of its group.
template <class T>
void backward_key_block(const AttentionParams& p, const MaskPlan& plan, const Prepared<T>& prep, int64_t b,
                        int64_t hk, int64_t j0, int64_t bq, int64_t bk, const DqTarget<T>& dq, BackwardWork<T>& w) {
  const int64_t d = p.head_dim, nq = p.q_len, nk = std::min(bk, p.k_len - j0);
  const int64_t group = p.q_heads / p.kv_heads;
  const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride + j0 * p.k_row_stride;
  const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride + j0 * p.v_row_stride;
  std::fill(w.dk.begin(), w.dk.end(), T(0));
  std::fill(w.dv.begin(), w.dv.end(), T(0));
  T* s = w.s.data();
  T* dp = w.dp.data();

  const int64_t qo = plan.q_offset(), kg0 = plan.k_offset() + j0;
  int64_t first, last;
  plan.query_reach(b, kg0, kg0 + nk, first, last);
  const int64_t i_begin = std::max<int64_t>(0, first - qo) / bq * bq, i_end = std::min(nq, last - qo);
  for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
    const int64_t bh = b * p.q_heads + h;
    const T* qt = prep.qt + bh * d * nq;
    const T* dot = prep.dot + bh * d * nq;
    const T* delta = prep.delta + bh * nq;
    const T* lse = prep.lse + bh * nq;
    const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
    const T* d_o = static_cast<const T*>(p.d_o) + b * p.do_batch_stride + h * p.do_head_stride;
    for (int64_t i0 = i_begin; i0 < i_end; i0 += bq) {
      const int64_t mq = std::min(bq, nq - i0);
      const TileClass cls = plan.classify(b, qo + i0, qo + i0 + mq, kg0, kg0 + nk);
      if (cls == TileClass::Empty) continue;
      gemm<T>(nk, mq, d, k, p.k_row_stride, 1, qt + i0, nq, s, bq, false);  // S^T
      if (cls == TileClass::Partial) plan.mask_tile(b, qo + i0, mq, kg0, nk, s, bq);
      for (int64_t j = 0; j < nk; ++j) {
        T* row = s + j * bq;
        #pragma omp simd
        for (int64_t i = 0; i < mq; ++i) row[i] = exp_approx(row[i] - lse[i0 + i]);  // P^T
      }
      gemm<T>(nk, d, mq, s, bq, 1, d_o + i0 * p.do_row_stride, p.do_row_stride, w.dv.data(), d, true);
      gemm<T>(nk, mq, d, v, p.v_row_stride, 1, dot + i0, nq, dp, bq, false);  // dP^T
      for (int64_t j = 0; j < nk; ++j) {
        T* row = s + j * bq;
        const T* dpr = dp + j * bq;
        #pragma omp simd
        for (int64_t i = 0; i < mq; ++i) row[i] *= dpr[i] - delta[i0 + i];  // dS^T
      }
      gemm<T>(nk, d, mq, s, bq, 1, q + i0 * p.q_row_stride, p.q_row_stride, w.dk.data(), d, true);
      gemm<T>(mq, d, nk, s, 1, bq, k, p.k_row_stride, dq.rows(b, h, i0), dq.row_stride, true);
    }
  }
  store_key_block_grads<T>(p, b, hk, j0, nk, static_cast<T>(p.scale), w.dk.data(), w.dv.data());
}

}  // namespace

template <class T>
void attention_backward(const AttentionParams& p) {
  const MaskPlan plan(*p.mask, p.batch, p.q_len, p.k_len);
  const int64_t bq = p.block_q > 0 ? p.block_q : kBlockQ, bk = p.block_k > 0 ? p.block_k : kBlockK;
  const int64_t d = p.head_dim, nq = p.q_len, heads = p.batch * p.q_heads;
  const int64_t q_elems = heads * nq * d;

  Scratch<T> qt(q_elems), dot(q_elems), delta(heads * nq), lse_use(heads * nq);
  prepare_heads(p, qt.data(), dot.data(), delta.data(), lse_use.data());
  const Prepared<T> prep{qt.data(), dot.data(), delta.data(), lse_use.data()};

  const int64_t k_blocks = (p.k_len + bk - 1) / bk;
  const int64_t tasks = p.batch * p.kv_heads * k_blocks;
  const int64_t work = p.batch * p.q_heads * p.q_len * p.k_len * d;
  const int threads = tasks > 1 && work > kParallelWork ? std::max(1, omp_get_max_threads()) : 1;
  Scratch<T> dq_extra(static_cast<int64_t>(threads - 1) * q_elems);
  std::fill(dq_extra.data(), dq_extra.data() + (threads - 1) * q_elems, T(0));
  T* dq = static_cast<T*>(p.dq);
  #pragma omp parallel for schedule(static) if (heads > 1 && q_elems > kParallelGrain)
  for (int64_t bh = 0; bh < heads; ++bh)
    for (int64_t i = 0; i < nq; ++i)
      std::fill_n(dq + (bh / p.q_heads) * p.dq_batch_stride + (bh % p.q_heads) * p.dq_head_stride +
                      i * p.dq_row_stride,
                  d, T(0));

  #pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int tid = omp_get_thread_num();
    const DqTarget<T> target =
        tid == 0 ? DqTarget<T>{dq, p.dq_batch_stride, p.dq_head_stride, p.dq_row_stride}
                 : DqTarget<T>{dq_extra.data() + (tid - 1) * q_elems, p.q_heads * nq * d, nq * d, d};
    BackwardWork<T> work(bq, bk, d);
    #pragma omp for schedule(static, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t kb = t % k_blocks, bh = t / k_blocks;
      backward_key_block<T>(p, plan, prep, bh / p.kv_heads, bh % p.kv_heads, kb * bk, bq, bk, target, work);
    }
  }

  // dq = scale * (dq + the other threads' buffers, in thread order).
  const T scale = static_cast<T>(p.scale);
  #pragma omp parallel for schedule(static) if (heads * nq * d > kParallelGrain)
  for (int64_t r = 0; r < heads * nq; ++r) {
    const int64_t b = r / (p.q_heads * nq), h = (r / nq) % p.q_heads, i = r % nq;
    T* row = dq + b * p.dq_batch_stride + h * p.dq_head_stride + i * p.dq_row_stride;
    for (int t = 1; t < threads; ++t) {
      const T* extra = dq_extra.data() + (t - 1) * q_elems + r * d;
      #pragma omp simd
      for (int64_t x = 0; x < d; ++x) row[x] += extra[x];
    }
    #pragma omp simd
    for (int64_t x = 0; x < d; ++x) row[x] *= scale;
  }
}

template void attention_backward<float>(const AttentionParams&);
template void attention_backward<double>(const AttentionParams&);

void attention_backward_kernel(const backend::AttentionBackwardParams& p) {
  if (p.dtype == DType::BF16) attention_bf16_backward(p);  // bf16 inputs: attention_bf16.cpp picks the path
  else if (p.dtype == DType::F64) attention_backward<double>(p);
  else attention_backward<float>(p);
}

}  // namespace strand::cpu
