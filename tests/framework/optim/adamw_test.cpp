// AdamW against the PyTorch formula evaluated step by step in double: decoupled weight decay,
// bias correction, parameters without gradients, state save/load, dtypes and bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "framework/core/error.h"
#include "framework/optim/adamw.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using optim::AdamW;
using optim::AdamWOptions;
using optim::AdamWParam;

// The reference: torch.optim.AdamW's update in double, one element at a time.
struct ReferenceAdamW {
  AdamWOptions o;
  bool decay;
  std::vector<double> p, m, v;
  int64_t t = 0;
  void step(const std::vector<double>& g) {
    ++t;
    const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
    for (size_t i = 0; i < p.size(); ++i) {
      if (decay) p[i] *= 1 - o.lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      p[i] -= o.lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + o.eps);
    }
  }
};

// Tolerance for a value computed in `dt`: a few ulps per step of relative error.
double tolerance(DType dt, double ref, int steps) {
  const double eps = strand::testing::dtype_eps(dt);
  return 8.0 * steps * eps * (1.0 + std::abs(ref));
}

const std::vector<std::vector<double>> kGrads = {
    {0.5, -1.0, 2.0, 1e-3}, {-0.25, 0.75, 1.5, -2e-3}, {1.0, 0.1, -3.0, 5e-4}};
const std::vector<double> kInit = {1.0, -2.0, 0.5, 3.0};

void expect_matches_reference(DType dt, bool decay) {
  AdamWOptions o{.lr = 0.1, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1};
  Tensor w = Tensor::from_vector(kInit, {2, 2}, dt);
  w.set_requires_grad(true);
  AdamW opt({{"w", w, decay}}, o);
  ReferenceAdamW ref{o, decay, kInit, std::vector<double>(4, 0.0), std::vector<double>(4, 0.0)};
  for (int s = 0; s < 3; ++s) {
    w.set_grad(Tensor::from_vector(kGrads[s], {2, 2}, dt));
    const uint64_t version = w.version();
    opt.step();
    ref.step(kGrads[s]);
    EXPECT_GT(w.version(), version) << "step must bump the parameter version";
    const auto got = w.to_vector();
    const auto st = opt.state();
    const auto m = st.m[0].to_vector(), v = st.v[0].to_vector();
    for (size_t i = 0; i < 4; ++i) {
      ASSERT_NEAR(got[i], ref.p[i], tolerance(dt, ref.p[i], s + 1)) << dtype_name(dt) << " step " << s << " elem " << i;
      ASSERT_NEAR(m[i], ref.m[i], tolerance(dt, ref.m[i], s + 1));
      ASSERT_NEAR(v[i], ref.v[i], tolerance(dt, ref.v[i], s + 1));
    }
  }
  EXPECT_EQ(opt.step_count(), 3);
}

TEST(AdamW, ThreeStepsMatchTheFormulaFloat64) {
  expect_matches_reference(DType::F64, true);
  expect_matches_reference(DType::F64, false);
}

TEST(AdamW, ThreeStepsMatchTheFormulaFloat32) {
  expect_matches_reference(DType::F32, true);
  expect_matches_reference(DType::F32, false);
}

TEST(AdamW, FirstStepIsSignTimesLrThanksToBiasCorrection) {
  // With bias correction, step 1 moves each element by lr * g / (|g| + eps) = lr * sign(g),
  // whatever the betas; without it the step would be scaled by (1-beta1)/sqrt(1-beta2).
  Tensor w = Tensor::zeros({3}, DType::F64);
  w.set_requires_grad(true);
  AdamW opt({{"w", w, false}}, {.lr = 0.01, .beta1 = 0.5, .beta2 = 0.9, .eps = 0.0, .weight_decay = 0.0});
  w.set_grad(Tensor::from_vector({3.0, -0.2, 1e-4}, {3}, DType::F64));
  opt.step();
  const auto got = w.to_vector();
  EXPECT_NEAR(got[0], -0.01, 1e-15);
  EXPECT_NEAR(got[1], 0.01, 1e-15);
  EXPECT_NEAR(got[2], -0.01, 1e-15);
}

