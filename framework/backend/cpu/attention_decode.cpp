// CPU single-query attention over a key/value cache: per (batch row, query head), the scores of
// the attended slots, their softmax and the weighted sum of values. Slots are visited in storage
// order; the mask is decided per slot from its global position, so a ring cache that wrapped
// needs no reordering.
#include "framework/backend/cpu/attention_decode.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/backend/attention_mask.h"
#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"
#include "framework/core/error.h"

namespace strand::cpu {

namespace {

void check_params(const backend::AttentionDecodeParams& p) {
  STRAND_CHECK(p.mask != nullptr && p.key_positions != nullptr, ValueError,
               "attention_decode: the mask and the key positions are required");
  STRAND_CHECK(p.batch > 0 && p.q_heads > 0 && p.kv_heads > 0 && p.q_heads % p.kv_heads == 0 && p.head_dim > 0 &&
                   p.slots >= 0,
               ShapeError, "attention_decode: B ", p.batch, ", Hq ", p.q_heads, ", Hkv ", p.kv_heads, ", D ",
               p.head_dim, ", S ", p.slots, " (Hq must be a multiple of Hkv)");
  STRAND_CHECK(p.q_position >= 0, ValueError, "attention_decode: query position ", p.q_position, " is negative");
}

// The MaskSpec of one query at global position q against keys at positions [0, q]: the cache's
// keys are all earlier or equal (a decoder's cache), so the plan covers the sequence up to q.
MaskSpec decode_spec(const MaskSpec& mask, int64_t q_position) {
  MaskSpec m = mask;
  m.q_offset = q_position;
  m.k_offset = 0;
  m.seq_len = std::max(mask.seq_len, q_position + 1);
  return m;
}

}  // namespace

template <class T>
void attention_decode(const backend::AttentionDecodeParams& p) {
  check_params(p);
  const MaskSpec spec = decode_spec(*p.mask, p.q_position);
  const MaskPlan plan(spec, p.batch, 1, p.q_position + 1, "attention_decode");
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);
  const T* v = static_cast<const T*>(p.v);
  T* o = static_cast<T*>(p.o);
  const int64_t group = p.q_heads / p.kv_heads, D = p.head_dim, S = p.slots;
  const int64_t work = p.batch * p.q_heads * S * D;
  #pragma omp parallel if (work > kParallelGrain)
  {
    std::vector<double> score(static_cast<size_t>(S));
    std::vector<double> acc(static_cast<size_t>(D));
    #pragma omp for
    for (int64_t bh = 0; bh < p.batch * p.q_heads; ++bh) {
      const int64_t b = bh / p.q_heads, h = bh % p.q_heads, kvh = h / group;
      const T* qr = q + b * p.q_batch_stride + h * p.q_head_stride;
      const T* kb = k + b * p.k_batch_stride + kvh * p.k_head_stride;
      const T* vb = v + b * p.v_batch_stride + kvh * p.v_head_stride;
      double best = -std::numeric_limits<double>::infinity();
      for (int64_t s = 0; s < S; ++s) {
        const int64_t pos = p.key_positions[s];
        if (pos < 0 || pos > p.q_position || !plan.attends(b, p.q_position, pos)) {
          score[static_cast<size_t>(s)] = -std::numeric_limits<double>::infinity();
          continue;
        }
        const T* kr = kb + s * p.k_row_stride;
        double dot = 0;
        for (int64_t x = 0; x < D; ++x) dot += static_cast<double>(qr[x]) * static_cast<double>(kr[x]);
        score[static_cast<size_t>(s)] = dot * p.scale;
        best = std::max(best, score[static_cast<size_t>(s)]);
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      double total = 0;
      if (best > -std::numeric_limits<double>::infinity()) {
        for (int64_t s = 0; s < S; ++s) {
          const double sc = score[static_cast<size_t>(s)];
          if (sc == -std::numeric_limits<double>::infinity()) continue;
          const double w = std::exp(sc - best);
          total += w;
          const T* vr = vb + s * p.v_row_stride;
          for (int64_t x = 0; x < D; ++x) acc[static_cast<size_t>(x)] += w * static_cast<double>(vr[x]);
        }
      }
      T* orow = o + b * p.o_batch_stride + h * p.o_head_stride;
      const double inv = total > 0 ? 1.0 / total : 0.0;  // no attended key: zeros, as the tiled kernel
      for (int64_t x = 0; x < D; ++x) orow[x] = static_cast<T>(acc[static_cast<size_t>(x)] * inv);
    }
  }
}

template void attention_decode<float>(const backend::AttentionDecodeParams&);
template void attention_decode<double>(const backend::AttentionDecodeParams&);

void attention_decode_kernel(const backend::AttentionDecodeParams& p) {
  by_float("attention_decode", p.dtype, [&]<class T>() { attention_decode<T>(p); });
}

}  // namespace strand::cpu
