// Encoder: parameter names, the masked-token rule (fraction, determinism, at least one per row,
// mask id, targets), every bidirectional pattern and option trains, attention sees later tokens,
// float64 gradient checks, untrained loss ln V, and overfitting one batch.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "framework/core/error.h"
#include "framework/ops/view.h"
#include "models/encoder/encoder.h"
#include "model_testing.h"

namespace strand {
namespace {

using models::Encoder;
using testing::tiny_config;
using config::Arch;
using config::AttentionPattern;

TEST(Encoder, ParameterNames) {
  config::ModelConfig c = tiny_config(Arch::Encoder, 11, 8, 2, 5);
  Encoder enc(c, 1);
  const auto named = enc.named_parameters();
  ASSERT_EQ(named.size(), 2u + 2u * 12u + 2u);
  EXPECT_EQ(named[0].first, "encoder.wte.weight");
  EXPECT_EQ(named[0].second.shape(), (Shape{11, 8}));
  EXPECT_EQ(named[1].first, "encoder.wpe.weight");
  EXPECT_EQ(named[2].first, "encoder.h.0.ln_1.weight");
  EXPECT_EQ(named[4].first, "encoder.h.0.attn.c_attn.weight");
  EXPECT_EQ(named[4].second.shape(), (Shape{8, 24}));
  EXPECT_EQ(named[13].first, "encoder.h.0.mlp.c_proj.bias");
  EXPECT_EQ(named.back().first, "encoder.ln_f.bias");
  c.tie_embeddings = false;
  EXPECT_EQ(Encoder(c, 1).named_parameters().back().first, "lm_head.weight");
  EXPECT_EQ(enc.mask_token(), 10);
}

TEST(Encoder, MaskedTokenRule) {
  const int64_t V = 50, B = 8, T = 400;
  Encoder enc(tiny_config(Arch::Encoder, V, 8, 1, T), 21);
  const data::Batch batch = testing::random_batch(B, T, V, 22);
  const Tensor pos = Tensor::arange(T, DType::I32);
  const models::MaskedTokens m = enc.mask_tokens(batch.inputs, 5, pos);
  const auto in = batch.inputs.to_vector(), mi = m.inputs.to_vector(), mt = m.targets.to_vector();
  int64_t masked = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (mt[i] == data::kIgnoreIndex) {
      EXPECT_EQ(mi[i], in[i]) << i;  // unmasked positions keep their token and are not scored
    } else {
      ++masked;
      EXPECT_EQ(mi[i], V - 1) << i;  // the mask id
      EXPECT_EQ(mt[i], in[i]) << i;  // scored against the original token
    }
  }
  // Bernoulli(0.15) over N = 3200 positions: within 5 standard deviations of 0.15 N.
  const double n = static_cast<double>(B * T), sd = std::sqrt(n * 0.15 * 0.85);
  EXPECT_NEAR(static_cast<double>(masked), 0.15 * n, 5 * sd);

  // The same step masks the same positions; another step others.
  EXPECT_EQ(enc.mask_tokens(batch.inputs, 5, pos).targets.to_vector(), mt);
  EXPECT_NE(enc.mask_tokens(batch.inputs, 6, pos).targets.to_vector(), mt);
  // Global positions: a shard at positions 200..399 masks what the whole row masks there.
  const Tensor right = ops::contiguous(ops::slice(batch.inputs, 1, 200, 400));
  std::vector<double> p2;
  for (int64_t t = 200; t < 400; ++t) p2.push_back(double(t));
  const auto shard = enc.mask_tokens(right, 5, Tensor::from_vector(p2, {200}, DType::I32)).targets.to_vector();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < 200; ++t) ASSERT_EQ(shard[b * 200 + t], mt[b * T + 200 + t]) << b << " " << t;

  // Every row scores at least one position, even a row of two tokens.
  Encoder small(tiny_config(Arch::Encoder, V, 8, 1, 2), 23);
  for (int64_t step = 0; step < 50; ++step) {
    const auto t2 = small.mask_tokens(testing::random_batch(4, 2, V, 24).inputs, step, Tensor::arange(2, DType::I32))
                        .targets.to_vector();
    for (int64_t b = 0; b < 4; ++b)
      EXPECT_TRUE(t2[b * 2] != data::kIgnoreIndex || t2[b * 2 + 1] != data::kIgnoreIndex) << "step " << step;
  }
  // ... and a row split over two ranks (one token each) masks what the whole row masks, the
  // whole-row fallback included: the shards together score exactly the row's positions.
  for (int64_t step = 0; step < 50; ++step) {
    const Tensor rows = testing::random_batch(4, 2, V, 25).inputs;
    const auto whole = small.mask_tokens(rows, step, Tensor::arange(2, DType::I32)).targets.to_vector();
    for (int64_t half = 0; half < 2; ++half) {
      const Tensor part = ops::contiguous(ops::slice(rows, 1, half, half + 1));
      const auto got = small.mask_tokens(part, step, Tensor::from_vector({double(half)}, {1}, DType::I32), 2)
                           .targets.to_vector();
      for (int64_t b = 0; b < 4; ++b) ASSERT_EQ(got[b], whole[b * 2 + half]) << "step " << step << " row " << b;
    }
  }
}

