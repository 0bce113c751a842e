// Tiled attention forward for bfloat16 q, k, v on AVX512-BF16: the algorithm of
// attention_forward.cpp (FlashAttention-2, Note [Transposed score tiles]) with both tile products
// on vdpbf16ps and float32 accumulation. Scores, the softmax statistics (max, sum, lse) and the
// output accumulator are float32; P is rounded to bf16 for P . V only.
//
// Operands (Note [bf16 pairs] in attention_bf16_tile.h):
//   S^T = scale * K . Q^T   A = K rows along D, read in place; B = the query block's Q packed by
//                           pairs of D once per task.
//   acc += P . V            A = P^T interleaved by pairs of keys; B = V packed by pairs of keys,
//                           once per kv head before the tile loop (every query block reads it).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/backend/attention_mask.h"
#include "framework/backend/cpu/attention_bf16.h"
#include "framework/backend/cpu/attention_bf16_tile.h"
#include "framework/backend/cpu/attention_tile.h"

namespace strand::cpu {
namespace {

using attention_bf16::dp_gemm;
using attention_bf16::pack_col_pairs;
using attention_bf16::pack_row_pairs;
using attention_bf16::tile_pass;
using attention_tile::exp_approx;
using attention_tile::Scratch;

constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockK = 64;
constexpr int64_t kParallelWork = int64_t{1} << 21;

// Per-thread working memory of one query block. bq is a multiple of 16 (the words of a score row).
struct Bf16ForwardWork {
  int64_t bq;
  std::vector<uint32_t> qp, pw;  // Q block by pairs of D [D/2][bq]; P^T by pairs of keys [bk/2][bq]
  std::vector<float> s, acc, m, l, alpha, m_use, row_max, row_sum;
  Bf16ForwardWork(int64_t bq_, int64_t bk, int64_t d)
      : bq(bq_), qp(static_cast<size_t>(d / 2 * bq)), pw(static_cast<size_t>((bk + 1) / 2 * bq)),
        s(static_cast<size_t>(bk * bq)), acc(static_cast<size_t>(bq * d)), m(static_cast<size_t>(bq)), l(m.size()),
        alpha(m.size()), m_use(m.size()), row_max(m.size()), row_sum(m.size()) {}
};

// Folds the score tile s (nk keys x mq queries, row stride bq) into the running max, sum and
// accumulator, as attention_forward.cpp does, with acc += P . V on bf16 P.
STRAND_BF16_TARGET void online_softmax_step(int64_t mq, int64_t nk, float* s, Bf16ForwardWork& w, const uint32_t* vp,
                                            int64_t d) {
  const int64_t ld = w.bq;
  attention_tile::online_max(mq, nk, s, ld, w.m.data(), w.m_use.data(), w.alpha.data(), w.row_max.data());
  float* sum = w.row_sum.data();
  std::fill(sum, sum + mq, 0.0f);
  // P^T = exp(S^T - m) summed per query and rounded straight into the pairs P . V reads.
  tile_pass(s, nullptr, ld, nk, mq, w.m_use.data(), sum, false, nullptr, 0, w.pw.data(), ld);
  attention_tile::online_rescale(mq, d, w.l.data(), w.alpha.data(), sum, w.acc.data());
  dp_gemm(mq, d, (nk + 1) / 2, w.pw.data(), 1, ld, vp, d, w.acc.data(), d, true);
}

STRAND_BF16_TARGET void forward_query_block(const AttentionParams& p, const MaskPlan& plan, const uint32_t* vp_all,
                                            int64_t b, int64_t h, int64_t i0, int64_t bk, Bf16ForwardWork& w) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t d = p.head_dim, bq = w.bq, mq = std::min(bq, p.q_len - i0);
  const int64_t hk = h / (p.q_heads / p.kv_heads);
  const uint16_t* q = static_cast<const uint16_t*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride +
                      i0 * p.q_row_stride;
  const uint32_t* k = reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(p.k) + b * p.k_batch_stride +
                                                        hk * p.k_head_stride);
  const int64_t pairs_k = (p.k_len + 1) / 2;
  const uint32_t* vp = vp_all + (b * p.kv_heads + hk) * pairs_k * d;
  pack_col_pairs(q, p.q_row_stride, mq, d, w.qp.data(), bq);
  std::fill(w.m.begin(), w.m.end(), kNegInf);
  std::fill(w.l.begin(), w.l.end(), 0.0f);
  std::fill(w.acc.begin(), w.acc.end(), 0.0f);

