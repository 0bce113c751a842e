// Attention entropy, mean distance and (small inputs) probabilities per query row, in key blocks
// (attention_stats.h).
#include "framework/ops/attention_stats.h"

#include <algorithm>
#include <cmath>

#include "framework/autograd/grad_mode.h"
#include "framework/backend/attention_mask.h"
#include "framework/core/error.h"
#include "framework/ops/attention_rows.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {

AttentionRowStats attention_row_stats(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask,
                                      double scale, int64_t row_stride, std::vector<double>* probabilities,
                                      int64_t block) {
  autograd::NoGradGuard no_grad;
  const char* op = "attention_row_stats";
  STRAND_CHECK(q.defined() && k.defined() && lse.defined() && q.dim() == 4 && k.dim() == 4 && lse.dim() == 3,
               ShapeError, op, ": q [B, Hq, Nq, D], k [B, Hkv, Nk, D] and lse [B, Hq, Nq] expected");
  const int64_t B = q.size(0), Hq = q.size(1), Nq = q.size(2), D = q.size(3), Hkv = k.size(1), Nk = k.size(2);
  STRAND_CHECK(k.size(0) == B && k.size(3) == D && Hkv > 0 && Hq % Hkv == 0 && lse.size(0) == B &&
                   lse.size(1) == Hq && lse.size(2) == Nq,
               ShapeError, op, ": q ", describe(q), ", k ", describe(k), " and lse ", describe(lse),
               " do not fit together");
  STRAND_CHECK(block >= 1 && row_stride >= 1, ValueError, op, ": key block ", block, " and row stride ", row_stride,
               " must be >= 1");
  const double s = attention_scale(scale, D);
  const std::vector<double> qv = contiguous_data(q).to_vector(), kv = contiguous_data(k).to_vector(),
                            lv = contiguous_data(lse).to_vector();
  const MaskPlan plan(mask, B, Nq, Nk, op);
  const int64_t group = Hq / Hkv;
  AttentionRowStats out;
  out.entropy.assign(static_cast<size_t>(B * Hq * Nq), 0.0);
  out.distance.assign(out.entropy.size(), 0.0);
  if (probabilities) probabilities->assign(static_cast<size_t>(B * Hq * Nq * Nk), 0.0);
  #pragma omp parallel for schedule(dynamic) collapse(2)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      std::vector<double> scores(static_cast<size_t>(block));
      const double* kh = kv.data() + (b * Hkv + h / group) * Nk * D;
      for (int64_t i = 0; i < Nq; i += row_stride) {
        const size_t row = static_cast<size_t>((b * Hq + h) * Nq + i);
        const double l = lv[row];
        if (!std::isfinite(l)) continue;  // no key visible
        const double* qi = qv.data() + static_cast<int64_t>(row) * D;
        const int64_t qpos = plan.q_offset() + i;
        double expected_score = 0.0, distance = 0.0;
        for (int64_t k0 = 0; k0 < Nk; k0 += block) {
          const int64_t k1 = std::min(Nk, k0 + block);
          if (!detail::row_block_scores(plan, b, qpos, qi, kh, D, s, k0, k1, scores.data())) continue;
          for (int64_t j = k0; j < k1; ++j) {
            const double sc = scores[static_cast<size_t>(j - k0)];
            if (!std::isfinite(sc)) continue;
            const double p = std::exp(sc - l);
            expected_score += p * sc;
            distance += p * static_cast<double>(std::abs(qpos - (plan.k_offset() + j)));
            if (probabilities) (*probabilities)[row * static_cast<size_t>(Nk) + static_cast<size_t>(j)] = p;
          }
        }
        out.entropy[row] = l - expected_score;
        out.distance[row] = distance;
      }
    }
  return out;
}

Tensor attention_entropy(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask, double scale,
                         int64_t block) {
  const AttentionRowStats st = attention_row_stats(q, k, lse, mask, scale, 1, nullptr, block);
  return Tensor::from_vector(st.entropy, {q.size(0), q.size(1), q.size(2)}, lse.dtype());
}

}  // namespace strand::ops
