// GPT: Hugging Face GPT-2 parameter names and shapes, float64
// end-to-end gradient checks, every option and causal pattern trains (finite loss, a gradient on
// every parameter) and never reads later tokens, the untrained loss is ln V, deterministic init,
// global positions, dropout, overfitting one batch, and build_model's checks.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "framework/core/error.h"
#include "framework/ops/view.h"
#include "models/gpt/gpt.h"
#include "model_testing.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using models::Gpt;
using testing::tiny_config;
using config::Arch;
using config::AttentionPattern;

TEST(Gpt, ParameterNamesAndShapesAreHuggingFaceGpt2) {
  // C = 8, 2 layers, T = 5, V = 11: the state dict GPT2LMHeadModel has (less the tied lm_head).
  const config::ModelConfig c = tiny_config(Arch::Gpt, 11, 8, 2, 5);
  Gpt gpt(c, 1);
  std::vector<std::pair<std::string, Shape>> want = {{"transformer.wte.weight", {11, 8}},
                                                     {"transformer.wpe.weight", {5, 8}}};
  for (int i = 0; i < 2; ++i) {
    const std::string h = "transformer.h." + std::to_string(i) + ".";
    want.insert(want.end(), {{h + "ln_1.weight", {8}},
                             {h + "ln_1.bias", {8}},
                             {h + "attn.c_attn.weight", {8, 24}},
                             {h + "attn.c_attn.bias", {24}},
                             {h + "attn.c_proj.weight", {8, 8}},
                             {h + "attn.c_proj.bias", {8}},
                             {h + "ln_2.weight", {8}},
                             {h + "ln_2.bias", {8}},
                             {h + "mlp.c_fc.weight", {8, 32}},
                             {h + "mlp.c_fc.bias", {32}},
                             {h + "mlp.c_proj.weight", {32, 8}},
                             {h + "mlp.c_proj.bias", {8}}});
  }
  want.insert(want.end(), {{"transformer.ln_f.weight", {8}}, {"transformer.ln_f.bias", {8}}});
  const auto named = gpt.named_parameters();
  ASSERT_EQ(named.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(named[i].first, want[i].first) << "parameter " << i;
    EXPECT_EQ(named[i].second.shape(), want[i].second) << want[i].first;
    EXPECT_EQ(named[i].second.dtype(), DType::F32) << want[i].first;
  }

  config::ModelConfig untied = c;
  untied.tie_embeddings = false;
  const auto u = Gpt(untied, 1).named_parameters();
  ASSERT_EQ(u.size(), want.size() + 1);
  EXPECT_EQ(u.back().first, "lm_head.weight");
  EXPECT_EQ(u.back().second.shape(), (Shape{11, 8}));  // Hugging Face nn.Linear layout [V, C]

  config::ModelConfig opts = c;  // rope drops wpe; rmsnorm drops the norm biases; swiglu doubles c_fc; gqa
  opts.pos = config::PosEncoding::Rope;
  opts.norm = config::NormKind::RMSNorm;
  opts.activation = config::Activation::SwiGLU;
  opts.n_kv_head = 1;
  Gpt g2(opts, 1);
  EXPECT_THROW(g2.parameter("transformer.wpe.weight"), ValueError);
  EXPECT_THROW(g2.parameter("transformer.h.0.ln_1.bias"), ValueError);
  EXPECT_EQ(g2.parameter("transformer.h.0.attn.c_attn.weight").shape(), (Shape{8, (2 + 2 * 1) * 4}));
  EXPECT_EQ(g2.parameter("transformer.h.1.mlp.c_fc.weight").shape(), (Shape{8, 64}));
  EXPECT_EQ(g2.parameter("transformer.h.1.mlp.c_proj.weight").shape(), (Shape{32, 8}));
}

