// Tiled attention backward for bfloat16 q, k, v, d_o on AVX512-BF16: the algorithm and the
// partitioning of attention_backward.cpp (Note [Backward partitioning]: a task owns one key block,
// per-thread dQ buffers summed in thread order, so the result is bitwise reproducible for a fixed
// thread count) with its five tile products on vdpbf16ps and float32 accumulation. P^T and dS^T
// are float32 and rounded to bf16 only as operands of dV, dK and dQ; Delta, lse and every
// gradient accumulator are float32.
//
// Per tile (Note [bf16 pairs] in attention_bf16_tile.h for the layouts):
//   S^T  = scale K Q^T   A = K rows along D (in place)      B = Q by pairs of D      [D/2][Nq]
//   dV  += P^T dO        A = P^T rows in bf16               B = dO by pairs of rows  [Nq/2][D]
//   dP^T = V dO^T        A = V rows along D (in place)      B = dO by pairs of D     [D/2][Nq]
//   dK  += dS^T Q        A = dS^T rows in bf16              B = Q by pairs of rows   [Nq/2][D]
//   dQ  += dS K          A = dS^T interleaved by key pairs  B = K by pairs of rows   [Nk/2][D]
// The four query-side packings are made once per head and the K packing once per kv head.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/backend/attention_mask.h"
#include "framework/backend/cpu/attention_bf16.h"
#include "framework/backend/cpu/attention_bf16_tile.h"
#include "framework/backend/cpu/attention_kernels.h"
#include "framework/backend/cpu/attention_tile.h"
#include "framework/backend/cpu/loops.h"
#include "framework/core/dtype.h"

