// INT8 attention forward on CPU, for inference (eval, generate's prefill): the tiled online-softmax
// forward of attention_forward.cpp with the scores S = Q . K^T taken in integer arithmetic.
//
// Note [INT8 scores]
// Keys are smoothed first (SageAttention): the mean key of the call, m, is subtracted from every
// key, which shifts each query's scores by the same q . m and so leaves softmax unchanged; it
// removes the large common component that would otherwise waste the 8 bits. The shift is added
// back in float (q . m per query), so lse stays the true log-sum-exp and partial results of ring
// segments, each smoothed by its own mean, still merge exactly. Then per 64-row block:
//   K~ = round((k - m) / s_k), s_k = max |k - m| / 127      (int8, per key block)
//   Q~ = round(q * scale / s_q), s_q = max |q * scale| / 127 (int8, per query block)
//   S = (Q~ . K~^T) * s_q * s_k + (q * scale) . m           (int32 dot products, then float)
// The softmax statistics stay float32. P . V runs on the bf16 tiles of attention_bf16_tile.h (P and
// V rounded to bf16, float32 accumulation, vdpbf16ps) where the CPU has AVX512-BF16 and bf16
// attention is not forced to its generic path (STRAND_ATTENTION_ISA), in float32 otherwise. The
// integer dot products use AVX512-VNNI's vpdpbusd (unsigned x signed bytes, 64 multiply-adds an
// instruction) where the CPU has it, chosen at run time; it takes Q~ as unsigned bytes Q~ + 128,
// and the 128 * sum(K~ row) this adds is subtracted per key. The portable path computes the same
// integers, so both give bitwise the same result.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "framework/backend/attention_mask.h"
#include "framework/backend/cpu/attention_bf16.h"
#include "framework/backend/cpu/attention_bf16_tile.h"
#include "framework/backend/cpu/attention_int8.h"
#include "framework/backend/cpu/attention_tile.h"
#include "framework/core/error.h"

namespace strand::cpu {
namespace {

using attention_tile::exp_approx;
using backend::AttentionParams;
using attention_tile::gemm;

constexpr int64_t kBlock = 64;         // query rows and key rows per tile
constexpr int kQueryVectors = 4;       // kBlock / 16: a score row of 64 queries is 4 int32 vectors
constexpr int32_t kUnsignedShift = 128;  // Q~ + 128 fits an unsigned byte
constexpr int64_t kParallelWork = int64_t{1} << 21;

// ceil(x / 4) * 4: rows are padded to whole 4-byte groups (padding is zero in K~, 0 + 128 in Q).
int64_t padded(int64_t d) { return (d + 3) / 4 * 4; }

// Round to nearest even and clamp to [-127, 127], in float arithmetic that vectorises: adding
// and subtracting 1.5 * 2^23 rounds any |x| < 2^22 to an integer.
inline int8_t round_to_int8(float x) {
  constexpr float kRound = 12582912.0f;
  return static_cast<int8_t>(static_cast<int32_t>(std::clamp((x + kRound) - kRound, -127.0f, 127.0f)));
}

// The keys of every (batch, kv head), smoothed and quantised once per call.
struct QuantizedKeys {
  int64_t dp = 0, blocks = 0;
  std::vector<int8_t> k;        // [B * Hkv][Nk][dp]
  std::vector<int32_t> sum;     // [B * Hkv][Nk]: sum of a row of K~, for the unsigned-shift correction
  std::vector<float> scale;     // [B * Hkv][blocks]: s_k of each key block
  std::vector<float> mean;      // [B * Hkv][D]
};

QuantizedKeys quantize_keys(const AttentionParams& p) {
  const int64_t d = p.head_dim, n = p.k_len, heads = p.batch * p.kv_heads;
  QuantizedKeys qk;
  qk.dp = padded(d);
  qk.blocks = (n + kBlock - 1) / kBlock;
  qk.k.assign(static_cast<size_t>(heads * n * qk.dp), 0);
  qk.sum.assign(static_cast<size_t>(heads * n), 0);
  qk.scale.assign(static_cast<size_t>(heads * qk.blocks), 1.0f);
  qk.mean.assign(static_cast<size_t>(heads * d), 0.0f);
  #pragma omp parallel for schedule(static) if (heads > 1 && heads * n * d >= kParallelWork / 8)
  for (int64_t bh = 0; bh < heads; ++bh) {
    const float* k = static_cast<const float*>(p.k) + (bh / p.kv_heads) * p.k_batch_stride +
                     (bh % p.kv_heads) * p.k_head_stride;
    float* mean = qk.mean.data() + bh * d;
    std::vector<double> total(static_cast<size_t>(d), 0.0);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t x = 0; x < d; ++x) total[static_cast<size_t>(x)] += k[j * p.k_row_stride + x];
    for (int64_t x = 0; x < d; ++x) mean[x] = n > 0 ? static_cast<float>(total[static_cast<size_t>(x)] / n) : 0.0f;
    for (int64_t blk = 0; blk < qk.blocks; ++blk) {
      const int64_t j0 = blk * kBlock, j1 = std::min(n, j0 + kBlock);
      float amax = 0.0f;
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t x = 0; x < d; ++x) amax = std::max(amax, std::fabs(k[j * p.k_row_stride + x] - mean[x]));
      const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
      qk.scale[static_cast<size_t>(bh * qk.blocks + blk)] = s;
      const float inv = 1.0f / s;
      for (int64_t j = j0; j < j1; ++j) {
        int8_t* row = qk.k.data() + (bh * n + j) * qk.dp;
        int32_t sum = 0;
        for (int64_t x = 0; x < d; ++x) {
          row[x] = round_to_int8((k[j * p.k_row_stride + x] - mean[x]) * inv);
          sum += row[x];
        }
        qk.sum[static_cast<size_t>(bh * n + j)] = sum;
      }
    }
  }
  return qk;
}