TEST(Gpt, LossGradientsMatchFiniteDifferencesInFloat64) {
  const data::Batch batch = testing::random_batch(2, 5, 11, 3);
  struct Variant {
    const char* name;
    std::function<void(config::ModelConfig&)> set;
  };
  const std::vector<Variant> variants = {
      {"gpt-2", [](config::ModelConfig&) {}},
      {"rope rmsnorm swiglu gqa", [](config::ModelConfig& c) {
         c.pos = config::PosEncoding::Rope;
         c.norm = config::NormKind::RMSNorm;
         c.activation = config::Activation::SwiGLU;
         c.n_kv_head = 1;
       }},
      {"longformer untied", [](config::ModelConfig& c) {
         c.attention.pattern = AttentionPattern::Longformer;
         c.attention.window = 2;
         c.attention.global_tokens = 1;
         c.tie_embeddings = false;
       }},
      {"linear", [](config::ModelConfig& c) { c.attention.pattern = AttentionPattern::Linear; }},
      {"bigbird", [](config::ModelConfig& c) {
         c.attention.pattern = AttentionPattern::BigBird;
         c.attention.window = 1;
         c.attention.global_tokens = 1;
         c.attention.block_size = 2;
         c.attention.random_blocks = 1;
       }},
  };
  for (const Variant& v : variants) {
    config::ModelConfig c = tiny_config(Arch::Gpt, 11, 8, 2, 5);
    v.set(c);
    Gpt gpt(c, 5, DType::F64);
    // Untied, the rows of wte for tokens the batch never holds get no gradient at all.
    testing::ZeroRows zero;
    if (!c.tie_embeddings) zero["transformer.wte.weight"] = testing::absent_token_rows(batch, c.vocab_size);
    testing::expect_loss_gradients_match(gpt, batch, v.name, zero);
  }
}

// The option table of the forward/backward and causality tests.
std::vector<std::pair<std::string, std::function<void(config::ModelConfig&)>>> gpt_options() {
  using C = config::ModelConfig;
  return {
      {"gpt-2", [](C&) {}},
      {"rope", [](C& c) { c.pos = config::PosEncoding::Rope; }},
      {"rmsnorm", [](C& c) { c.norm = config::NormKind::RMSNorm; }},
      {"swiglu", [](C& c) { c.activation = config::Activation::SwiGLU; }},
      {"gqa", [](C& c) { c.n_head = 4; c.n_kv_head = 2; }},
      {"mqa", [](C& c) { c.n_head = 4; c.n_kv_head = 1; }},
      {"untied", [](C& c) { c.tie_embeddings = false; }},
      {"dropout", [](C& c) { c.dropout = 0.1; }},
      {"sliding", [](C& c) { c.attention.pattern = AttentionPattern::Sliding; c.attention.window = 4; }},
      {"dilated", [](C& c) { c.attention.pattern = AttentionPattern::Dilated; c.attention.window = 3; c.attention.dilation = 2; }},
      {"longformer", [](C& c) { c.attention.pattern = AttentionPattern::Longformer; c.attention.window = 3; c.attention.global_tokens = 2; }},
      {"bigbird", [](C& c) {
         c.attention.pattern = AttentionPattern::BigBird;
         c.attention.window = 2;
         c.attention.global_tokens = 1;
         c.attention.block_size = 2;
         c.attention.random_blocks = 2;
       }},
      {"linear", [](C& c) { c.attention.pattern = AttentionPattern::Linear; }},
      {"everything", [](C& c) {
         c.pos = config::PosEncoding::Rope;
         c.norm = config::NormKind::RMSNorm;
         c.activation = config::Activation::SwiGLU;
         c.n_head = 4;
         c.n_kv_head = 2;
         c.tie_embeddings = false;
         c.dropout = 0.1;
         c.attention.pattern = AttentionPattern::Longformer;
         c.attention.window = 4;
         c.attention.global_tokens = 1;
       }},
  };
}

