// Mixed-precision building blocks: the cast op's gradient (float64 check), matmul of two
// bfloat16/float16 operands into float32, the gradient sum of bf16/f16 tensors, and the
// autocast guard that makes Linear and attention read the compute dtype.
#include <gtest/gtest.h>

#include <cmath>

#include "framework/autograd/engine.h"
#include "framework/core/error.h"
#include "framework/nn/attention.h"
#include "framework/nn/autocast.h"
#include "framework/nn/linear.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/matmul.h"
#include "framework/ops/reduce.h"
#include "framework/ops/view.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand::nn {
namespace {

Tensor leaf(const Shape& shape, uint64_t seed, DType dtype = DType::F32) {
  Tensor t = Tensor::randn(shape, seed, dtype);
  t.set_requires_grad(true);
  return t;
}

// Each value of t rounded to `low` and back (what the compute dtype can hold).
Tensor rounded(const Tensor& t, DType low) { return t.copy_as(low, t.device()).copy_as(DType::F32, t.device()); }

TEST(Autocast, CastGradientMatchesFiniteDifferencesInFloat64) {
  // float64 -> float64 is exact; through float32 the difference quotient carries float32's
  // rounding (about 6e-8 |x| / h), so that check takes a larger step and a matching atol.
  Tensor x = leaf({3, 4}, 1, DType::F64);
  testing::expect_gradients_match([](const std::vector<Tensor>& in) { return ops::to_dtype(in[0], DType::F64); },
                                  {x}, "to_dtype f64");
  testing::GradcheckOptions coarse;
  coarse.eps = 1e-3;
  coarse.atol = 1e-4;
  testing::expect_gradients_match(
      [](const std::vector<Tensor>& in) { return ops::to_dtype(ops::to_dtype(in[0], DType::F32), DType::F64); }, {x},
      "to_dtype f64 -> f32 -> f64", coarse);
}

TEST(Autocast, LowPrecisionMatmulIsTheFloat32ProductOfTheRoundedOperands) {
  for (DType low : {DType::BF16, DType::F16}) {
    const Tensor a = Tensor::randn({2, 5, 7}, 3), b = Tensor::randn({7, 6}, 4);
    const Tensor y = ops::matmul(a.copy_as(low, Device::cpu()), b.copy_as(low, Device::cpu()));
    ASSERT_EQ(y.dtype(), DType::F32) << dtype_name(low);
    const Tensor ref = ops::matmul(rounded(a, low), rounded(b, low));
    EXPECT_EQ(y.to_vector(), ref.to_vector()) << dtype_name(low);
    // A mix of float32 and a low dtype is refused: autocast casts both operands.
    EXPECT_THROW(ops::matmul(a, b.copy_as(low, Device::cpu())), DTypeError);
  }
}

TEST(Autocast, LowPrecisionMatmulGradientsAreTheRoundedFloat32Ones) {
  // Leaves are float32 (the master copy); the casts round them, the product is float32, and
  // each gradient comes back rounded to the compute dtype, then float32.
  for (DType low : {DType::BF16, DType::F16}) {
    Tensor a = leaf({4, 3}, 5), b = leaf({3, 2}, 6);
    ops::sum(ops::matmul(ops::to_dtype(a, low), ops::to_dtype(b, low))).backward();
    const Tensor ones = Tensor::ones({4, 2});
    const Tensor da = rounded(ops::matmul(ones, ops::transpose(rounded(b, low), 0, 1)), low);
    const Tensor db = rounded(ops::matmul(ops::transpose(rounded(a, low), 0, 1), ones), low);
    EXPECT_EQ(a.grad().to_vector(), da.to_vector()) << dtype_name(low);
    EXPECT_EQ(b.grad().to_vector(), db.to_vector()) << dtype_name(low);
  }
}

TEST(Autocast, LowPrecisionMatmulBackwardRoundsTheOutputGradientOnce) {
  // The float32 output gradient is rounded to the compute dtype before both products (as under
  // PyTorch's autocast, where the product is bf16): with a gradient that bf16 cannot hold, the
  // result is that of the rounded gradient, not of the float32 one.
  for (DType low : {DType::BF16, DType::F16}) {
    Tensor a = leaf({4, 3}, 5), b = leaf({3, 2}, 6);
    const Tensor g = Tensor::randn({4, 2}, 7);
    ops::sum(ops::mul(ops::matmul(ops::to_dtype(a, low), ops::to_dtype(b, low)), g)).backward();
    const Tensor gr = rounded(g, low);
    const Tensor da = rounded(ops::matmul(gr, ops::transpose(rounded(b, low), 0, 1)), low);
    const Tensor db = rounded(ops::matmul(ops::transpose(rounded(a, low), 0, 1), gr), low);
    EXPECT_EQ(a.grad().to_vector(), da.to_vector()) << dtype_name(low);
    EXPECT_EQ(b.grad().to_vector(), db.to_vector()) << dtype_name(low);
    const Tensor da_unrounded = rounded(ops::matmul(g, ops::transpose(rounded(b, low), 0, 1)), low);
    EXPECT_NE(da.to_vector(), da_unrounded.to_vector()) << "the test's gradient must need rounding";
  }
}

TEST(Autocast, GradientsOfALowPrecisionTensorUsedTwiceAreSummed) {
  // y (bf16 / f16) feeds two paths, so backward sums two gradients of y's dtype (refused before).
  for (DType low : {DType::BF16, DType::F16}) {
    Tensor x = leaf({5}, 8);
    const Tensor y = ops::to_dtype(x, low);
    const Tensor u = ops::to_dtype(y, DType::F32), w = ops::to_dtype(y, DType::F32);
    ops::sum(ops::add(ops::mul_scalar(u, 3.0), ops::mul_scalar(w, 0.5))).backward();
    for (double g : x.grad().to_vector()) EXPECT_EQ(g, 3.5) << dtype_name(low);
  }
}

TEST(Autocast, GuardMakesLinearReadTheComputeDtypeAndRestoresFloat32After) {
  const Linear lin(6, 4, true, 11);
  const Tensor x = Tensor::randn({3, 6}, 12);
  const Tensor fp32 = lin.forward(x);
  EXPECT_EQ(autocast_dtype(), DType::F32);
  {
    const AutocastGuard guard(DType::BF16);
    EXPECT_EQ(autocast_dtype(), DType::BF16);
    const Tensor y = lin.forward(x);
    ASSERT_EQ(y.dtype(), DType::F32);
    const Tensor ref = ops::add(ops::matmul(rounded(x, DType::BF16), rounded(lin.weight(), DType::BF16)), lin.bias());
    EXPECT_EQ(y.to_vector(), ref.to_vector());
    EXPECT_NE(y.to_vector(), fp32.to_vector()) << "bf16 rounding changes the product";
  }
  EXPECT_EQ(autocast_dtype(), DType::F32);
  EXPECT_EQ(lin.forward(x).to_vector(), fp32.to_vector());
  EXPECT_THROW(AutocastGuard(DType::I32), DTypeError);
}

TEST(Autocast, AttentionInBf16StaysWithinBf16RoundingOfFloat32) {
  // bf16 keeps 8 significant bits: each rounding moves a value by at most 2^-9 of itself. The
  // block rounds x and the weights (c_attn), q, k, v, then o and c_proj's weight: a few such
  // roundings, scaled by the output's magnitude, bound the difference.
  constexpr double kBf16Eps = 1.0 / 256;
  AttentionOptions options;
  options.mask.causal = true;
  options.init_std = options.proj_init_std = 0.3;
  options.seed = 21;
  const MultiHeadAttention attn(32, 4, options);
  const Tensor x = Tensor::randn({2, 24, 32}, 22);
  const Tensor positions = Tensor::arange(24, DType::I32);
  const std::vector<double> ref = attn.forward(x, positions).to_vector();
  std::vector<double> low;
  {
    const AutocastGuard guard(DType::BF16);
    low = attn.forward(x, positions).to_vector();
  }
  double scale = 0, worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    scale = std::max(scale, std::abs(ref[i]));
    worst = std::max(worst, std::abs(low[i] - ref[i]));
  }
  EXPECT_GT(worst, 0.0) << "q, k, v and the projections really are rounded";
  EXPECT_LE(worst, 8 * kBf16Eps * scale + 64 * testing::dtype_eps(DType::F32));
}

}  // namespace
}  // namespace strand::nn
