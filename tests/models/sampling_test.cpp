// Token sampling: the same seed gives the same tokens, top-k = 1 is greedy, top-k and top-p keep
// exactly the tokens they promise on a crafted distribution, temperature sharpens, and options
// out of range are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "framework/core/error.h"
#include "models/sampling.h"

namespace strand {
namespace {

using models::SamplingOptions;

// Probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 at ids 2, 0, 4, 1, 3 (logits are their logs).
std::vector<double> crafted_logits() {
  return {std::log(0.25), std::log(0.0625), std::log(0.5), std::log(0.0625), std::log(0.125)};
}

std::vector<int32_t> draws(const std::vector<double>& logits, const SamplingOptions& o, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(models::sample_token(logits, o, static_cast<uint64_t>(i)));
  return out;
}

TEST(Sampling, SameSeedSameTokensAndAnotherSeedOthers) {
  const SamplingOptions a{1.0, 0, 1.0, 17}, b{1.0, 0, 1.0, 18};
  EXPECT_EQ(draws(crafted_logits(), a, 200), draws(crafted_logits(), a, 200));
  EXPECT_NE(draws(crafted_logits(), a, 200), draws(crafted_logits(), b, 200));
  // Every token of the full distribution turns up in 200 draws.
  const auto d = draws(crafted_logits(), a, 200);
  EXPECT_EQ(std::set<int32_t>(d.begin(), d.end()).size(), 5u);
}

TEST(Sampling, TopKOfOneIsGreedyAndGreedyTakesTheFirstMaximum) {
  const std::vector<double> logits = {0.5, 2.0, -1.0, 2.0, 1.0};  // a tie at ids 1 and 3
  const SamplingOptions greedy{0.0, 0, 1.0, 3}, top1{1.5, 1, 1.0, 3};
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(models::sample_token(logits, greedy, static_cast<uint64_t>(i)), 1);
    EXPECT_EQ(models::sample_token(logits, top1, static_cast<uint64_t>(i)), 1);
  }
}

TEST(Sampling, TopPKeepsTheNucleusAndTopKTheHighest) {
  // top_p 0.7: 0.5 < 0.7 <= 0.75, so the nucleus is ids {2, 0}, renormalised to 2/3, 1/3.
  const models::Candidates nucleus = models::sampling_candidates(crafted_logits(), {1.0, 0, 0.7, 1});
  EXPECT_EQ(nucleus.ids, (std::vector<int32_t>{2, 0}));
  ASSERT_EQ(nucleus.probs.size(), 2u);
  EXPECT_NEAR(nucleus.probs[0], 2.0 / 3.0, 1e-12);
  const auto d = draws(crafted_logits(), {1.0, 0, 0.7, 5}, 400);
  EXPECT_EQ(std::set<int32_t>(d.begin(), d.end()), (std::set<int32_t>{0, 2}));
  // top_p 0.5 exactly: the first token alone reaches it.
  EXPECT_EQ(models::sampling_candidates(crafted_logits(), {1.0, 0, 0.5, 1}).ids, (std::vector<int32_t>{2}));
  // top_k 3: ids 2, 0, 4.
  EXPECT_EQ(models::sampling_candidates(crafted_logits(), {1.0, 3, 1.0, 1}).ids, (std::vector<int32_t>{2, 0, 4}));
  const auto k3 = draws(crafted_logits(), {1.0, 3, 1.0, 5}, 400);
  EXPECT_EQ(std::set<int32_t>(k3.begin(), k3.end()), (std::set<int32_t>{0, 2, 4}));
}

TEST(Sampling, TemperatureSharpensTheDistribution) {
  // At temperature 0.5 the probabilities go as p^2: 0.25 / (0.25 + 0.0625 + ...) for id 2.
  const models::Candidates c = models::sampling_candidates(crafted_logits(), {0.5, 0, 1.0, 1});
  double z = 0;
  for (double p : {0.5, 0.25, 0.125, 0.0625, 0.0625}) z += p * p;
  EXPECT_EQ(c.ids.front(), 2);
  EXPECT_NEAR(c.probs.front(), 0.25 / z, 1e-12);
}

TEST(Sampling, RefusesOptionsOutOfRange) {
  const auto logits = crafted_logits();
  EXPECT_THROW(models::sample_token(logits, {-0.1, 0, 1.0, 0}, 0), ValueError);
  EXPECT_THROW(models::sample_token(logits, {1.0, -1, 1.0, 0}, 0), ValueError);
  EXPECT_THROW(models::sample_token(logits, {1.0, 0, 0.0, 0}, 0), ValueError);
  EXPECT_THROW(models::sample_token(logits, {1.0, 0, 1.5, 0}, 0), ValueError);
}

}  // namespace
}  // namespace strand
