// Tiled attention forward on CPU (the FlashAttention-2 algorithm): for each block of queries,
// walk the key blocks in reach with an online softmax; no Nq x Nk buffer, memory O(N * D).
//
// Note [Transposed score tiles]
// A score tile is kept keys by queries, S^T[j][i], computed as K_tile . (scale * Q_tile)^T. The
// query block is transposed once per task (D x Bq, tiny), keys and values are read in place, and
// the softmax statistics of 16 queries sit in one vector: the running max over keys is a vertical
// max of rows, not a horizontal reduction. O += P . V then reads P^T transposed, a broadcast per
// element, which the micro-kernel does anyway.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/backend/attention_mask.h"
#include "framework/backend/cpu/attention_bf16.h"
#include "framework/backend/cpu/attention_kernels.h"
#include "framework/backend/cpu/attention_tile.h"

namespace strand::cpu {
namespace {

using attention_tile::exp_approx;
using attention_tile::gemm;

// 64 queries make four 16-float vectors per score row; 64 keys keep one K tile, one V tile, the
// score tile and the output accumulator (16 KiB each at D = 64) inside L1 + L2 of one core.
constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockK = 64;
// Below this many multiply-adds (an upper bound, B * Hq * Nq * Nk * D) one thread is faster than a fork.
constexpr int64_t kParallelWork = int64_t{1} << 21;

// Per-thread working memory of one query block.
template <class T>
struct ForwardWork {
  std::vector<T> qt, s, acc, m, l, alpha, m_use, row_max, row_sum;
  ForwardWork(int64_t bq, int64_t bk, int64_t d)
      : qt(static_cast<size_t>(d * bq)), s(static_cast<size_t>(bk * bq)), acc(static_cast<size_t>(bq * d)),
        m(static_cast<size_t>(bq)), l(m.size()), alpha(m.size()), m_use(m.size()), row_max(m.size()),
        row_sum(m.size()) {}
};

// Folds one score tile s (nk keys x mq queries, row stride ld) into the running max m, sum l and
// output accumulator acc (mq x d); s is overwritten by the probabilities.
template <class T>
void online_softmax_step(int64_t mq, int64_t nk, int64_t ld, T* s, ForwardWork<T>& w, const T* v, int64_t v_rs,
                         int64_t d) {
  attention_tile::online_max(mq, nk, s, ld, w.m.data(), w.m_use.data(), w.alpha.data(), w.row_max.data());
  T* m_use = w.m_use.data();
  T* sum = w.row_sum.data();
  std::fill(sum, sum + mq, T(0));
  for (int64_t j = 0; j < nk; ++j) {
    T* row = s + j * ld;
    #pragma omp simd
    for (int64_t i = 0; i < mq; ++i) {
      const T pv = exp_approx(row[i] - m_use[i]);
      row[i] = pv;
      sum[i] += pv;
    }
  }
  attention_tile::online_rescale(mq, d, w.l.data(), w.alpha.data(), sum, w.acc.data());
  // acc[i][:] += sum_j P^T[j][i] V[j][:]
  gemm<T>(mq, d, nk, s, 1, ld, v, v_rs, w.acc.data(), d, true);
}

template <class T>
void forward_query_block(const AttentionParams& p, const MaskPlan& plan, int64_t b, int64_t h, int64_t i0,
                         int64_t bq, int64_t bk, ForwardWork<T>& w) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const int64_t d = p.head_dim, mq = std::min(bq, p.q_len - i0);
  const int64_t hk = h / (p.q_heads / p.kv_heads);
  const T* q = static_cast<const T*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride + i0 * p.q_row_stride;
  const T* k = static_cast<const T*>(p.k) + b * p.k_batch_stride + hk * p.k_head_stride;
  const T* v = static_cast<const T*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  const T scale = static_cast<T>(p.scale);
  for (int64_t i = 0; i < mq; ++i)
    for (int64_t x = 0; x < d; ++x) w.qt[static_cast<size_t>(x * bq + i)] = q[i * p.q_row_stride + x] * scale;
  std::fill(w.m.begin(), w.m.end(), kNegInf);
  std::fill(w.l.begin(), w.l.end(), T(0));
  std::fill(w.acc.begin(), w.acc.end(), T(0));

  const int64_t qg0 = plan.q_offset() + i0, ko = plan.k_offset();
  int64_t first, last;
  plan.key_reach(b, qg0, qg0 + mq, first, last);
  const int64_t j_begin = std::max<int64_t>(0, first - ko) / bk * bk, j_end = std::min(p.k_len, last - ko);
  for (int64_t j0 = j_begin; j0 < j_end; j0 += bk) {
    const int64_t nk = std::min(bk, p.k_len - j0);
    const TileClass cls = plan.classify(b, qg0, qg0 + mq, ko + j0, ko + j0 + nk);
    if (cls == TileClass::Empty) continue;
    T* s = w.s.data();
    gemm<T>(nk, mq, d, k + j0 * p.k_row_stride, p.k_row_stride, 1, w.qt.data(), bq, s, bq, false);
    if (cls == TileClass::Partial) plan.mask_tile(b, qg0, mq, ko + j0, nk, s, bq);
    online_softmax_step(mq, nk, bq, s, w, v + j0 * p.v_row_stride, p.v_row_stride, d);
  }

  T* o = static_cast<T*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride + i0 * p.o_row_stride;
  T* lse = static_cast<T*>(p.lse) + b * p.lse_batch_stride + h * p.lse_head_stride + i0;
  attention_tile::online_finish(mq, d, w.acc.data(), w.l.data(), w.m.data(), o, p.o_row_stride, lse);
}

}  // namespace

template <class T>
void attention_forward(const AttentionParams& p) {
  const MaskPlan plan(*p.mask, p.batch, p.q_len, p.k_len);
  const int64_t bq = p.block_q > 0 ? p.block_q : kBlockQ, bk = p.block_k > 0 ? p.block_k : kBlockK;
  const int64_t q_blocks = (p.q_len + bq - 1) / bq;
  const int64_t tasks = p.batch * p.q_heads * q_blocks;
  const int64_t work = p.batch * p.q_heads * p.q_len * p.k_len * p.head_dim;
  #pragma omp parallel if (tasks > 1 && work > kParallelWork)
  {
    ForwardWork<T> work(bq, bk, p.head_dim);
    // Later query blocks see more keys under causal masks: hand them out first. Each row is
    // computed by one task from start to end, so the result does not depend on the schedule.
    #pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t qb = q_blocks - 1 - t % q_blocks, bh = t / q_blocks;
      forward_query_block<T>(p, plan, bh / p.q_heads, bh % p.q_heads, qb * bq, bq, bk, work);
    }
  }
}

template void attention_forward<float>(const AttentionParams&);
template void attention_forward<double>(const AttentionParams&);

void attention_forward_kernel(const backend::AttentionForwardParams& p) {
  if (p.dtype == DType::BF16) attention_bf16_forward(p);  // bf16 inputs: attention_bf16.cpp picks the path
  else if (p.dtype == DType::F64) attention_forward<double>(p);
  else attention_forward<float>(p);
}

}  // namespace strand::cpu