TEST(Gpt, EveryOptionRunsForwardAndBackward) {
  const data::Batch batch = testing::random_batch(2, 16, 11, 4);
  for (const auto& [name, set] : gpt_options()) {
    config::ModelConfig c = tiny_config(Arch::Gpt, 11, 16, 2, 16);
    set(c);
    Gpt gpt(c, 6);
    testing::expect_finite_loss_and_gradients(gpt, batch, name);
    EXPECT_EQ(gpt.forward(batch).tokens, 32) << name;
  }
}

TEST(Gpt, NoPatternReadsLaterTokens) {
  const int64_t T = 12, V = 11;
  data::Batch batch = testing::random_batch(1, T, V, 7);
  for (const auto& [name, set] : gpt_options()) {
    config::ModelConfig c = tiny_config(Arch::Gpt, V, 16, 2, 16);
    set(c);
    c.dropout = 0.0;
    Gpt gpt(c, 8, DType::F64);
    autograd::NoGradGuard no_grad;
    const auto base = gpt.logits(batch.inputs).to_vector();
    for (int64_t j : {1, 5, 11}) {
      Tensor changed_inputs = batch.inputs.copy_as(DType::I32, Device::cpu());
      changed_inputs.data<int32_t>()[j] = (changed_inputs.data<int32_t>()[j] + 1) % static_cast<int32_t>(V);
      const auto changed = gpt.logits(changed_inputs).to_vector();
      for (int64_t i = 0; i < j * V; ++i) {
        // Exact for softmax patterns; Performer's causal sums cancel a global stabiliser, so
        // earlier rows may move by rounding (Note [Performer stabilisers]).
        const double tol = name == "linear" ? 1e-12 * (1 + std::abs(base[i])) : 0.0;
        ASSERT_NEAR(changed[i], base[i], tol) << name << ": token " << j << " changed logit " << i;
      }
      bool moved = false;
      for (int64_t i = j * V; i < (j + 1) * V; ++i) moved = moved || changed[i] != base[i];
      EXPECT_TRUE(moved) << name << ": token " << j << " did not change its own logits";
    }
  }
}

TEST(Gpt, UntrainedLossIsLogVocab) {
  const int64_t V = 64, C = 32, B = 4, T = 32;
  Gpt gpt(tiny_config(Arch::Gpt, V, C, 2, T), 9);
  const data::Batch batch = testing::random_batch(B, T, V + 1, 10);  // targets uniform over all V ids
  autograd::NoGradGuard no_grad;
  const models::LossOutput out = gpt.forward(batch);
  ASSERT_EQ(out.tokens, B * T);
  const double mean = out.loss_sum.item() / static_cast<double>(out.tokens);
  // With init std 0.02 and ln_f output of norm ~sqrt(C), logits have std s = 0.02 sqrt(C): the
  // expected loss is ln V + s^2 / 2, the tied input token's own logit (about C 0.02^2 / (0.02 sqrt 2))
  // lifts the log-sum-exp by at most (e^that - 1) / V, and the mean over N targets wanders by s / sqrt(N).
  const double s = 0.02 * std::sqrt(double(C)), own = C * 0.0004 / (0.02 * std::sqrt(2.0));
  const double tol = s * s / 2 + (std::exp(own) - 1) / V + 4 * s / std::sqrt(double(B * T));
  EXPECT_NEAR(mean, std::log(double(V)), tol);
}

