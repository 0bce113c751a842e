// Global-norm clipping: the norm against a direct double computation, scaling only above the
// threshold, gradients missing or strided, non-finite norms, and bad max_norm.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "framework/core/error.h"
#include "framework/optim/clip.h"
#include "support/tolerance.h"

namespace strand {
namespace {

Tensor leaf_with_grad(const std::vector<double>& values, const Shape& shape, DType dt = DType::F32) {
  Tensor p = Tensor::zeros(shape, dt);
  p.set_requires_grad(true);
  p.set_grad(Tensor::from_vector(values, shape, dt));
  return p;
}

double direct_norm(const std::vector<std::vector<double>>& gs) {
  double s = 0;
  for (const auto& g : gs)
    for (double x : g) s += x * x;
  return std::sqrt(s);
}

constexpr double kF32 = testing::kEpsF32;

TEST(ClipGradNorm, NormIsTheL2NormOverAllGradients) {
  Tensor a = leaf_with_grad({3, 4}, {2});
  Tensor b = leaf_with_grad({1, 2, 2, 0, 0, 0}, {2, 3});
  Tensor none = Tensor::zeros({5});
  none.set_requires_grad(true);  // no gradient: counts as zero
  EXPECT_NEAR(optim::grad_norm({a, b, none}), std::sqrt(25.0 + 9.0), 4 * kF32 * std::sqrt(34.0));
}

TEST(ClipGradNorm, ScalesWhenAboveThreshold) {
  Tensor a = leaf_with_grad({3, 4}, {2});
  Tensor b = leaf_with_grad({12}, {1});
  const uint64_t version = a.grad().version();
  const double norm = optim::clip_grad_norm({a, b}, 1.0);
  EXPECT_NEAR(norm, 13.0, 4 * kF32 * 13.0);
  const double scale = 1.0 / (13.0 + 1e-6);
  const auto ga = a.grad().to_vector(), gb = b.grad().to_vector();
  EXPECT_NEAR(ga[0], 3 * scale, 4 * kF32);
  EXPECT_NEAR(ga[1], 4 * scale, 4 * kF32);
  EXPECT_NEAR(gb[0], 12 * scale, 4 * kF32);
  EXPECT_NEAR(optim::grad_norm({a, b}), 1.0, 8 * kF32) << "after clipping the norm is max_norm";
  EXPECT_GT(a.grad().version(), version);
}

TEST(ClipGradNorm, LeavesGradientsAloneBelowThreshold) {
  Tensor a = leaf_with_grad({0.3, -0.4}, {2}, DType::F64);
  EXPECT_NEAR(optim::clip_grad_norm({a}, 1.0), 0.5, 1e-15);
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{0.3, -0.4}));
}

TEST(ClipGradNorm, StridedAndHalfPrecisionGradients) {
  Tensor p = Tensor::zeros({3, 2});
  p.set_requires_grad(true);
  // A transposed view as the gradient: values [[1, 2], [3, 4], [5, 6]] read through strides.
  Tensor base = Tensor::from_vector({1, 3, 5, 2, 4, 6}, {2, 3});
  p.set_grad(base.as_strided({3, 2}, {1, 3}, 0));
  Tensor h = leaf_with_grad({2, 2}, {2}, DType::BF16);
  const double expect = direct_norm({{1, 2, 3, 4, 5, 6}, {2, 2}});
  EXPECT_NEAR(optim::clip_grad_norm({p, h}, expect / 2), expect, 4 * kF32 * expect);
  const auto g = p.grad().to_vector();
  EXPECT_NEAR(g[2], 3 * 0.5 * expect / (expect + 1e-6), 4 * kF32 * 3);
  EXPECT_NEAR(h.grad().to_vector()[0], 1.0, 1.0 / 128) << "bfloat16 has 8 significant bits";
}

TEST(ClipGradNorm, LargeGradientIsDeterministic) {
  const int64_t n = (1 << 17) + 3;
  Tensor p = Tensor::zeros({n}, DType::F64);
  p.set_requires_grad(true);
  p.set_grad(Tensor::randn({n}, 9, DType::F64));
  const auto g = p.grad().to_vector();
  double s = 0;
  for (double x : g) s += x * x;
  const double norm = optim::grad_norm({p});
  // Summation order differs from the serial loop: allow n ulps of the sum.
  EXPECT_NEAR(norm, std::sqrt(s), static_cast<double>(n) * 2.2e-16 * std::sqrt(s));
  EXPECT_EQ(norm, optim::grad_norm({p})) << "same result every call";
}

TEST(ClipGradNorm, NonFiniteNormLeavesGradientsForTheCaller) {
  Tensor a = leaf_with_grad({std::numeric_limits<double>::infinity(), 1.0}, {2});
  const double norm = optim::clip_grad_norm({a}, 1.0);
  EXPECT_TRUE(std::isinf(norm));
  EXPECT_EQ(a.grad().to_vector()[1], 1.0);
  Tensor b = leaf_with_grad({std::nan(""), 1.0}, {2});
  EXPECT_TRUE(std::isnan(optim::clip_grad_norm({b}, 1.0)));
}

TEST(ClipGradNorm, BadMaxNormIsAValueError) {
  Tensor a = leaf_with_grad({1.0}, {1});
  try {
    optim::clip_grad_norm({a}, 0.0);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("clip_grad_norm: max_norm must be > 0, got 0"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(optim::clip_grad_norm({a}, -1.0), ValueError);
}

}  // namespace
}  // namespace strand