  const int64_t qg0 = plan.q_offset() + i0, ko = plan.k_offset();
  int64_t first, last;
  plan.key_reach(b, qg0, qg0 + mq, first, last);
  const int64_t j_begin = std::max<int64_t>(0, first - ko) / bk * bk, j_end = std::min(p.k_len, last - ko);
  const int64_t k_rs = p.k_row_stride / 2;  // in words
  for (int64_t j0 = j_begin; j0 < j_end; j0 += bk) {
    const int64_t nk = std::min(bk, p.k_len - j0);
    const TileClass cls = plan.classify(b, qg0, qg0 + mq, ko + j0, ko + j0 + nk);
    if (cls == TileClass::Empty) continue;
    float* s = w.s.data();
    dp_gemm(nk, mq, d / 2, k + j0 * k_rs, k_rs, 1, w.qp.data(), bq, s, bq, false, static_cast<float>(p.scale));
    if (cls == TileClass::Partial) plan.mask_tile(b, qg0, mq, ko + j0, nk, s, bq);
    online_softmax_step(mq, nk, s, w, vp + (j0 / 2) * d, d);
  }

  float* o = static_cast<float*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride + i0 * p.o_row_stride;
  float* lse = static_cast<float*>(p.lse) + b * p.lse_batch_stride + h * p.lse_head_stride + i0;
  attention_tile::online_finish(mq, d, w.acc.data(), w.l.data(), w.m.data(), o, p.o_row_stride, lse);
}

}  // namespace

void attention_bf16_forward_native(const AttentionParams& p) {
  const MaskPlan plan(*p.mask, p.batch, p.q_len, p.k_len);
  // Block sizes: multiples of 16 queries (score rows of whole vectors) and of 2 keys (whole pairs).
  const int64_t bq = p.block_q > 0 ? (p.block_q + 15) / 16 * 16 : kBlockQ;
  const int64_t bk = p.block_k > 0 ? (p.block_k + 1) / 2 * 2 : kBlockK;
  const int64_t d = p.head_dim, kv = p.batch * p.kv_heads, pairs_k = (p.k_len + 1) / 2;

  Scratch<uint32_t> vp(kv * pairs_k * d);
  const int64_t q_blocks = (p.q_len + bq - 1) / bq;
  const int64_t tasks = p.batch * p.q_heads * q_blocks;
  const int64_t work = p.batch * p.q_heads * p.q_len * p.k_len * d;
  // One parallel region for the packing and the tiles: a second fork costs more than the
  // packing itself on a loaded machine.
  #pragma omp parallel if (tasks > 1 && work > kParallelWork)
  {
    // V of every kv head by pairs of keys, once (the loop's barrier: every task reads all of it).
    #pragma omp for schedule(static)
    for (int64_t bh = 0; bh < kv; ++bh) {
      const uint16_t* v = static_cast<const uint16_t*>(p.v) + (bh / p.kv_heads) * p.v_batch_stride +
                          (bh % p.kv_heads) * p.v_head_stride;
      pack_row_pairs(v, p.v_row_stride, p.k_len, d, vp.data() + bh * pairs_k * d);
    }
    Bf16ForwardWork w(bq, bk, d);
    // Later query blocks first (they see more keys under causal masks); one task per row, so the
    // result does not depend on the schedule.
    #pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t qb = q_blocks - 1 - t % q_blocks, bh = t / q_blocks;
      forward_query_block(p, plan, vp.data(), bh / p.q_heads, bh % p.q_heads, qb * bq, bk, w);
    }
  }
}

}  // namespace strand::cpu