// Per-thread working memory of one query block.
struct Int8Work {
  std::vector<uint8_t> qp;   // Q~ + 128 packed [dp / 4][kBlock][4]: 16 queries' 4-byte groups per vector
  std::vector<uint8_t> qrow;  // one query's Q~ + 128 [dp], before it is packed
  std::vector<uint32_t> pw;  // bf16 P . V: P^T by pairs of keys [kBlock / 2][kBlock]
  std::vector<float> qs, shift, s, acc, m, l, alpha, m_use, row_max, row_sum;
  Int8Work(int64_t d, int64_t dp)
      : qp(static_cast<size_t>(dp * kBlock)), qrow(static_cast<size_t>(dp)), pw(static_cast<size_t>(kBlock / 2 * kBlock)),
        qs(static_cast<size_t>(kBlock * d)), shift(kBlock),
        s(static_cast<size_t>(kBlock * kBlock)), acc(static_cast<size_t>(kBlock * d)),
        m(kBlock), l(kBlock), alpha(kBlock), m_use(kBlock), row_max(kBlock), row_sum(kBlock) {}
};

// What turns a tile's integer dot products into scores: s[j][i] = (dot - 128 * ksum[j]) * unit +
// shift[i] (Note [INT8 scores]).
struct ScoreScale {
  const int32_t* ksum;  // sum of K~ row j
  float unit;           // s_q * s_k
  const float* shift;   // (q_i * scale) . mean
};

// Scores of nk keys and kBlock queries: s[j][i] from sum_x qp(i, x) * k[j][x].
void scores_generic(int64_t nk, int64_t dp, const uint8_t* qp, const int8_t* k, const ScoreScale& sc, float* s) {
  int32_t dot[kBlock];
  for (int64_t j = 0; j < nk; ++j) {
    std::fill(dot, dot + kBlock, 0);
    const int8_t* kr = k + j * dp;
    for (int64_t g = 0; g < dp / 4; ++g) {
      const uint8_t* qg = qp + g * kBlock * 4;
      for (int64_t i = 0; i < kBlock; ++i)
        for (int t = 0; t < 4; ++t) dot[i] += static_cast<int32_t>(qg[i * 4 + t]) * kr[g * 4 + t];
    }
    const int32_t correction = kUnsignedShift * sc.ksum[j];
    for (int64_t i = 0; i < kBlock; ++i)
      s[j * kBlock + i] = std::fma(static_cast<float>(dot[i] - correction), sc.unit, sc.shift[i]);
  }
}

