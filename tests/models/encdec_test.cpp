// Encoder-decoder: parameter names (Hugging Face cross-attention layout), the row convention
// (source half to the encoder, decoder scored on the second half), causal decoder and
// cross-attention reading the source, every pattern trains, float64 gradient checks, and
// learning the synthetic copy task's batch.
#include <gtest/gtest.h>

#include <cmath>

#include "framework/core/error.h"
#include "framework/ops/view.h"
#include "models/encdec/encdec.h"
#include "model_testing.h"

namespace strand {
namespace {

using models::EncDec;
using testing::tiny_config;
using config::Arch;
using config::AttentionPattern;

TEST(EncDec, ParameterNames) {
  config::ModelConfig c = tiny_config(Arch::EncDec, 11, 8, 1, 5);
  c.n_kv_head = 1;
  EncDec m(c, 1);
  const auto named = m.named_parameters();
  std::vector<std::string> names;
  for (const auto& [n, _] : named) names.push_back(n);
  const std::vector<std::string> want = {
      "encoder.wte.weight", "encoder.wpe.weight", "encoder.h.0.ln_1.weight", "encoder.h.0.ln_1.bias",
      "encoder.h.0.attn.c_attn.weight", "encoder.h.0.attn.c_attn.bias", "encoder.h.0.attn.c_proj.weight",
      "encoder.h.0.attn.c_proj.bias", "encoder.h.0.ln_2.weight", "encoder.h.0.ln_2.bias",
      "encoder.h.0.mlp.c_fc.weight", "encoder.h.0.mlp.c_fc.bias", "encoder.h.0.mlp.c_proj.weight",
      "encoder.h.0.mlp.c_proj.bias", "encoder.ln_f.weight", "encoder.ln_f.bias", "decoder.wpe.weight",
      "decoder.h.0.ln_1.weight", "decoder.h.0.ln_1.bias", "decoder.h.0.attn.c_attn.weight",
      "decoder.h.0.attn.c_attn.bias", "decoder.h.0.attn.c_proj.weight", "decoder.h.0.attn.c_proj.bias",
      "decoder.h.0.ln_2.weight", "decoder.h.0.ln_2.bias", "decoder.h.0.crossattention.q_attn.weight",
      "decoder.h.0.crossattention.q_attn.bias", "decoder.h.0.crossattention.c_attn.weight",
      "decoder.h.0.crossattention.c_attn.bias", "decoder.h.0.crossattention.c_proj.weight",
      "decoder.h.0.crossattention.c_proj.bias", "decoder.h.0.ln_cross_attn.weight",
      "decoder.h.0.ln_cross_attn.bias", "decoder.h.0.mlp.c_fc.weight", "decoder.h.0.mlp.c_fc.bias",
      "decoder.h.0.mlp.c_proj.weight", "decoder.h.0.mlp.c_proj.bias", "decoder.ln_f.weight", "decoder.ln_f.bias"};
  EXPECT_EQ(names, want);
  EXPECT_EQ(m.parameter("decoder.h.0.crossattention.q_attn.weight").shape(), (Shape{8, 8}));
  EXPECT_EQ(m.parameter("decoder.h.0.crossattention.c_attn.weight").shape(), (Shape{8, 2 * 4}));
  EXPECT_EQ(m.parameter("decoder.h.0.attn.c_attn.weight").shape(), (Shape{8, (2 + 2) * 4}));
}

TEST(EncDec, RowSplitsIntoSourceAndTarget) {
  const int64_t V = 11, B = 2, T = 9, S = T / 2;
  EncDec m(tiny_config(Arch::EncDec, V, 16, 2, 16), 41, DType::F64);
  data::Batch batch = testing::random_batch(B, T, V, 42);
  batch.targets.data<int32_t>()[S + 1] = data::kIgnoreIndex;
  autograd::NoGradGuard no_grad;
  const models::LossOutput out = m.forward(batch);
  EXPECT_EQ(out.tokens, B * (T - S) - 1);
  ASSERT_EQ(out.predictions.shape(), (Shape{B, T}));
  const auto pred = out.predictions.to_vector();
  const Tensor src = ops::contiguous(ops::slice(batch.inputs, 1, 0, S));
  const Tensor dec = ops::contiguous(ops::slice(batch.inputs, 1, S, T));
  const auto logits = m.logits(src, dec).to_vector();
  const auto targets = batch.targets.to_vector();
  double want = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < S; ++t) EXPECT_EQ(pred[b * T + t], -1);  // source positions predict nothing
    for (int64_t j = 0; j < T - S; ++j) {
      const double* row = logits.data() + (b * (T - S) + j) * V;
      int64_t best = 0;
      double mx = row[0], se = 0;
      for (int64_t v = 0; v < V; ++v) {
        if (row[v] > row[best]) best = v;
        mx = std::max(mx, row[v]);
      }
      EXPECT_EQ(pred[b * T + S + j], best);
      for (int64_t v = 0; v < V; ++v) se += std::exp(row[v] - mx);
      const double target = targets[b * T + S + j];
      if (target != data::kIgnoreIndex) want += mx + std::log(se) - row[static_cast<int64_t>(target)];
    }
  }
  EXPECT_NEAR(out.loss_sum.item(), want, 1e-12 * want);
}

