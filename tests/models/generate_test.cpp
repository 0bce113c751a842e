// Generation with the KV cache gives exactly the tokens (and, within rounding, the logits) of
// generation that recomputes the whole sequence for every token: causal, sliding window past its
// reach (the ring wraps) with rope, dilated, GQA and MQA; the caches hold n_kv_head heads and a
// window's ring stays the same size however long the sequence; patterns without a cached form
// and learned positions past the table are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "models/gpt/decoder.h"
#include "support/tolerance.h"
#include "tests/models/model_testing.h"

namespace strand {
namespace {

using config::AttentionPattern;
using config::PosEncoding;

// A small GPT whose weights are redrawn with a larger spread than GPT-2's 0.02, so that its
// logits are far from uniform and greedy picks are not decided by rounding.
std::unique_ptr<models::Gpt> random_gpt(const config::ModelConfig& c, DType dtype, uint64_t seed) {
  auto model = std::make_unique<models::Gpt>(c, seed, dtype);
  uint64_t s = seed;
  for (auto& [name, p] : model->named_parameters()) p.copy_from(Tensor::randn(p.shape(), ++s, dtype, 0.4));
  return model;
}

config::ModelConfig gpt_config(PosEncoding pos, AttentionPattern pattern, int64_t n_head, int64_t n_kv_head) {
  config::ModelConfig c = testing::tiny_config(config::Arch::Gpt, 23, 16, 2, 64);
  c.pos = pos;
  c.n_head = n_head;
  c.n_kv_head = n_kv_head;
  c.attention.pattern = pattern;
  c.attention.window = 5;
  c.attention.dilation = 2;
  return c;
}

const std::vector<int32_t> kPrompt = {3, 14, 15, 9, 2, 6, 5};

void expect_cache_equals_recompute(const config::ModelConfig& c, DType dtype, int64_t new_tokens,
                                   const std::string& label) {
  auto model = random_gpt(c, dtype, 41);
  models::GenerateOptions o;
  o.max_new_tokens = new_tokens;
  o.sampling.temperature = 0;
  o.use_cache = false;
  const std::vector<int32_t> reference = models::generate(*model, kPrompt, o);
  o.use_cache = true;
  const std::vector<int32_t> cached = models::generate(*model, kPrompt, o);
  EXPECT_EQ(cached, reference) << label;
  // Sampled at temperature 1 under one seed, the two paths draw the same tokens too (a stream
  // that visits many tokens, where greedy on random weights soon repeats one).
  o.sampling = {1.0, 0, 1.0, 99};
  const std::vector<int32_t> sampled = models::generate(*model, kPrompt, o);
  o.use_cache = false;
  EXPECT_EQ(sampled, models::generate(*model, kPrompt, o)) << label << " sampled";
  EXPECT_GE(std::set<int32_t>(sampled.begin(), sampled.end()).size(), 5u) << label;

  // Teacher-forced on a fixed token stream, every step's logits agree within the rounding of
  // the two attention paths (1e3 roundings of the largest logit).
  const int64_t T = static_cast<int64_t>(kPrompt.size());
  models::GptDecoder decoder(*model, 1, T + new_tokens);
  std::vector<int32_t> seq = kPrompt;
  const auto ids = [](const std::vector<int32_t>& v) {
    return Tensor::from_vector(std::vector<double>(v.begin(), v.end()), {1, static_cast<int64_t>(v.size())},
                               DType::I32);
  };
  Tensor got = decoder.prefill(ids(seq));
  const double eps = testing::dtype_eps(dtype);
  for (int64_t i = 0; i < new_tokens; ++i) {
    const std::vector<double> g = got.to_vector(), r = models::recompute_last_logits(*model, ids(seq)).to_vector();
    ASSERT_EQ(g.size(), r.size());
    double mx = 0;
    for (double x : r) mx = std::max(mx, std::abs(x));
    for (size_t j = 0; j < r.size(); ++j)
      ASSERT_LE(std::abs(g[j] - r[j]), 1e3 * eps * mx) << label << " step " << i << " logit " << j;
    seq.push_back(static_cast<int32_t>((7 * i + 3) % c.vocab_size));
    if (i + 1 < new_tokens) got = decoder.step(ids({seq.back()}));
  }
}

TEST(Generate, CachedGreedyEqualsRecomputingForCausalModels) {
  expect_cache_equals_recompute(gpt_config(PosEncoding::Learned, AttentionPattern::Causal, 2, 2), DType::F64, 40,
                                "causal learned float64");
  expect_cache_equals_recompute(gpt_config(PosEncoding::Learned, AttentionPattern::Causal, 2, 2), DType::F32, 40,
                                "causal learned float32");
  expect_cache_equals_recompute(gpt_config(PosEncoding::Rope, AttentionPattern::Causal, 2, 2), DType::F64, 40,
                                "causal rope float64");
}

TEST(Generate, CachedGreedyEqualsRecomputingPastTheSlidingWindowWithRope) {
  // Window 5: a ring of 5 slots, wrapped 9 times by the 7 + 40 positions.
  expect_cache_equals_recompute(gpt_config(PosEncoding::Rope, AttentionPattern::Sliding, 2, 2), DType::F64, 40,
                                "sliding rope float64");
  expect_cache_equals_recompute(gpt_config(PosEncoding::Rope, AttentionPattern::Sliding, 4, 1), DType::F32, 40,
                                "sliding rope MQA float32");
  expect_cache_equals_recompute(gpt_config(PosEncoding::Learned, AttentionPattern::Sliding, 2, 2), DType::F64, 40,
                                "sliding learned float64");
  // Dilated window 5, dilation 2: keys q, q-2, ..., q-8, a ring of 9 slots.
  expect_cache_equals_recompute(gpt_config(PosEncoding::Rope, AttentionPattern::Dilated, 2, 2), DType::F64, 40,
                                "dilated rope float64");
}

TEST(Generate, CachedGreedyEqualsRecomputingForGqaModels) {
  expect_cache_equals_recompute(gpt_config(PosEncoding::Rope, AttentionPattern::Causal, 4, 2), DType::F64, 30,
                                "causal GQA 4/2 float64");
  expect_cache_equals_recompute(gpt_config(PosEncoding::Learned, AttentionPattern::Causal, 4, 1), DType::F32, 30,
                                "causal MQA 4/1 float32");
}

TEST(Generate, CachesHoldKvHeadsAndAWindowRingStaysTheSameSize) {
  const auto bytes = [](const config::ModelConfig& c, int64_t positions) {
    auto model = random_gpt(c, DType::F32, 3);
    return models::GptDecoder(*model, 1, positions).cache_bytes();
  };
  // GQA 4/2, head dim 4, 2 layers, k and v: 2 * 2 * (2 heads * 100 slots * 4) floats.
  EXPECT_EQ(bytes(gpt_config(PosEncoding::Rope, AttentionPattern::Causal, 4, 2), 100), 2 * 2 * 2 * 100 * 4 * 4);
  // Sliding window 5: 5 slots whatever the length.
  const auto sliding = gpt_config(PosEncoding::Rope, AttentionPattern::Sliding, 4, 2);
  EXPECT_EQ(bytes(sliding, 100000), 2 * 2 * 2 * 5 * 4 * 4);
  EXPECT_EQ(bytes(sliding, 100000), bytes(sliding, 50));
}

TEST(Generate, RefusesPatternsWithoutACachedFormAndLearnedPositionsPastTheTable) {
  auto expect_refused = [](const config::ModelConfig& c, int64_t new_tokens, const std::string& needle) {
    auto model = random_gpt(c, DType::F32, 5);
    models::GenerateOptions o;
    o.max_new_tokens = new_tokens;
    try {
      models::generate(*model, kPrompt, o);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_refused(gpt_config(PosEncoding::Rope, AttentionPattern::Longformer, 2, 2), 4, "longformer");
  expect_refused(gpt_config(PosEncoding::Rope, AttentionPattern::BigBird, 2, 2), 4, "bigbird");
  expect_refused(gpt_config(PosEncoding::Rope, AttentionPattern::Linear, 2, 2), 4, "linear");
  // 7 + 58 = 65 positions against a table of 64.
  expect_refused(gpt_config(PosEncoding::Learned, AttentionPattern::Causal, 2, 2), 58, "max_seq_len = 64");
}

}  // namespace
}  // namespace strand
