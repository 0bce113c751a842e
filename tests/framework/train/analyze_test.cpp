// Attention analysis: rollout equals its matrix-product definition; on a small random GPT the
// maps are the rows of softmax (each sums to 1, zero where masked), the per-head summaries are the
// row statistics' means, a sliding window bounds the distance, and the pictures have one panel
// per layer and head.
#include "framework/train/analyze.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "framework/core/error.h"
#include "tests/models/model_testing.h"

namespace strand {
namespace {

using Matrix = std::vector<double>;

Matrix matmul(const Matrix& a, const Matrix& b, int64_t n) {
  Matrix c(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < n; ++j) c[static_cast<size_t>(i * n + j)] += a[static_cast<size_t>(i * n + t)] * b[static_cast<size_t>(t * n + j)];
  return c;
}

TEST(Analyze, RolloutIsTheProductOfHalfAttentionPlusIdentityOverTheLayers) {
  const int64_t n = 5;
  std::vector<Matrix> layers;
  for (uint64_t l = 0; l < 3; ++l) {
    const std::vector<double> u = Tensor::uniform({n, n}, 10 + l, 0.0, 1.0, DType::F64).to_vector();
    Matrix a(u.begin(), u.end());
    for (int64_t i = 0; i < n; ++i) {  // rows of a stochastic matrix
      double sum = 0;
      for (int64_t j = 0; j < n; ++j) sum += a[static_cast<size_t>(i * n + j)];
      for (int64_t j = 0; j < n; ++j) a[static_cast<size_t>(i * n + j)] /= sum;
    }
    layers.push_back(a);
  }
  // R = B3 B2 B1 with B = (A + I) / 2.
  Matrix r(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) r[static_cast<size_t>(i * n + i)] = 1.0;
  for (const Matrix& a : layers) {
    Matrix b = a;
    for (double& x : b) x *= 0.5;
    for (int64_t i = 0; i < n; ++i) b[static_cast<size_t>(i * n + i)] += 0.5;
    r = matmul(b, r, n);
  }
  const Matrix got = train::attention_rollout(layers, n);
  ASSERT_EQ(got.size(), r.size());
  for (size_t i = 0; i < r.size(); ++i) EXPECT_NEAR(got[i], r[i], 1e-14) << i;
  for (int64_t i = 0; i < n; ++i) {  // still row-stochastic
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += got[static_cast<size_t>(i * n + j)];
    EXPECT_NEAR(sum, 1.0, 1e-12);
  }
}

std::unique_ptr<models::Gpt> random_gpt(const config::ModelConfig& c) {
  auto model = std::make_unique<models::Gpt>(c, 5, DType::F32);
  uint64_t s = 7;
  for (auto& [name, p] : model->named_parameters()) p.copy_from(Tensor::randn(p.shape(), ++s, DType::F32, 0.4));
  return model;
}

TEST(Analyze, MapsAreSoftmaxRowsAndSummariesAreRowMeans) {
  config::ModelConfig c = testing::tiny_config(config::Arch::Gpt, 23, 16, 3, 64);
  c.n_head = 4;
  c.n_kv_head = 2;
  c.pos = config::PosEncoding::Rope;
  c.attention.pattern = config::AttentionPattern::Sliding;
  c.attention.window = 4;
  auto model = random_gpt(c);
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < 40; ++i) ids.push_back((i * 7) % 23);
  const train::AttentionAnalysis a = train::analyze_attention(*model, ids, {});
  ASSERT_EQ(a.heads.size(), 3u);
  ASSERT_TRUE(a.has_maps());
  const int64_t n = 40;
  for (size_t l = 0; l < 3; ++l) {
    ASSERT_EQ(a.maps[l].size(), 4u);
    for (size_t h = 0; h < 4; ++h) {
      const Matrix& m = a.maps[l][h];
      double distance = 0;
      for (int64_t i = 0; i < n; ++i) {
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) {
          const double p = m[static_cast<size_t>(i * n + j)];
          if (j > i || j < i - 4) {
            EXPECT_EQ(p, 0.0) << "masked key " << j << " of row " << i;
          }
          sum += p;
          distance += p * static_cast<double>(i - j);
        }
        EXPECT_NEAR(sum, 1.0, 1e-6);  // lse comes from the float32 kernel
      }
      // The summary is the mean over rows of the same statistics the maps give.
      EXPECT_NEAR(a.heads[l][h].distance, distance / static_cast<double>(n), 1e-9);
      EXPECT_LE(a.heads[l][h].distance, 4.0);
      EXPECT_GE(a.heads[l][h].entropy, 0.0);
      EXPECT_LE(a.heads[l][h].entropy, std::log(5.0) + 1e-9);
    }
  }
  const io::Image view = train::head_view_image(a);
  EXPECT_GT(view.width(), 4 * 128);
  EXPECT_GT(view.height(), 3 * 128);
  const io::Image roll = train::heatmap_image(a.rollout, n, std::vector<std::string>(40, "x"), "rollout");
  EXPECT_GE(roll.width(), 400);
  // Past --map-tokens: statistics only.
  train::AnalyzeOptions sampled;
  sampled.row_stride = 2;
  sampled.map_tokens = 16;
  const train::AttentionAnalysis big = train::analyze_attention(*model, ids, sampled);
  EXPECT_FALSE(big.has_maps());
  EXPECT_EQ(big.rows, 20);
  EXPECT_THROW(train::head_view_image(big), ValueError);
}

}  // namespace
}  // namespace strand