TEST(EncDec, DecoderIsCausalAndReadsTheWholeSource) {
  const int64_t V = 11;
  for (AttentionPattern p : {AttentionPattern::Causal, AttentionPattern::Longformer, AttentionPattern::BigBird,
                             AttentionPattern::Linear}) {
    config::ModelConfig c = tiny_config(Arch::EncDec, V, 16, 2, 16);
    c.attention.pattern = p;
    c.attention.global_tokens = 1;
    c.attention.block_size = 2;
    c.attention.random_blocks = 1;
    EncDec m(c, 43, DType::F64);
    const data::Batch batch = testing::random_batch(1, 12, V, 44);
    const Tensor src = ops::contiguous(ops::slice(batch.inputs, 1, 0, 6));
    const Tensor dec = ops::contiguous(ops::slice(batch.inputs, 1, 6, 12));
    autograd::NoGradGuard no_grad;
    const auto base = m.logits(src, dec).to_vector();
    // A later decoder token never moves earlier decoder logits.
    Tensor dec2 = dec.copy_as(DType::I32, Device::cpu());
    dec2.data<int32_t>()[4] = (dec2.data<int32_t>()[4] + 1) % 10;
    const auto after = m.logits(src, dec2).to_vector();
    for (int64_t i = 0; i < 4 * V; ++i) {
      const double tol = p == AttentionPattern::Linear ? 1e-12 * (1 + std::abs(base[i])) : 0.0;
      ASSERT_NEAR(after[i], base[i], tol) << config::name_of(p) << " logit " << i;
    }
    // The last source token reaches the first decoder position through cross-attention.
    Tensor src2 = src.copy_as(DType::I32, Device::cpu());
    src2.data<int32_t>()[5] = (src2.data<int32_t>()[5] + 1) % 10;
    const auto crossed = m.logits(src2, dec).to_vector();
    double moved = 0;
    for (int64_t v = 0; v < V; ++v) moved = std::max(moved, std::abs(crossed[v] - base[v]));
    EXPECT_GT(moved, 1e-9) << config::name_of(p);
  }
}

TEST(EncDec, EveryPatternRunsForwardAndBackward) {
  using C = config::ModelConfig;
  const std::vector<std::pair<std::string, std::function<void(C&)>>> options = {
      {"causal", [](C&) {}},
      {"sliding", [](C& c) { c.attention.pattern = AttentionPattern::Sliding; c.attention.window = 3; }},
      {"dilated", [](C& c) { c.attention.pattern = AttentionPattern::Dilated; c.attention.window = 2; c.attention.dilation = 2; }},
      {"longformer", [](C& c) { c.attention.pattern = AttentionPattern::Longformer; c.attention.window = 2; c.attention.global_tokens = 2; }},
      {"bigbird", [](C& c) {
         c.attention.pattern = AttentionPattern::BigBird;
         c.attention.window = 2;
         c.attention.global_tokens = 1;
         c.attention.block_size = 2;
         c.attention.random_blocks = 1;
       }},
      {"linear", [](C& c) { c.attention.pattern = AttentionPattern::Linear; }},
      {"rope rmsnorm swiglu gqa untied dropout", [](C& c) {
         c.pos = config::PosEncoding::Rope;
         c.norm = config::NormKind::RMSNorm;
         c.activation = config::Activation::SwiGLU;
         c.n_head = 4;
         c.n_kv_head = 2;
         c.tie_embeddings = false;
         c.dropout = 0.1;
       }},
  };
  const data::Batch batch = testing::random_batch(2, 16, 11, 45);
  for (const auto& [name, set] : options) {
    config::ModelConfig c = tiny_config(Arch::EncDec, 11, 16, 2, 16);
    set(c);
    EncDec m(c, 46);
    testing::expect_finite_loss_and_gradients(m, batch, name);
  }
}

TEST(EncDec, LossGradientsMatchFiniteDifferencesInFloat64) {
  EncDec m(tiny_config(Arch::EncDec, 11, 8, 1, 5), 47, DType::F64);
  // Rows of 6 split into source and target halves of 3: positions 3 and 4 of either stack's
  // position table (max_seq_len 5) are never looked up, so their gradient is zero.
  testing::expect_loss_gradients_match(m, testing::random_batch(2, 6, 11, 48), "encdec",
                                       {{"encoder.wpe.weight", {3, 4}}, {"decoder.wpe.weight", {3, 4}}});
}

TEST(EncDec, OverfitsOneBatch) {
  const int64_t V = 16;
  EncDec m(tiny_config(Arch::EncDec, V, 32, 2, 32), 51);
  const data::Batch batch = testing::random_batch(2, 32, V, 52);  // 32 scored random tokens to memorise
  const testing::OverfitResult r = testing::overfit(m, batch, 30, 1e-2);
  EXPECT_NEAR(r.first, std::log(double(V)), 0.15);
  EXPECT_LT(r.last, 0.1 * r.first) << "from " << r.first << " to " << r.last;
}

TEST(EncDec, LearnsTheCopyBatch) {
  // The copy task: the second half of each row repeats the first, so the decoder's answer tokens
  // are copies of encoder tokens. Untrained the loss is ln V; after 60 steps on one batch the
  // decoder copies (loss ~0.1, every answer token right, on this machine).
  const int64_t V = 16, T = 24;
  EncDec m(tiny_config(Arch::EncDec, V, 32, 2, T), 49);
  const data::Batch batch = testing::synthetic_batch(data::SyntheticTask::copy, 4, T, V, 50);
  const testing::OverfitResult r = testing::overfit(m, batch, 60, 3e-3);
  EXPECT_NEAR(r.first, std::log(double(V)), 0.15);
  EXPECT_LT(r.last, 0.1 * r.first) << "from " << r.first << " to " << r.last;
  autograd::NoGradGuard no_grad;
  const models::LossOutput out = m.forward(batch);
  const data::AnswerScore score = data::score_answers(out.predictions, batch.answer_targets);
  EXPECT_GT(score.tokens_total, 0);
  EXPECT_GT(score.token_accuracy(), 0.9);
}

}  // namespace
}  // namespace strand