// The same with vpdpbusd: R keys x 4 query vectors of 16 int32 accumulators, one broadcast 4-byte
// group of each key against one 64-byte vector of 16 queries' groups.
template <int R>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void scores_vnni_rows(int64_t dp, const uint8_t* qp,
                                                                              const int8_t* k, const int32_t* ksum,
                                                                              const ScoreScale& sc, float* s) {
  __m512i acc[R][kQueryVectors];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kQueryVectors; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int64_t g = 0; g < dp / 4; ++g) {
    __m512i qv[kQueryVectors];
    for (int v = 0; v < kQueryVectors; ++v) qv[v] = _mm512_loadu_si512(qp + (g * kBlock + v * 16) * 4);
    for (int r = 0; r < R; ++r) {
      int32_t group;
      std::memcpy(&group, k + r * dp + g * 4, sizeof group);
      const __m512i kb = _mm512_set1_epi32(group);
      for (int v = 0; v < kQueryVectors; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], qv[v], kb);
    }
  }
  // The same float arithmetic as scores_generic (one fused multiply-add), lane by lane: both
  // paths agree bitwise.
  const __m512 unit = _mm512_set1_ps(sc.unit);
  for (int r = 0; r < R; ++r) {
    const __m512i correction = _mm512_set1_epi32(kUnsignedShift * ksum[r]);
    for (int v = 0; v < kQueryVectors; ++v) {
      // (The maskz form with every lane set: GCC 12 warns about the plain one's undefined vector.)
      const __m512 dot = _mm512_maskz_cvtepi32_ps(0xFFFF, _mm512_sub_epi32(acc[r][v], correction));
      _mm512_storeu_ps(s + r * kBlock + v * 16, _mm512_fmadd_ps(dot, unit, _mm512_loadu_ps(sc.shift + v * 16)));
    }
  }
}

void scores_vnni(int64_t nk, int64_t dp, const uint8_t* qp, const int8_t* k, const ScoreScale& sc, float* s) {
  int64_t j = 0;
  for (; j + 4 <= nk; j += 4) scores_vnni_rows<4>(dp, qp, k + j * dp, sc.ksum + j, sc, s + j * kBlock);
  for (; j < nk; ++j) scores_vnni_rows<1>(dp, qp, k + j * dp, sc.ksum + j, sc, s + j * kBlock);
}

// Folds the tile into the running max, sum and accumulator with P . V in float32 (the online
// softmax of attention_forward.cpp); s becomes P.
void fold_tile_f32(int64_t mq, int64_t nk, float* s, Int8Work& w, const float* v, int64_t v_rs, int64_t d) {
  attention_tile::online_max(mq, nk, s, kBlock, w.m.data(), w.m_use.data(), w.alpha.data(), w.row_max.data());
  float* sum = w.row_sum.data();
  std::fill(sum, sum + mq, 0.0f);
  for (int64_t j = 0; j < nk; ++j) {
    float* row = s + j * kBlock;
    #pragma omp simd
    for (int64_t i = 0; i < mq; ++i) {
      const float pv = exp_approx(row[i] - w.m_use[static_cast<size_t>(i)]);
      row[i] = pv;
      sum[i] += pv;
    }
  }
  attention_tile::online_rescale(mq, d, w.l.data(), w.alpha.data(), sum, w.acc.data());
  gemm<float>(mq, d, nk, s, 1, kBlock, v, v_rs, w.acc.data(), d, true);
}

