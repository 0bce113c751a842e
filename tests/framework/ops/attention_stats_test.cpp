// Attention entropy, mean distance and probabilities per query row, computed in key blocks from
// lse, against a direct float64 computation from the materialised scores, for causal, sliding
// window, GQA and offset masks, and with a row sample.
#include "framework/ops/attention_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "framework/ops/attention.h"

namespace strand {
namespace {

struct Direct {
  std::vector<double> entropy, distance, p;
};

// softmax rows of the masked scores in float64, then -sum p log p and sum p |i - j|.
Direct direct(const Tensor& q, const Tensor& k, const MaskSpec& mask) {
  const int64_t B = q.size(0), Hq = q.size(1), Nq = q.size(2), D = q.size(3), Hkv = k.size(1), Nk = k.size(2);
  const std::vector<double> qv = q.to_vector(), kv = k.to_vector(), m = ops::dense_mask(mask, B, Nq, Nk).to_vector();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const int64_t q0 = mask.q_offset, k0 = mask.k_offset;
  Direct d;
  d.entropy.assign(static_cast<size_t>(B * Hq * Nq), 0.0);
  d.distance = d.entropy;
  d.p.assign(static_cast<size_t>(B * Hq * Nq * Nk), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Nq; ++i) {
        std::vector<double> s(static_cast<size_t>(Nk), -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Nk; ++j) {
          if (m[static_cast<size_t>((b * Nq + i) * Nk + j)] == 0) continue;
          double dot = 0;
          for (int64_t x = 0; x < D; ++x)
            dot += qv[static_cast<size_t>(((b * Hq + h) * Nq + i) * D + x)] *
                   kv[static_cast<size_t>(((b * Hkv + h / (Hq / Hkv)) * Nk + j) * D + x)];
          s[static_cast<size_t>(j)] = scale * dot;
          mx = std::max(mx, scale * dot);
        }
        if (!std::isfinite(mx)) continue;
        double z = 0;
        for (double v : s) z += std::isfinite(v) ? std::exp(v - mx) : 0.0;
        const size_t row = static_cast<size_t>((b * Hq + h) * Nq + i);
        for (int64_t j = 0; j < Nk; ++j) {
          if (!std::isfinite(s[static_cast<size_t>(j)])) continue;
          const double p = std::exp(s[static_cast<size_t>(j)] - mx) / z;
          d.p[row * static_cast<size_t>(Nk) + static_cast<size_t>(j)] = p;
          if (p > 0) d.entropy[row] -= p * std::log(p);
          d.distance[row] += p * static_cast<double>(std::abs((q0 + i) - (k0 + j)));
        }
      }
  return d;
}

void expect_near_all(const std::vector<double>& got, const std::vector<double>& want, double tol,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << what << " element " << i;
}

struct Case {
  std::string name;
  MaskSpec mask;
  int64_t hq, hkv, nq, nk;
};

TEST(AttentionStats, EntropyDistanceAndProbabilitiesMatchTheMaterialisedReference) {
  MaskSpec offsets = MaskSpec::causal_mask();
  offsets.q_offset = 50;
  offsets.k_offset = 20;
  offsets.seq_len = 200;
  const std::vector<Case> cases = {{"causal", MaskSpec::causal_mask(), 2, 2, 70, 70},
                                   {"sliding w=9", MaskSpec::sliding(9), 2, 2, 70, 70},
                                   {"causal GQA 4/2", MaskSpec::causal_mask(), 4, 2, 45, 45},
                                   {"full, cross", MaskSpec{}, 2, 1, 30, 75},
                                   {"causal with offsets", offsets, 2, 2, 40, 70}};
  for (const Case& c : cases) {
    const Tensor q = Tensor::uniform({2, c.hq, c.nq, 16}, 1, -2.0, 2.0, DType::F64);
    const Tensor k = Tensor::uniform({2, c.hkv, c.nk, 16}, 2, -2.0, 2.0, DType::F64);
    const Tensor v = Tensor::uniform({2, c.hkv, c.nk, 16}, 3, -1.0, 1.0, DType::F64);
    const ops::AttentionOutput out = ops::attention(q, k, v, c.mask);
    std::vector<double> p;
    const ops::AttentionRowStats st = ops::attention_row_stats(q, k, out.lse, c.mask, 0.0, 1, &p, 16);
    const Direct d = direct(q, k, c.mask);
    expect_near_all(st.entropy, d.entropy, 1e-9, c.name + " entropy");
    expect_near_all(st.distance, d.distance, 1e-9 * static_cast<double>(c.nk), c.name + " distance");
    expect_near_all(p, d.p, 1e-12, c.name + " probabilities");
  }
}

TEST(AttentionStats, TheWindowBoundsTheDistanceAndARowSampleLeavesOtherRowsZero) {
  const Tensor q = Tensor::uniform({1, 2, 100, 8}, 4, -1.0, 1.0, DType::F32);
  const Tensor k = Tensor::uniform({1, 2, 100, 8}, 5, -1.0, 1.0, DType::F32);
  const MaskSpec window = MaskSpec::sliding(5);
  const ops::AttentionOutput out = ops::attention(q, k, k, window);
  const ops::AttentionRowStats st = ops::attention_row_stats(q, k, out.lse, window, 0.0, 3);
  for (size_t r = 0; r < st.distance.size(); ++r) {
    const int64_t i = static_cast<int64_t>(r) % 100;
    if (i % 3 != 0) {
      EXPECT_EQ(st.distance[r], 0.0);
      EXPECT_EQ(st.entropy[r], 0.0);
      continue;
    }
    EXPECT_LE(st.distance[r], 5.0 + 1e-5);
    // At most min(i, 5) + 1 keys: the entropy is at most log of their count.
    EXPECT_LE(st.entropy[r], std::log(static_cast<double>(std::min<int64_t>(i, 5) + 1)) + 1e-5);
  }
}

}  // namespace
}  // namespace strand