TEST(Encoder, LossIsOverMaskedPositionsOnly) {
  const int64_t V = 11;
  Encoder enc(tiny_config(Arch::Encoder, V, 16, 2, 16), 25, DType::F64);
  const data::Batch batch = testing::random_batch(2, 16, V, 26, 3);
  autograd::NoGradGuard no_grad;
  const models::LossOutput out = enc.forward(batch);
  const models::MaskedTokens m = enc.mask_tokens(batch.inputs, 3, Tensor::arange(16, DType::I32));
  const auto logits = enc.logits(m.inputs).to_vector();
  const auto targets = m.targets.to_vector();
  double want = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < 32; ++r) {
    if (targets[r] == data::kIgnoreIndex) continue;
    double mx = -1e300, se = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, logits[r * V + j]);
    for (int64_t j = 0; j < V; ++j) se += std::exp(logits[r * V + j] - mx);
    want += mx + std::log(se) - logits[r * V + static_cast<int64_t>(targets[r])];
    ++count;
  }
  EXPECT_EQ(out.tokens, count);
  EXPECT_NEAR(out.loss_sum.item(), want, 1e-12 * want);
  EXPECT_FALSE(out.predictions.defined());
}

std::vector<std::pair<std::string, std::function<void(config::ModelConfig&)>>> encoder_options() {
  using C = config::ModelConfig;
  return {
      {"full", [](C&) {}},
      {"sliding", [](C& c) { c.attention.pattern = AttentionPattern::Sliding; c.attention.window = 3; }},
      {"dilated", [](C& c) { c.attention.pattern = AttentionPattern::Dilated; c.attention.window = 3; c.attention.dilation = 2; }},
      {"longformer", [](C& c) { c.attention.pattern = AttentionPattern::Longformer; c.attention.window = 2; c.attention.global_tokens = 2; }},
      {"bigbird", [](C& c) {
         c.attention.pattern = AttentionPattern::BigBird;
         c.attention.window = 2;
         c.attention.global_tokens = 1;
         c.attention.block_size = 4;
         c.attention.random_blocks = 1;
       }},
      {"linear", [](C& c) { c.attention.pattern = AttentionPattern::Linear; }},
      {"rope rmsnorm swiglu gqa untied dropout", [](C& c) {
         c.pos = config::PosEncoding::Rope;
         c.norm = config::NormKind::RMSNorm;
         c.activation = config::Activation::SwiGLU;
         c.n_head = 4;
         c.n_kv_head = 1;
         c.tie_embeddings = false;
         c.dropout = 0.1;
       }},
  };
}

TEST(Encoder, EveryPatternRunsForwardAndBackward) {
  const data::Batch batch = testing::random_batch(2, 16, 11, 27);
  for (const auto& [name, set] : encoder_options()) {
    config::ModelConfig c = tiny_config(Arch::Encoder, 11, 16, 2, 16);
    set(c);
    Encoder enc(c, 28);
    testing::expect_finite_loss_and_gradients(enc, batch, name);
  }
}

TEST(Encoder, AttentionIsBidirectional) {
  // Changing the last token moves the logits of the first position (full and linear patterns).
  for (AttentionPattern p : {AttentionPattern::Full, AttentionPattern::Linear}) {
    config::ModelConfig c = tiny_config(Arch::Encoder, 11, 16, 2, 16);
    c.attention.pattern = p;
    Encoder enc(c, 29, DType::F64);
    const data::Batch batch = testing::random_batch(1, 8, 11, 30);
    autograd::NoGradGuard no_grad;
    const auto base = enc.logits(batch.inputs).to_vector();
    Tensor changed = batch.inputs.copy_as(DType::I32, Device::cpu());
    changed.data<int32_t>()[7] = (changed.data<int32_t>()[7] + 1) % 10;
    const auto moved = enc.logits(changed).to_vector();
    double diff = 0;
    for (int64_t j = 0; j < 11; ++j) diff = std::max(diff, std::abs(moved[j] - base[j]));
    EXPECT_GT(diff, 1e-9) << config::name_of(p);
  }
}

TEST(Encoder, LossGradientsMatchFiniteDifferencesInFloat64) {
  const data::Batch batch = testing::random_batch(2, 5, 11, 31);
  for (AttentionPattern p : {AttentionPattern::Full, AttentionPattern::BigBird}) {
    config::ModelConfig c = tiny_config(Arch::Encoder, 11, 8, 2, 5);
    c.attention.pattern = p;
    c.attention.window = 1;
    c.attention.global_tokens = 1;
    c.attention.block_size = 2;
    c.attention.random_blocks = 1;
    Encoder enc(c, 32, DType::F64);
    testing::expect_loss_gradients_match(enc, batch, config::name_of(p));
  }
}

TEST(Encoder, UntrainedLossIsLogVocabAndOneBatchOverfits) {
  const int64_t V = 64;
  Encoder enc(tiny_config(Arch::Encoder, V, 32, 2, 32), 33);
  {
    autograd::NoGradGuard no_grad;
    const models::LossOutput out = enc.forward(testing::random_batch(8, 32, V, 34));
    // Bound as in Gpt.UntrainedLossIsLogVocab, with N the masked positions (~0.15 of 256).
    const double s = 0.02 * std::sqrt(32.0), own = 32 * 0.0004 / (0.02 * std::sqrt(2.0));
    const double tol = s * s / 2 + (std::exp(own) - 1) / V + 4 * s / std::sqrt(double(out.tokens));
    EXPECT_NEAR(out.loss_sum.item() / double(out.tokens), std::log(double(V)), tol);
  }
  Encoder small(tiny_config(Arch::Encoder, 16, 32, 2, 16), 35);
  const data::Batch batch = testing::random_batch(4, 16, 16, 36);
  const testing::OverfitResult r = testing::overfit(small, batch, 30, 1e-2);
  EXPECT_LT(r.last, 0.1 * r.first) << "from " << r.first << " to " << r.last;
}

}  // namespace
}  // namespace strand
