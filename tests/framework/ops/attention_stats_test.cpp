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
#include "support/attention_probabilities.h"

namespace strand {
namespace {

struct Direct {
  std::vector<double> entropy, distance, p;
};

// softmax rows of the masked scores in float64, then -sum p log p and sum p |i - j|.
Direct direct(const Tensor& q, const Tensor& k, const MaskSpec& mask) {
  const int64_t B = q.size(0), Hq = q.size(1), Nq = q.size(2), Nk = k.size(2);
  const int64_t q0 = mask.q_offset, k0 = mask.k_offset;
  Direct d;
  d.p = testing::softmax_rows(q, k, ops::dense_mask(mask, B, Nq, Nk).to_vector());
  d.entropy.assign(static_cast<size_t>(B * Hq * Nq), 0.0);
  d.distance = d.entropy;
  for (int64_t row = 0; row < B * Hq * Nq; ++row) {
    const int64_t i = row % Nq;
    for (int64_t j = 0; j < Nk; ++j) {
      const double p = d.p[static_cast<size_t>(row * Nk + j)];
      if (p > 0) d.entropy[static_cast<size_t>(row)] -= p * std::log(p);
      d.distance[static_cast<size_t>(row)] += p * static_cast<double>(std::abs((q0 + i) - (k0 + j)));
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