// The same with P rounded to bf16 pairs and P . V on vdpbf16ps against V packed by pairs of keys.
STRAND_BF16_TARGET void fold_tile_bf16(int64_t mq, int64_t nk, float* s, Int8Work& w, const uint32_t* vp, int64_t d) {
  attention_tile::online_max(mq, nk, s, kBlock, w.m.data(), w.m_use.data(), w.alpha.data(), w.row_max.data());
  float* sum = w.row_sum.data();
  std::fill(sum, sum + mq, 0.0f);
  attention_bf16::tile_pass(s, nullptr, kBlock, nk, mq, w.m_use.data(), sum, false, nullptr, 0, w.pw.data(), kBlock);
  attention_tile::online_rescale(mq, d, w.l.data(), w.alpha.data(), sum, w.acc.data());
  attention_bf16::dp_gemm(mq, d, (nk + 1) / 2, w.pw.data(), 1, kBlock, vp, d, w.acc.data(), d, true);
}

// V of every (batch, kv head) rounded to bf16 and packed by pairs of keys [pairs][D], once per call.
std::vector<uint32_t> pack_values_bf16(const AttentionParams& p) {
  const int64_t d = p.head_dim, heads = p.batch * p.kv_heads, pairs = (p.k_len + 1) / 2;
  std::vector<uint32_t> vp(static_cast<size_t>(heads * pairs * d));
  #pragma omp parallel for schedule(static) if (heads > 1 && heads * p.k_len * d >= kParallelWork / 8)
  for (int64_t bh = 0; bh < heads; ++bh) {
    const float* v = static_cast<const float*>(p.v) + (bh / p.kv_heads) * p.v_batch_stride +
                     (bh % p.kv_heads) * p.v_head_stride;
    std::vector<uint16_t> rows(static_cast<size_t>(p.k_len * d));
    for (int64_t j = 0; j < p.k_len; ++j)
      for (int64_t x = 0; x < d; ++x) rows[static_cast<size_t>(j * d + x)] = float_to_bf16_bits(v[j * p.v_row_stride + x]);
    attention_bf16::pack_row_pairs(rows.data(), d, p.k_len, d, vp.data() + bh * pairs * d);
  }
  return vp;
}

using Scores = void (*)(int64_t, int64_t, const uint8_t*, const int8_t*, const ScoreScale&, float*);