namespace strand::cpu {
namespace {

using attention_bf16::dp_gemm;
using attention_bf16::pack_col_pairs;
using attention_bf16::pack_row_pairs;
using attention_bf16::tile_pass;
using attention_tile::Scratch;

constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockK = 64;
constexpr int64_t kParallelWork = int64_t{1} << 21;

// The packed operands of every head, made once before the tile loop.
struct Packed {
  int64_t nq_pad;        // Nq rounded up to even: words per row of the [D/2][Nq] layouts
  const uint32_t* qt;    // [B, Hq] x [D/2][nq_pad]: Q by pairs of D
  const uint32_t* dot;   // [B, Hq] x [D/2][nq_pad]: dO by pairs of D
  const uint32_t* qr;    // [B, Hq] x [nq_pad/2][D]: Q by pairs of rows
  const uint32_t* dor;   // [B, Hq] x [nq_pad/2][D]: dO by pairs of rows
  const uint32_t* kr;    // [B, Hkv] x [ceil(Nk/2)][D]: K by pairs of rows
  const float* delta;    // [B, Hq, Nq]
  const float* lse;      // [B, Hq, Nq], +inf where the row had no key (so exp(s - lse) = 0)
};

void pack_heads(const AttentionParams& p, uint32_t* qt, uint32_t* dot, uint32_t* qr, uint32_t* dor, uint32_t* kr,
                float* delta, float* lse_use, int64_t nq_pad) {
  const int64_t nq = p.q_len, d = p.head_dim, heads = p.batch * p.q_heads, kv = p.batch * p.kv_heads;
  const int64_t per_head = d / 2 * nq_pad;  // words of each query-side layout
  const int64_t pairs_k = (p.k_len + 1) / 2;
  // One parallel region for both loops (no barrier between them: they write different buffers).
  #pragma omp parallel if (heads > 1 && heads * nq * d > kParallelGrain)
  {
    #pragma omp for schedule(static) nowait
    for (int64_t bh = 0; bh < heads; ++bh) {
      const int64_t b = bh / p.q_heads, h = bh % p.q_heads;
      const uint16_t* q = static_cast<const uint16_t*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride;
      const uint16_t* d_o = static_cast<const uint16_t*>(p.d_o) + b * p.do_batch_stride + h * p.do_head_stride;
      const float* o = static_cast<const float*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride;
      const float* lse = static_cast<const float*>(p.lse) + b * p.lse_batch_stride + h * p.lse_head_stride;
      const float* d_lse =
          p.d_lse ? static_cast<const float*>(p.d_lse) + b * p.lse_batch_stride + h * p.lse_head_stride : nullptr;
      pack_col_pairs(q, p.q_row_stride, nq, d, qt + bh * per_head, nq_pad);
      pack_col_pairs(d_o, p.do_row_stride, nq, d, dot + bh * per_head, nq_pad);
      pack_row_pairs(q, p.q_row_stride, nq, d, qr + bh * per_head);
      pack_row_pairs(d_o, p.do_row_stride, nq, d, dor + bh * per_head);
      for (int64_t i = 0; i < nq; ++i) {
        const float* oi = o + i * p.o_row_stride;
        const uint16_t* gi = d_o + i * p.do_row_stride;
        float dsum = 0;
        #pragma omp simd reduction(+ : dsum)
        for (int64_t x = 0; x < d; ++x) dsum += bf16_bits_to_float(gi[x]) * oi[x];
        delta[bh * nq + i] = dsum - (d_lse ? d_lse[i] : 0.0f);
        lse_use[bh * nq + i] = lse[i] == -std::numeric_limits<float>::infinity() ? std::numeric_limits<float>::infinity()
                                                                                 : lse[i];
      }
    }
    #pragma omp for schedule(static)
    for (int64_t bh = 0; bh < kv; ++bh) {
      const uint16_t* k = static_cast<const uint16_t*>(p.k) + (bh / p.kv_heads) * p.k_batch_stride +
                          (bh % p.kv_heads) * p.k_head_stride;
      pack_row_pairs(k, p.k_row_stride, p.k_len, d, kr + bh * pairs_k * d);
    }
  }
}

// Where one thread adds its dQ contributions: dq itself or a contiguous buffer.
struct DqTarget {
  float* base;
  int64_t batch_stride, head_stride, row_stride;
  float* rows(int64_t b, int64_t h, int64_t i) const {
    return base + b * batch_stride + h * head_stride + i * row_stride;
  }
};

// Per-thread tiles; bq is a multiple of 32 (a bf16 score row of whole 64-byte vectors).
struct Bf16BackwardWork {
  int64_t bq;
  std::vector<float> s, dp, dk, dv;
  std::vector<uint16_t> sb;   // P^T or dS^T rows in bf16 [bk][bq]
  std::vector<uint32_t> sw;   // dS^T interleaved by key pairs [bk/2][bq]
  Bf16BackwardWork(int64_t bq_, int64_t bk, int64_t d)
      : bq(bq_), s(static_cast<size_t>(bk * bq)), dp(s.size()), dk(static_cast<size_t>(bk * d)), dv(dk.size()),
        sb(s.size()), sw(static_cast<size_t>((bk + 1) / 2 * bq)) {}
};

STRAND_BF16_TARGET void backward_key_block(const AttentionParams& p, const MaskPlan& plan, const Packed& pk,
                                           int64_t b, int64_t hk, int64_t j0, int64_t bq, int64_t bk,
                                           const DqTarget& dq, Bf16BackwardWork& w) {
  const int64_t d = p.head_dim, nq = p.q_len, nk = std::min(bk, p.k_len - j0), np = pk.nq_pad;
  const int64_t group = p.q_heads / p.kv_heads, per_head = d / 2 * np, pairs_k = (p.k_len + 1) / 2;
  const int64_t k_rs = p.k_row_stride / 2, v_rs = p.v_row_stride / 2;  // in words
  const uint32_t* k = reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(p.k) + b * p.k_batch_stride +
                                                        hk * p.k_head_stride) + j0 * k_rs;
  const uint32_t* v = reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(p.v) + b * p.v_batch_stride +
                                                        hk * p.v_head_stride) + j0 * v_rs;
  const uint32_t* kr = pk.kr + (b * p.kv_heads + hk) * pairs_k * d + (j0 / 2) * d;
  std::fill(w.dk.begin(), w.dk.end(), 0.0f);
  std::fill(w.dv.begin(), w.dv.end(), 0.0f);
  float* s = w.s.data();
  float* dp = w.dp.data();
  const float scale = static_cast<float>(p.scale);
  const uint32_t* sbw = reinterpret_cast<const uint32_t*>(w.sb.data());

  const int64_t qo = plan.q_offset(), kg0 = plan.k_offset() + j0;
  int64_t first, last;
  plan.query_reach(b, kg0, kg0 + nk, first, last);
  const int64_t i_begin = std::max<int64_t>(0, first - qo) / bq * bq, i_end = std::min(nq, last - qo);
  for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
    const int64_t bh = b * p.q_heads + h;
    const uint32_t* qt = pk.qt + bh * per_head;
    const uint32_t* dot = pk.dot + bh * per_head;
    const uint32_t* qr = pk.qr + bh * per_head;
    const uint32_t* dor = pk.dor + bh * per_head;
    const float* delta = pk.delta + bh * nq;
    const float* lse = pk.lse + bh * nq;
    for (int64_t i0 = i_begin; i0 < i_end; i0 += bq) {
      const int64_t mq = std::min(bq, nq - i0), mp = (mq + 1) / 2;
      const TileClass cls = plan.classify(b, qo + i0, qo + i0 + mq, kg0, kg0 + nk);
      if (cls == TileClass::Empty) continue;
      dp_gemm(nk, mq, d / 2, k, k_rs, 1, qt + i0, np, s, bq, false, scale);  // S^T
      if (cls == TileClass::Partial) plan.mask_tile(b, qo + i0, mq, kg0, nk, s, bq);
      // P^T = exp(S^T - lse), kept in float32 for dS and in bf16 rows for dV.
      tile_pass(s, nullptr, bq, nk, mq, lse + i0, nullptr, true, w.sb.data(), bq, nullptr, 0);
      dp_gemm(nk, d, mp, sbw, bq / 2, 1, dor + (i0 / 2) * d, d, w.dv.data(), d, true);  // dV
      dp_gemm(nk, mq, d / 2, v, v_rs, 1, dot + i0, np, dp, bq, false);                  // dP^T
      // dS^T = P^T o (dP^T - Delta), in bf16 only: rows for dK, key pairs for dQ.
      tile_pass(s, dp, bq, nk, mq, delta + i0, nullptr, false, w.sb.data(), bq, w.sw.data(), bq);
      dp_gemm(nk, d, mp, sbw, bq / 2, 1, qr + (i0 / 2) * d, d, w.dk.data(), d, true);  // dK
      dp_gemm(mq, d, (nk + 1) / 2, w.sw.data(), 1, bq, kr, d, dq.rows(b, h, i0), dq.row_stride, true);  // dQ
    }
  }
  store_key_block_grads<float>(p, b, hk, j0, nk, scale, w.dk.data(), w.dv.data());
}

}  // namespace

