// Mixed-precision training in-process on a tiny GPT: bf16 and fp16 losses stay close to
// fp32's, the fp16 loss scaler (fixed and dynamic: a forced overflow skips the step, halves the
// scale and the run recovers), exact resume in bf16 and fp16, and the key checks.
#include <gtest/gtest.h>

#include <unistd.h>

#include <bit>
#include <cmath>
#include <filesystem>

#include "framework/io/checkpoint_dir.h"
#include "framework/ops/elementwise.h"
#include "framework/train/precision.h"
#include "framework/train/trainer.h"
#include "launch/run_compare.h"
#include "support/tiny_run.h"
#include "models/model.h"

namespace strand::train {
namespace {
namespace fs = std::filesystem;
using testing_support::expect_checkpoints_identical;
using testing_support::metric_by_step;

class MixedPrecision : public TinyRunTest {};

TEST_F(MixedPrecision, Bf16AndFp16LossesStayCloseToFp32) {
  const TrainResult fp32 = train(tiny("fp32"));
  for (const char* compute : {"bf16", "fp16"}) {
    const std::string run = compute;
    const TrainResult low = train(tiny(run, {std::string("precision.compute=") + compute}));
    ASSERT_EQ(low.steps.size(), fp32.steps.size()) << compute;
    bool differs = false;
    for (size_t i = 0; i < low.steps.size(); ++i) {
      ASSERT_TRUE(std::isfinite(low.steps[i].loss)) << compute << " step " << i + 1;
      differs = differs || low.steps[i].loss != fp32.steps[i].loss;
    }
    EXPECT_TRUE(differs) << compute << ": the matmuls must really run in the low precision";
    // The first step sees the same weights: only rounding separates the losses (bf16 keeps 8
    // bits of mantissa, so ~0.4% per rounding); after 20 steps the runs stay within 3%.
    EXPECT_NEAR(low.steps[0].loss, fp32.steps[0].loss, 0.01 * fp32.steps[0].loss) << compute;
    EXPECT_NEAR(low.steps.back().loss, fp32.steps.back().loss, 0.03 * fp32.steps.back().loss) << compute;
    ASSERT_TRUE(low.eval && fp32.eval);
    EXPECT_NEAR(low.eval->loss(), fp32.eval->loss(), 0.03 * fp32.eval->loss()) << compute;
    // Master weights stay float32 (the checkpoint holds them).
    for (const auto& [name, p] : models::build_model(tiny("x"))->named_parameters()) EXPECT_EQ(p.dtype(), DType::F32) << name;
  }
}

TEST_F(MixedPrecision, DynamicScaleDoublesAfterTheWindowAndHalvesOnOverflow) {
  const Config config = tiny("unit", {"precision.compute=fp16", "precision.scale_window=3"});
  LoopState state;
  state.loss_scale = initial_loss_scale(config);
  EXPECT_EQ(state.loss_scale, 65536.0);
  // S scales the mean token loss: the summed loss of 2 x 32 tokens back-propagates S / 64.
  EXPECT_EQ(backward_scale(config, state.loss_scale), 1024.0);
  EXPECT_EQ(backward_scale(tiny("b", {"precision.compute=bf16"}), 1.0), 1.0);
  EXPECT_FALSE(update_loss_scale(config, state, true).counts_as_divergence);
  EXPECT_FALSE(update_loss_scale(config, state, true).counts_as_divergence);
  EXPECT_EQ(state.loss_scale, 65536.0);
  update_loss_scale(config, state, true);
  EXPECT_EQ(state.loss_scale, 131072.0) << "doubled after scale_window clean steps";
  EXPECT_EQ(state.loss_scale_good_steps, 0);
  update_loss_scale(config, state, true);
  const ScaleUpdate overflow = update_loss_scale(config, state, false);
  EXPECT_FALSE(overflow.counts_as_divergence) << "an overflow above the floor is the scaler's business";
  EXPECT_EQ(state.loss_scale, 65536.0);
  EXPECT_EQ(state.loss_scale_good_steps, 0);
  state.loss_scale = kMinLossScale;
  EXPECT_TRUE(update_loss_scale(config, state, false).counts_as_divergence) << "at the floor it is divergence";
  EXPECT_EQ(state.loss_scale, kMinLossScale);
  // bf16 and fp32 have no scaler: scale 1, and every non-finite step counts.
  const Config bf16 = tiny("b", {"precision.compute=bf16"});
  EXPECT_EQ(initial_loss_scale(bf16), 1.0);
  LoopState plain;
  EXPECT_TRUE(update_loss_scale(bf16, plain, false).counts_as_divergence);
  EXPECT_EQ(plain.loss_scale, 1.0);
}

// A trainer whose loss at one step is multiplied by a huge factor: its fp16 gradients overflow.
class OverflowAt : public Trainer {
 public:
  OverflowAt(TrainerParts parts, TrainerOptions options, int64_t step) : Trainer(std::move(parts), std::move(options)), step_(step) {}
  models::LossOutput micro_batch_loss(const data::Batch& batch) override {
    models::LossOutput out = Trainer::micro_batch_loss(batch);
    if (++calls_ == 2 * step_ - 1) out.loss_sum = ops::mul_scalar(out.loss_sum, 1e30);  // micro-batch 1 of `step_`
    return out;
  }