TEST(Gpt, InitialisationIsDeterministicAndGpt2) {
  const config::ModelConfig c = tiny_config(Arch::Gpt, 50, 64, 4, 16);
  Gpt a(c, 42), b(c, 42), other(c, 43);
  const auto pa = a.named_parameters(), pb = b.named_parameters(), po = other.named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].second.to_vector(), pb[i].second.to_vector()) << pa[i].first;
    if (pa[i].first.find("weight") != std::string::npos && pa[i].first.find("ln_") == std::string::npos) {
      EXPECT_NE(pa[i].second.to_vector(), po[i].second.to_vector()) << pa[i].first << " ignores run.seed";
    }
  }
  // Parameter i (named_parameters order) is drawn from the key ParameterSeeds::base(run.seed) + i.
  for (size_t i = 0; i < pa.size(); ++i) {
    const std::string& name = pa[i].first;
    if (name.find(".weight") == std::string::npos || name.find("ln_") != std::string::npos) continue;
    const double std = name.find("c_proj") != std::string::npos ? 0.02 / std::sqrt(8.0) : 0.02;
    EXPECT_EQ(pa[i].second.to_vector(),
              Tensor::randn(pa[i].second.shape(), models::ParameterSeeds::base(42) + i, DType::F32, std).to_vector())
        << name;
  }
  EXPECT_NE(a.parameter("transformer.h.0.attn.c_attn.weight").to_vector(),
            a.parameter("transformer.h.1.attn.c_attn.weight").to_vector());
  auto stddev = [](const Tensor& t) {
    double s = 0;
    for (double v : t.to_vector()) s += v * v;
    return std::sqrt(s / static_cast<double>(t.numel()));
  };
  // Sample standard deviations of n normal draws are within 5 / sqrt(2n) (relative) of the truth.
  auto expect_std = [&](const std::string& name, double want) {
    const Tensor t = a.parameter(name);
    EXPECT_NEAR(stddev(t), want, want * 5 / std::sqrt(2.0 * static_cast<double>(t.numel()))) << name;
  };
  expect_std("transformer.wte.weight", 0.02);
  expect_std("transformer.h.2.attn.c_attn.weight", 0.02);
  expect_std("transformer.h.2.mlp.c_fc.weight", 0.02);
  expect_std("transformer.h.2.attn.c_proj.weight", 0.02 / std::sqrt(8.0));
  expect_std("transformer.h.3.mlp.c_proj.weight", 0.02 / std::sqrt(8.0));
  for (double v : a.parameter("transformer.h.1.attn.c_attn.bias").to_vector()) ASSERT_EQ(v, 0.0);
  for (double v : a.parameter("transformer.ln_f.weight").to_vector()) ASSERT_EQ(v, 1.0);
  for (double v : a.parameter("transformer.h.0.ln_2.bias").to_vector()) ASSERT_EQ(v, 0.0);
}

TEST(Gpt, PositionsAreGlobal) {
  // RoPE scores depend on position differences only: shifting every position leaves the logits.
  config::ModelConfig c = tiny_config(Arch::Gpt, 11, 16, 2, 16);
  c.pos = config::PosEncoding::Rope;
  Gpt gpt(c, 11, DType::F64);
  const data::Batch batch = testing::random_batch(2, 8, 11, 12);
  parallel::SequenceShard shifted;
  shifted.positions = ops::contiguous(Tensor::from_vector({100, 101, 102, 103, 104, 105, 106, 107}, {8}, DType::I32));
  autograd::NoGradGuard no_grad;
  EXPECT_LE(testing::max_abs_diff(gpt.logits(batch.inputs), gpt.logits(batch.inputs, shifted)), 1e-10);

  // Learned positions read rows of wpe: a shard at positions 8..15 uses rows 8..15, and a
  // position past max_seq_len is an error naming the key.
  Gpt learned(tiny_config(Arch::Gpt, 11, 16, 2, 16), 11, DType::F64);
  parallel::SequenceShard second_half;
  second_half.positions = Tensor::from_vector({8, 9, 10, 11, 12, 13, 14, 15}, {8}, DType::I32);
  EXPECT_GT(testing::max_abs_diff(learned.logits(batch.inputs), learned.logits(batch.inputs, second_half)), 1e-6);
  parallel::SequenceShard past;
  past.positions = Tensor::from_vector({10, 11, 12, 13, 14, 15, 16, 17}, {8}, DType::I32);
  try {
    learned.logits(batch.inputs, past);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("max_seq_len"), std::string::npos) << e.what();
  }
}

