// Attention entropy per query row from (q, k, lse), in key blocks (attention_entropy.h).
#include "framework/ops/attention_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "framework/autograd/grad_mode.h"
#include "framework/backend/attention_mask.h"
#include "framework/core/error.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {

Tensor attention_entropy(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask, double scale,
                         int64_t block) {
  autograd::NoGradGuard no_grad;
  STRAND_CHECK(q.defined() && k.defined() && lse.defined() && q.dim() == 4 && k.dim() == 4 && lse.dim() == 3,
               ShapeError, "attention_entropy: q [B, Hq, Nq, D], k [B, Hkv, Nk, D] and lse [B, Hq, Nq] expected");
  const int64_t B = q.size(0), Hq = q.size(1), Nq = q.size(2), D = q.size(3), Hkv = k.size(1), Nk = k.size(2);
  STRAND_CHECK(k.size(0) == B && k.size(3) == D && Hkv > 0 && Hq % Hkv == 0 && lse.size(0) == B &&
                   lse.size(1) == Hq && lse.size(2) == Nq,
               ShapeError, "attention_entropy: q ", describe(q), ", k ", describe(k), " and lse ", describe(lse),
               " do not fit together");
  STRAND_CHECK(block >= 1, ValueError, "attention_entropy: key block must be >= 1, got ", block);
  const double s = scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(D));
  // float64 work copies (contiguous [B, H, N, D]); the result goes back to lse's dtype.
  const std::vector<double> qv = contiguous_data(q).to_vector(), kv = contiguous_data(k).to_vector(),
                            lv = contiguous_data(lse).to_vector();
  const MaskPlan plan(mask, B, Nq, Nk, "attention_entropy");
  const int64_t group = Hq / Hkv;
  std::vector<double> out(static_cast<size_t>(B * Hq * Nq), 0.0);
  std::vector<double> scores(static_cast<size_t>(block));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const double* kh = kv.data() + (b * Hkv + h / group) * Nk * D;
      for (int64_t i = 0; i < Nq; ++i) {
        const size_t row = static_cast<size_t>((b * Hq + h) * Nq + i);
        const double l = lv[row];
        if (!std::isfinite(l)) continue;  // no key visible: entropy 0
        const double* qi = qv.data() + static_cast<int64_t>(row) * D;
        const int64_t qpos = plan.q_offset() + i;
        double expected_score = 0.0;  // sum_j p_ij s_ij
        for (int64_t k0 = 0; k0 < Nk; k0 += block) {
          const int64_t k1 = std::min(Nk, k0 + block);
          const TileClass tile = plan.classify(b, qpos, qpos + 1, plan.k_offset() + k0, plan.k_offset() + k1);
          if (tile == TileClass::Empty) continue;
          for (int64_t j = k0; j < k1; ++j) {
            if (tile != TileClass::Full && !plan.attends(b, qpos, plan.k_offset() + j)) {
              scores[static_cast<size_t>(j - k0)] = -std::numeric_limits<double>::infinity();
              continue;
            }
            const double* kj = kh + j * D;
            double dot = 0.0;
            for (int64_t d = 0; d < D; ++d) dot += qi[d] * kj[d];
            scores[static_cast<size_t>(j - k0)] = s * dot;
          }
          for (int64_t j = k0; j < k1; ++j) {
            const double sc = scores[static_cast<size_t>(j - k0)];
            if (std::isfinite(sc)) expected_score += std::exp(sc - l) * sc;
          }
        }
        out[row] = l - expected_score;
      }
    }
  return Tensor::from_vector(out, {B, Hq, Nq}, lse.dtype());
}

}  // namespace strand::ops