void attention_bf16_backward_native(const AttentionParams& p) {
  const MaskPlan plan(*p.mask, p.batch, p.q_len, p.k_len);
  // Multiples of 32 queries (bf16 score rows of whole vectors) and of 2 keys (whole pairs).
  const int64_t bq = p.block_q > 0 ? (p.block_q + 31) / 32 * 32 : kBlockQ;
  const int64_t bk = p.block_k > 0 ? (p.block_k + 1) / 2 * 2 : kBlockK;
  const int64_t d = p.head_dim, nq = p.q_len, heads = p.batch * p.q_heads, nq_pad = (nq + 1) / 2 * 2;
  const int64_t q_elems = heads * nq * d, q_words = heads * (d / 2) * nq_pad;

  Scratch<uint32_t> qt(q_words), dot(q_words), qr(q_words), dor(q_words);
  Scratch<uint32_t> kr(p.batch * p.kv_heads * ((p.k_len + 1) / 2) * d);
  Scratch<float> delta(heads * nq), lse_use(heads * nq);
  pack_heads(p, qt.data(), dot.data(), qr.data(), dor.data(), kr.data(), delta.data(), lse_use.data(), nq_pad);
  const Packed pk{nq_pad, qt.data(), dot.data(), qr.data(), dor.data(), kr.data(), delta.data(), lse_use.data()};

  const int64_t k_blocks = (p.k_len + bk - 1) / bk;
  const int64_t tasks = p.batch * p.kv_heads * k_blocks;
  const int64_t work = p.batch * p.q_heads * p.q_len * p.k_len * d;
  const int threads = tasks > 1 && work > kParallelWork ? std::max(1, omp_get_max_threads()) : 1;
  Scratch<float> dq_extra(static_cast<int64_t>(threads - 1) * q_elems);
  std::fill(dq_extra.data(), dq_extra.data() + (threads - 1) * q_elems, 0.0f);
  float* dq = static_cast<float*>(p.dq);
  #pragma omp parallel for schedule(static) if (heads > 1 && q_elems > kParallelGrain)
  for (int64_t bh = 0; bh < heads; ++bh)
    for (int64_t i = 0; i < nq; ++i)
      std::fill_n(dq + (bh / p.q_heads) * p.dq_batch_stride + (bh % p.q_heads) * p.dq_head_stride +
                      i * p.dq_row_stride,
                  d, 0.0f);

  #pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int tid = omp_get_thread_num();
    const DqTarget target = tid == 0 ? DqTarget{dq, p.dq_batch_stride, p.dq_head_stride, p.dq_row_stride}
                                     : DqTarget{dq_extra.data() + (tid - 1) * q_elems, p.q_heads * nq * d, nq * d, d};
    Bf16BackwardWork work(bq, bk, d);
    #pragma omp for schedule(static, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t kb = t % k_blocks, bh = t / k_blocks;
      backward_key_block(p, plan, pk, bh / p.kv_heads, bh % p.kv_heads, kb * bk, bq, bk, target, work);
    }
  }

  // dq = scale * (dq + the other threads' buffers, in thread order).
  const float scale = static_cast<float>(p.scale);
  #pragma omp parallel for schedule(static) if (heads * nq * d > kParallelGrain)
  for (int64_t r = 0; r < heads * nq; ++r) {
    const int64_t b = r / (p.q_heads * nq), h = (r / nq) % p.q_heads, i = r % nq;
    float* row = dq + b * p.dq_batch_stride + h * p.dq_head_stride + i * p.dq_row_stride;
    for (int t = 1; t < threads; ++t) {
      const float* extra = dq_extra.data() + (t - 1) * q_elems + r * d;
      #pragma omp simd
      for (int64_t x = 0; x < d; ++x) row[x] += extra[x];
    }
    #pragma omp simd
    for (int64_t x = 0; x < d; ++x) row[x] *= scale;
  }
}

}  // namespace strand::cpu