TEST(Gpt, LossCountsAndPredictions) {
  const int64_t V = 11;
  Gpt gpt(tiny_config(Arch::Gpt, V, 16, 2, 16), 13, DType::F64);
  data::Batch batch = testing::random_batch(2, 6, V, 14);
  batch.targets.data<int32_t>()[1] = data::kIgnoreIndex;
  batch.targets.data<int32_t>()[7] = data::kIgnoreIndex;
  autograd::NoGradGuard no_grad;
  const models::LossOutput out = gpt.forward(batch);
  EXPECT_EQ(out.tokens, 10);
  const auto logits = gpt.logits(batch.inputs).to_vector();
  const auto pred = out.predictions.to_vector();
  ASSERT_EQ(out.predictions.shape(), (Shape{2, 6}));
  EXPECT_EQ(out.predictions.dtype(), DType::I32);
  double want_loss = 0;
  for (int64_t r = 0; r < 12; ++r) {
    int64_t best = 0;
    double mx = logits[r * V], se = 0;
    for (int64_t j = 0; j < V; ++j) {
      if (logits[r * V + j] > logits[r * V + best]) best = j;
      mx = std::max(mx, logits[r * V + j]);
    }
    EXPECT_EQ(pred[r], best) << "row " << r;
    for (int64_t j = 0; j < V; ++j) se += std::exp(logits[r * V + j] - mx);
    const int32_t t = batch.targets.data<int32_t>()[r];
    if (t != data::kIgnoreIndex) want_loss += mx + std::log(se) - logits[r * V + t];
  }
  EXPECT_NEAR(out.loss_sum.item(), want_loss, 1e-12 * want_loss);
}

TEST(Gpt, DropoutIsSeededByStepAndOffInEvaluation) {
  config::ModelConfig c = tiny_config(Arch::Gpt, 11, 16, 2, 16);
  c.dropout = 0.2;
  config::ModelConfig plain = c;
  plain.dropout = 0.0;
  Gpt gpt(c, 15, DType::F64), reference(plain, 15, DType::F64);
  data::Batch batch = testing::random_batch(2, 8, 11, 16, /*step=*/3);
  autograd::NoGradGuard no_grad;
  const double at_3 = gpt.forward(batch).loss_sum.item();
  EXPECT_EQ(gpt.forward(batch).loss_sum.item(), at_3);  // the same step draws the same masks
  batch.step = 4;
  EXPECT_NE(gpt.forward(batch).loss_sum.item(), at_3);
  const double no_dropout = reference.forward(batch).loss_sum.item();
  EXPECT_NE(at_3, no_dropout);
  gpt.train(false);
  EXPECT_EQ(gpt.forward(batch).loss_sum.item(), no_dropout);
}

TEST(Gpt, OverfitsOneBatch) {
  const int64_t V = 16;
  Gpt gpt(tiny_config(Arch::Gpt, V, 32, 2, 16), 17);
  const data::Batch batch = testing::random_batch(2, 16, V, 18);
  const testing::OverfitResult r = testing::overfit(gpt, batch, 30, 1e-2);
  EXPECT_NEAR(r.first, std::log(double(V)), 0.1);
  // 32 random next tokens memorised: the loss must fall to a tenth of chance (it reaches ~0.03).
  EXPECT_LT(r.last, 0.1 * r.first) << "from " << r.first << " to " << r.last;
}

TEST(Gpt, DecayRule) {
  Gpt gpt(tiny_config(Arch::Gpt), 1);
  EXPECT_TRUE(gpt.decays("transformer.wte.weight"));
  EXPECT_TRUE(gpt.decays("transformer.h.0.attn.c_attn.weight"));
  EXPECT_TRUE(gpt.decays("transformer.h.1.mlp.c_proj.weight"));
  EXPECT_TRUE(gpt.decays("lm_head.weight"));
  EXPECT_FALSE(gpt.decays("transformer.h.0.attn.c_attn.bias"));
  EXPECT_FALSE(gpt.decays("transformer.h.0.ln_1.weight"));
  EXPECT_FALSE(gpt.decays("transformer.ln_f.weight"));
  EXPECT_FALSE(gpt.decays("decoder.h.0.ln_cross_attn.weight"));
}

}  // namespace
}  // namespace strand