TEST(AdamW, WeightDecayIsDecoupledFromTheGradient) {
  // A zero gradient leaves the Adam term at zero: only p *= (1 - lr * wd) acts. (Adam with L2
  // regularisation would instead feed wd * p through the moments and move p by about lr.)
  const double lr = 0.1, wd = 0.5;
  Tensor w = Tensor::from_vector({2.0, -4.0}, {2}, DType::F64);
  Tensor b = Tensor::from_vector({2.0, -4.0}, {2}, DType::F64);
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  AdamW opt({{"w", w, true}, {"b", b, false}}, {.lr = lr, .weight_decay = wd});
  for (int s = 0; s < 2; ++s) {
    w.set_grad(Tensor::zeros({2}, DType::F64));
    b.set_grad(Tensor::zeros({2}, DType::F64));
    opt.step();
  }
  const double f = (1 - lr * wd) * (1 - lr * wd);
  EXPECT_NEAR(w.to_vector()[0], 2.0 * f, 1e-15);
  EXPECT_NEAR(w.to_vector()[1], -4.0 * f, 1e-15);
  EXPECT_EQ(b.to_vector(), (std::vector<double>{2.0, -4.0})) << "no decay for a parameter flagged off";
}

TEST(AdamW, DecayByRankSkipsBiasesAndNormWeights) {
  auto ps = optim::decay_by_rank({{"fc.weight", Tensor::zeros({3, 2})}, {"fc.bias", Tensor::zeros({2})},
                                  {"ln.weight", Tensor::ones({2})}});
  ASSERT_EQ(ps.size(), 3u);
  EXPECT_TRUE(ps[0].decay);
  EXPECT_FALSE(ps[1].decay);
  EXPECT_FALSE(ps[2].decay);
  EXPECT_EQ(ps[1].name, "fc.bias");
}

TEST(AdamW, ParametersWithoutGradientAreSkipped) {
  Tensor a = Tensor::ones({2}), b = Tensor::ones({2});
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  AdamW opt({{"a", a}, {"b", b}}, {.lr = 0.1, .weight_decay = 0.1});
  a.set_grad(Tensor::ones({2}));
  opt.step();
  EXPECT_LT(a.to_vector()[0], 1.0);
  EXPECT_EQ(b.to_vector(), (std::vector<double>{1.0, 1.0}));
  EXPECT_EQ(opt.state().v[1].to_vector(), (std::vector<double>{0.0, 0.0}));
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
}

TEST(AdamW, StateRoundTripGivesTheSameNextStep) {
  AdamWOptions o{.lr = 0.05, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.2};
  auto make = [&](Tensor& w, Tensor& b) {
    w = Tensor::from_vector({0.3, -0.7, 1.1, 0.2, 0.0, -1.5}, {2, 3});
    b = Tensor::from_vector({0.1, -0.1, 0.05}, {3});
    w.set_requires_grad(true);
    b.set_requires_grad(true);
    return AdamW(optim::decay_by_rank({{"w", w}, {"b", b}}), o);
  };
  Tensor w1, b1, w2, b2;
  AdamW first = make(w1, b1);
  for (int s = 0; s < 4; ++s) {
    w1.set_grad(Tensor::randn({2, 3}, 100 + s));
    b1.set_grad(Tensor::randn({3}, 200 + s));
    first.step();
  }
  // Saved as a checkpoint would: float64 copies, in reversed order (names pair them up).
  optim::AdamWState saved = first.state();
  optim::AdamWState copy;
  copy.step = saved.step;
  for (size_t i = saved.names.size(); i-- > 0;) {
    copy.names.push_back(saved.names[i]);
    copy.m.push_back(saved.m[i].copy_as(DType::F64, Device::cpu()));
    copy.v.push_back(saved.v[i].copy_as(DType::F64, Device::cpu()));
  }
  AdamW second = make(w2, b2);
  w2.copy_from(w1);
  b2.copy_from(b1);
  second.load_state(copy);
  EXPECT_EQ(second.step_count(), 4);
  for (AdamW* opt : {&first, &second}) {
    Tensor& w = opt == &first ? w1 : w2;
    Tensor& b = opt == &first ? b1 : b2;
    w.set_grad(Tensor::randn({2, 3}, 300));
    b.set_grad(Tensor::randn({3}, 301));
    opt->step();
  }
  EXPECT_EQ(w1.to_vector(), w2.to_vector()) << "float32 values survive a float64 round trip exactly";
  EXPECT_EQ(b1.to_vector(), b2.to_vector());
  EXPECT_EQ(first.state().m[0].to_vector(), second.state().m[0].to_vector());
}

