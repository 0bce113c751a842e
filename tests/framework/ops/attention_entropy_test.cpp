// Attention entropy per query row, from (q, k, the kernel's lse) in key blocks, against the
// float64 materialised reference (the whole N x N softmax of attention_reference's masked
// scores): mask patterns x {MHA, GQA, MQA} x key block sizes, float32 inputs, empty rows.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/attention_stats.h"

namespace strand {
namespace {

// -sum p log p of each row of the masked softmax of scale * q k^T, materialised.
std::vector<double> reference_entropy(const Tensor& q, const Tensor& k, const MaskSpec& mask) {
  const int64_t B = q.size(0), Hq = q.size(1), N = q.size(2), D = q.size(3), Hkv = k.size(1), M = k.size(2);
  const std::vector<double> qv = q.to_vector(), kv = k.to_vector();
  const std::vector<double> allowed = ops::dense_mask(mask, B, N, M).to_vector();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> out;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < N; ++i) {
        std::vector<double> s(static_cast<size_t>(M), -std::numeric_limits<double>::infinity());
        double top = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < M; ++j) {
          if (allowed[static_cast<size_t>((b * N + i) * M + j)] == 0) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += qv[static_cast<size_t>(((b * Hq + h) * N + i) * D + d)] *
                   kv[static_cast<size_t>(((b * Hkv + h / (Hq / Hkv)) * M + j) * D + d)];
          s[static_cast<size_t>(j)] = scale * dot;
          top = std::max(top, scale * dot);
        }
        if (!std::isfinite(top)) {
          out.push_back(0.0);
          continue;
        }
        double z = 0;
        for (double v : s) z += std::isfinite(v) ? std::exp(v - top) : 0.0;
        double entropy = 0;
        for (double v : s) {
          if (!std::isfinite(v)) continue;
          const double p = std::exp(v - top) / z;
          if (p > 0) entropy -= p * std::log(p);
        }
        out.push_back(entropy);
      }
  return out;
}

TEST(AttentionEntropy, MatchesTheMaterialisedFloat64Reference) {
  MaskSpec sliding = MaskSpec::sliding(4, 0);
  sliding.causal = true;
  MaskSpec longformer = MaskSpec::sliding(3, 3);
  longformer.kind = MaskKind::Longformer;
  longformer.global_tokens = {0, 5};
  const std::vector<MaskSpec> masks = {MaskSpec{}, MaskSpec::causal_mask(), sliding, longformer};
  for (const auto& [hq, hkv] : std::vector<std::pair<int64_t, int64_t>>{{2, 2}, {4, 2}, {3, 1}})
    for (size_t m = 0; m < masks.size(); ++m) {
      const int64_t B = 2, N = 37, D = 8;
      const Tensor q = Tensor::randn({B, hq, N, D}, 11 + m, DType::F64);
      const Tensor k = Tensor::randn({B, hkv, N, D}, 23 + m, DType::F64);
      const Tensor v = Tensor::randn({B, hkv, N, D}, 31 + m, DType::F64);
      const Tensor lse = ops::attention(q, k, v, masks[m]).lse;
      const std::vector<double> want = reference_entropy(q, k, masks[m]);
      for (int64_t block : {1, 5, 16, 64}) {
        const std::vector<double> got = ops::attention_entropy(q, k, lse, masks[m], 0.0, block).to_vector();
        ASSERT_EQ(got.size(), want.size());
        double worst = 0;
        for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
        EXPECT_LT(worst, 1e-12) << "Hq " << hq << " Hkv " << hkv << " mask " << m << " block " << block;
      }
      // Entropy lies in [0, log(keys seen)]: the first causal row sees one key.
      const std::vector<double> got = ops::attention_entropy(q, k, lse, masks[m]).to_vector();
      if (m == 1) EXPECT_NEAR(got[0], 0.0, 1e-14);
      for (double h : got) EXPECT_LE(h, std::log(static_cast<double>(N)) + 1e-12);
    }
}

TEST(AttentionEntropy, Float32InputsAndRowsThatSeeNoKey) {
  const int64_t B = 1, H = 2, N = 20, D = 4;
  const Tensor q = Tensor::randn({B, H, N, D}, 3, DType::F32);
  const Tensor k = Tensor::randn({B, H, N, D}, 4, DType::F32);
  const Tensor v = Tensor::randn({B, H, N, D}, 5, DType::F32);
  MaskSpec padded;
  padded.key_lengths = {0};  // every key is padding: lse = -inf on every row
  const Tensor lse = ops::attention(q, k, v, padded).lse;
  const Tensor h = ops::attention_entropy(q, k, lse, padded);
  EXPECT_EQ(h.dtype(), DType::F32);
  for (double e : h.to_vector()) EXPECT_EQ(e, 0.0);
  // float32: within float32 rounding of the float64 reference.
  const Tensor lse32 = ops::attention(q, k, v, MaskSpec::causal_mask()).lse;
  const std::vector<double> got = ops::attention_entropy(q, k, lse32, MaskSpec::causal_mask()).to_vector();
  const std::vector<double> want = reference_entropy(q, k, MaskSpec::causal_mask());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;
  EXPECT_THROW(ops::attention_entropy(q, k, Tensor::zeros({B, H, N + 1}), MaskSpec{}), ShapeError);
}

}  // namespace
}  // namespace strand