 private:
  int64_t step_, calls_ = 0;
};

TEST_F(MixedPrecision, AForcedFp16OverflowSkipsTheStepHalvesTheScaleAndTheRunRecovers) {
  // scale_window 4: the scale climbs back after four clean steps. Step 10's gradients overflow.
  const Config config = tiny("ovf", {"precision.compute=fp16", "precision.scale_window=4", "train.max_skipped_steps=1"});
  auto model = models::build_model(config);
  OverflowAt trainer(build_trainer_parts(config, model, nullptr), quiet(), 10);
  const TrainResult r = trainer.run();  // max_skipped_steps 1: an overflow that counted would stop it
  ASSERT_EQ(r.steps.size(), 20u);
  const auto scale = metric_by_step(metrics("ovf"), "loss_scale");
  const auto skipped = metric_by_step(metrics("ovf"), "skipped");
  EXPECT_TRUE(r.steps[9].skipped);
  EXPECT_EQ(scale.at(10), scale.at(9) / 2) << "halved at the overflow";
  EXPECT_EQ(skipped.at(10), skipped.at(9) + 1);
  for (int64_t s = 11; s <= 14; ++s) EXPECT_FALSE(r.steps[s - 1].skipped) << "step " << s;
  EXPECT_EQ(scale.at(14), scale.at(10) * 2) << "doubled again after scale_window clean steps";
  for (const StepReport& s : r.steps) EXPECT_TRUE(std::isfinite(s.loss)) << "step " << s.step;
  EXPECT_LT(r.steps.back().loss, r.steps.front().loss) << "the run still learns";
}

TEST_F(MixedPrecision, ResumeMidRunIsBitwiseExactInBf16AndFp16) {
  for (const char* compute : {"bf16", "fp16"}) {
    // scale_window 3: the fp16 scale moves during the run, so the resumed scaler must be the saved one.
    const std::vector<std::string> keys = {std::string("precision.compute=") + compute, "precision.scale_window=3"};
    const std::string a = std::string(compute) + "_a", b = std::string(compute) + "_b";
    const TrainResult straight = train(tiny(a, keys));
    std::vector<std::string> resume = keys;
    resume.push_back("checkpoint.resume=" + ckpt(a, 10));
    const TrainResult resumed = train(tiny(b, resume));
    ASSERT_EQ(resumed.steps.size(), 10u) << compute;
    for (size_t i = 0; i < 10; ++i) {
      EXPECT_EQ(resumed.steps[i].loss, straight.steps[10 + i].loss) << compute << " step " << resumed.steps[i].step;
      // Bit patterns: an fp16 overflow step's norm may be NaN, which must be the same NaN.
      EXPECT_EQ(std::bit_cast<uint64_t>(resumed.steps[i].grad_norm),
                std::bit_cast<uint64_t>(straight.steps[10 + i].grad_norm))
          << compute << " step " << resumed.steps[i].step << ": " << resumed.steps[i].grad_norm << " vs "
          << straight.steps[10 + i].grad_norm;
    }
    const auto scale_a = metric_by_step(metrics(a), "loss_scale"), scale_b = metric_by_step(metrics(b), "loss_scale");
    for (int64_t s = 11; s <= 20; ++s) EXPECT_EQ(scale_b.at(s), scale_a.at(s)) << compute << " step " << s;
    expect_checkpoints_identical(ckpt(a, 20), ckpt(b, 20));
  }
}

TEST_F(MixedPrecision, AFixedScaleMultipliesTheLossAndIsDividedOutOfTheGradients) {
  // Under fp16 a power-of-two scale only moves the exponent of the rounded gradients, so the
  // gradient norms of scales 1 and 1024 agree to fp16 rounding, and the scale never moves.
  const TrainResult one = train(tiny("s1", {"precision.compute=fp16", "precision.loss_scale=1"}));
  const TrainResult big = train(tiny("s1024", {"precision.compute=fp16", "precision.loss_scale=1024"}));
  EXPECT_NEAR(big.steps[0].grad_norm, one.steps[0].grad_norm, 1e-2 * one.steps[0].grad_norm);
  EXPECT_EQ(big.steps[0].loss, one.steps[0].loss) << "the scale touches the backward only";
  for (const auto& [step, s] : metric_by_step(metrics("s1024"), "loss_scale")) EXPECT_EQ(s, 1024.0) << step;
  // A fixed scale is for fp16; bf16 has float32's range.
  EXPECT_THROW(tiny("bad", {"precision.compute=bf16", "precision.loss_scale=1024"}), ConfigError);
  EXPECT_THROW(tiny("bad", {"precision.compute=fp16", "precision.scale_window=0"}), ConfigError);
}

}  // namespace
}  // namespace strand::train
