// Learning-rate schedule: warmup, the three decay shapes at known points, and bad values.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "framework/core/error.h"
#include "framework/optim/schedule.h"

namespace strand {
namespace {

using optim::LrSchedule;

// lr_at does a handful of double operations: allow a few ulps of the peak lr.
constexpr double kTol = 8 * 2.220446049250313e-16;

TEST(LrSchedule, WarmupIsLinearFromZero) {
  const LrSchedule s = LrSchedule::make(1e-3, 1e-4, 10, 100, optim::DecayKind::Cosine);
  for (int64_t step = 0; step < 10; ++step)
    EXPECT_NEAR(s.lr_at(step), 1e-3 * static_cast<double>(step + 1) / 10.0, kTol * 1e-3) << step;
  EXPECT_NEAR(s.lr_at(9), 1e-3, kTol * 1e-3) << "the last warmup step reaches the peak";
}

TEST(LrSchedule, CosineDecaysToMinLr) {
  const double lr = 1e-3, min_lr = 1e-4;
  const LrSchedule s = LrSchedule::make(lr, min_lr, 10, 110, optim::DecayKind::Cosine);
  EXPECT_NEAR(s.lr_at(10), lr, kTol * lr);
  EXPECT_NEAR(s.lr_at(60), 0.5 * (lr + min_lr), kTol * lr) << "halfway";
  const double p = 25.0 / 100.0;
  EXPECT_NEAR(s.lr_at(35), min_lr + (lr - min_lr) * 0.5 * (1 + std::cos(std::numbers::pi * p)), kTol * lr);
  EXPECT_NEAR(s.lr_at(110), min_lr, kTol * lr);
  EXPECT_NEAR(s.lr_at(5000), min_lr, kTol * lr) << "after the end it stays at min_lr";
  for (int64_t step = 11; step <= 110; ++step) EXPECT_LE(s.lr_at(step), s.lr_at(step - 1)) << step;
}

TEST(LrSchedule, LinearDecaysToMinLr) {
  const LrSchedule s = LrSchedule::make(2.0, 0.5, 0, 4, optim::DecayKind::Linear);
  EXPECT_NEAR(s.lr_at(0), 2.0, kTol * 2);
  EXPECT_NEAR(s.lr_at(1), 1.625, kTol * 2);
  EXPECT_NEAR(s.lr_at(2), 1.25, kTol * 2);
  EXPECT_NEAR(s.lr_at(4), 0.5, kTol * 2);
  EXPECT_NEAR(s.lr_at(9), 0.5, kTol * 2);
}

TEST(LrSchedule, ConstantHoldsThePeakAfterWarmup) {
  const LrSchedule s = LrSchedule::make(3e-4, 0.0, 4, 10, optim::DecayKind::Constant);
  EXPECT_NEAR(s.lr_at(0), 0.75e-4, kTol * 3e-4);
  EXPECT_EQ(s.lr_at(4), 3e-4);
  EXPECT_EQ(s.lr_at(100), 3e-4);
  EXPECT_EQ(optim::decay_kind_name(s.kind), std::string("constant"));
}

TEST(LrSchedule, NoDecayStepsMeansMinLrAfterWarmup) {
  const LrSchedule s = LrSchedule::make(1.0, 0.1, 5, 5, optim::DecayKind::Cosine);
  EXPECT_NEAR(s.lr_at(4), 1.0, kTol);
  EXPECT_NEAR(s.lr_at(5), 0.1, kTol);
}

template <class F>
void expect_value_error(F&& f, const std::string& needle) {
  try {
    f();
    FAIL() << "expected ValueError mentioning " << needle;
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(LrSchedule, BadValuesAreValueErrorsNamingThem) {
  expect_value_error([] { LrSchedule::make(1e-3, 1e-2, 0, 10, optim::DecayKind::Cosine); }, "min_lr 0.01");
  expect_value_error([] { LrSchedule::make(1e-3, 0, -1, 10, optim::DecayKind::Cosine); }, "warmup_steps must be >= 0, got -1");
  expect_value_error([] { LrSchedule::make(1e-3, 0, 0, -5, optim::DecayKind::Linear); }, "total_steps must be >= 0, got -5");
  expect_value_error([] { LrSchedule::make(-1.0, 0, 0, 5, optim::DecayKind::Linear); }, "lr must be finite and >= 0, got -1");
  expect_value_error([] { LrSchedule::make(1e-3, 0, 0, 5, optim::DecayKind::Linear).lr_at(-3); }, "step must be >= 0, got -3");
  // A struct filled by hand is checked too.
  LrSchedule hand;
  hand.min_lr = 1.0;
  hand.lr = 0.5;
  expect_value_error([&] { hand.lr_at(0); }, "min_lr 1");
}

}  // namespace
}  // namespace strand