void query_block(const AttentionParams& p, const MaskPlan& plan, const QuantizedKeys& qk, Scores scores,
                 const std::vector<uint32_t>& vp_all, int64_t b, int64_t h, int64_t i0, Int8Work& w) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t d = p.head_dim, dp = qk.dp, mq = std::min(kBlock, p.q_len - i0);
  const int64_t hk = h / (p.q_heads / p.kv_heads), bh = b * p.kv_heads + hk;
  const float* q = static_cast<const float*>(p.q) + b * p.q_batch_stride + h * p.q_head_stride + i0 * p.q_row_stride;
  const float* v = static_cast<const float*>(p.v) + b * p.v_batch_stride + hk * p.v_head_stride;
  const float* mean = qk.mean.data() + bh * d;
  const float scale = static_cast<float>(p.scale);

  // Scaled queries, their shift q . m, and Q~ + 128 packed by 4-byte groups (Note [INT8 scores]).
  float amax = 0.0f;
  for (int64_t i = 0; i < mq; ++i) {
    float dot = 0.0f;
    for (int64_t x = 0; x < d; ++x) {
      const float qv = q[i * p.q_row_stride + x] * scale;
      w.qs[static_cast<size_t>(i * d + x)] = qv;
      amax = std::max(amax, std::fabs(qv));
      dot += qv * mean[x];
    }
    w.shift[static_cast<size_t>(i)] = dot;
  }
  const float sq = amax > 0.0f ? amax / 127.0f : 1.0f, inv_sq = 1.0f / sq;
  // Each query's Q~ + 128 as bytes (padding 128 = zero), then moved by 4-byte groups.
  std::fill(w.qp.begin(), w.qp.end(), static_cast<uint8_t>(kUnsignedShift));
  uint8_t* row = w.qrow.data();
  for (int64_t i = 0; i < mq; ++i) {
    const float* qi = w.qs.data() + i * d;
    #pragma omp simd
    for (int64_t x = 0; x < d; ++x) row[x] = static_cast<uint8_t>(round_to_int8(qi[x] * inv_sq) + kUnsignedShift);
    for (int64_t x = d; x < dp; ++x) row[x] = static_cast<uint8_t>(kUnsignedShift);
    for (int64_t g = 0; g < dp / 4; ++g) std::memcpy(w.qp.data() + (g * kBlock + i) * 4, row + g * 4, 4);
  }
  std::fill(w.m.begin(), w.m.end(), kNegInf);
  std::fill(w.l.begin(), w.l.end(), 0.0f);
  std::fill(w.acc.begin(), w.acc.end(), 0.0f);

  const int64_t qg0 = plan.q_offset() + i0, ko = plan.k_offset();
  int64_t first, last;
  plan.key_reach(b, qg0, qg0 + mq, first, last);
  // Key tiles start on the quantisation blocks, so one s_k covers a tile.
  const int64_t j_begin = std::max<int64_t>(0, first - ko) / kBlock * kBlock, j_end = std::min(p.k_len, last - ko);
  for (int64_t j0 = j_begin; j0 < j_end; j0 += kBlock) {
    const int64_t nk = std::min(kBlock, p.k_len - j0);
    const TileClass cls = plan.classify(b, qg0, qg0 + mq, ko + j0, ko + j0 + nk);
    if (cls == TileClass::Empty) continue;
    const ScoreScale sc{qk.sum.data() + bh * p.k_len + j0,
                        sq * qk.scale[static_cast<size_t>(bh * qk.blocks + j0 / kBlock)], w.shift.data()};
    float* s = w.s.data();
    scores(nk, dp, w.qp.data(), qk.k.data() + (bh * p.k_len + j0) * dp, sc, s);
    if (cls == TileClass::Partial) plan.mask_tile(b, qg0, mq, ko + j0, nk, s, kBlock);
    if (vp_all.empty()) {
      fold_tile_f32(mq, nk, s, w, v + j0 * p.v_row_stride, p.v_row_stride, d);
    } else {
      const int64_t pairs = (p.k_len + 1) / 2;
      fold_tile_bf16(mq, nk, s, w, vp_all.data() + (bh * pairs + j0 / 2) * d, d);
    }
  }

  float* o = static_cast<float*>(p.o) + b * p.o_batch_stride + h * p.o_head_stride + i0 * p.o_row_stride;
  float* lse = static_cast<float*>(p.lse) + b * p.lse_batch_stride + h * p.lse_head_stride + i0;
  attention_tile::online_finish(mq, d, w.acc.data(), w.l.data(), w.m.data(), o, p.o_row_stride, lse);
}

}  // namespace

bool cpu_has_vnni() {
  static const bool has = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
  return has;
}

void attention_forward_int8_kernel(const backend::AttentionInt8ForwardParams& p) {
  STRAND_CHECK(p.dtype == DType::F32, DTypeError, "int8 attention: takes float32 q, k, v, got ", dtype_name(p.dtype));
  const MaskPlan plan(*p.mask, p.batch, p.q_len, p.k_len);
  const QuantizedKeys qk = quantize_keys(p);
  const Scores scores = !p.generic && cpu_has_vnni() ? &scores_vnni : &scores_generic;
  // P . V in bf16 where bf16 attention would take its tiles (the same switch, so a user forcing
  // bf16 attention to its generic path gets float32 P . V here too).
  const std::vector<uint32_t> vp = attention_bf16_isa() == "avx512bf16" ? pack_values_bf16(p) : std::vector<uint32_t>{};
  const int64_t q_blocks = (p.q_len + kBlock - 1) / kBlock;
  const int64_t tasks = p.batch * p.q_heads * q_blocks;
  const int64_t work = p.batch * p.q_heads * p.q_len * p.k_len * p.head_dim;
  #pragma omp parallel if (tasks > 1 && work > kParallelWork)
  {
    Int8Work w(p.head_dim, qk.dp);
    // Later query blocks see more keys under causal masks: hand them out first.
    #pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t qb = q_blocks - 1 - t % q_blocks, bh = t / q_blocks;
      query_block(p, plan, qk, scores, vp, bh / p.q_heads, bh % p.q_heads, qb * kBlock, w);
    }
  }
}

}  // namespace strand::cpu