TEST(AdamW, LoadStateRejectsMismatches) {
  Tensor w = Tensor::zeros({2, 2});
  w.set_requires_grad(true);
  AdamW opt({{"w", w}});
  optim::AdamWState bad{.step = 1, .names = {"x"}, .m = {Tensor::zeros({2, 2})}, .v = {Tensor::zeros({2, 2})}};
  try {
    opt.load_state(bad);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'x'"), std::string::npos) << e.what();
  }
  bad.names = {"w"};
  bad.m = {Tensor::zeros({3})};
  try {
    opt.load_state(bad);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[3]"), std::string::npos) << e.what();
  }
  EXPECT_EQ(opt.step_count(), 0) << "a rejected state changes nothing";
}

TEST(AdamW, BFloat16ParametersKeepFloat32Moments) {
  Tensor w = Tensor::from_vector({1.0, -1.0}, {2}, DType::BF16);
  w.set_requires_grad(true);
  AdamW opt({{"w", w, false}}, {.lr = 0.125, .weight_decay = 0.0});
  w.set_grad(Tensor::from_vector({1.0, -1.0}, {2}, DType::BF16));
  opt.step();
  EXPECT_EQ(opt.state().m[0].dtype(), DType::F32);
  // Step 1 moves by lr * sign(g) (up to eps): 1 - 0.125 and -1 + 0.125 are exact in bfloat16.
  EXPECT_EQ(w.to_vector(), (std::vector<double>{0.875, -0.875}));
}

TEST(AdamW, LargeParameterTakesTheParallelPathAndStaysDeterministic) {
  const int64_t n = 1 << 17;
  auto run = [&] {
    Tensor w = Tensor::randn({n}, 5);
    w.set_requires_grad(true);
    AdamW opt({{"w", w}}, {.lr = 1e-2});
    for (int s = 0; s < 2; ++s) {
      w.set_grad(Tensor::randn({n}, 50 + s));
      opt.step();
    }
    return w.to_vector();
  };
  const auto a = run(), b = run();
  EXPECT_EQ(a, b);
  // Spot-check one element against the reference.
  ReferenceAdamW ref{{.lr = 1e-2}, true, {Tensor::randn({n}, 5).to_vector()[777]}, {0.0}, {0.0}};
  for (int s = 0; s < 2; ++s) ref.step({Tensor::randn({n}, 50 + s).to_vector()[777]});
  EXPECT_NEAR(a[777], ref.p[0], tolerance(DType::F32, ref.p[0], 2));
}

TEST(AdamW, BadArgumentsNameTheValue) {
  Tensor w = Tensor::zeros({2});
  w.set_requires_grad(true);
  EXPECT_THROW(AdamW({{"w", w}}, {.lr = -1.0}), ValueError);
  try {
    AdamW({{"w", w}}, {.beta1 = 1.0});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("beta1"), std::string::npos) << e.what();
  }
  try {
    AdamW({{"w", w}, {"w", w}});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'w' given twice"), std::string::npos) << e.what();
  }
  Tensor ids = Tensor::zeros({2}, DType::I32);
  EXPECT_THROW(AdamW({{"ids", ids}}), DTypeError);
  AdamW ok({{"w", w}});
  EXPECT_THROW(ok.set_lr(std::nan("")), ValueError);
}

}  // namespace
}  // namespace strand
