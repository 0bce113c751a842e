// ops::linear, the fused mixed-precision linear layer: float64 gradient checks of its backward
// (no rounding), its bf16/f16 forward against matmul of the rounded operands plus the bias,
// its gradients against the GEMMs of the rounded operands (written unrounded), the tied-head
// layout (a transposed weight view), and the column-sum-and-round kernel of its backward.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>

#include "framework/autograd/engine.h"
#include "framework/backend/column_sum.h"
#include "framework/core/error.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/linear.h"
#include "framework/ops/matmul.h"
#include "framework/ops/reduce.h"
#include "framework/ops/view.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

Tensor leaf(const Shape& shape, uint64_t seed, DType dtype = DType::F32) {
  Tensor t = Tensor::randn(shape, seed, dtype);
  t.set_requires_grad(true);
  return t;
}

Tensor rounded(const Tensor& t, DType low) { return t.copy_as(low, t.device()); }

TEST(Linear, GradientsMatchFiniteDifferences) {
  auto f64 = [](const V& x) { return ops::linear(x[0], x[1], x.size() > 2 ? x[2] : Tensor(), DType::F64); };
  const std::vector<OpCase> cases = {
      {"2-D with bias", {{3, 4}, {4, 5}, {5}}, f64},
      {"3-D with bias", {{2, 3, 4}, {4, 6}, {6}}, f64},
      {"no bias", {{5, 3}, {3, 2}}, f64},
      {"one vector", {{4}, {4, 3}, {3}}, f64},
      // The tied LM head: the weight is the transposed view of a [N, K] matrix.
      {"transposed weight view", {{3, 4}, {5, 4}},
       [](const V& x) { return ops::linear(x[0], ops::transpose(x[1], 0, 1), Tensor(), DType::F64); }},
  };
  for (const OpCase& c : cases) testing::run_op_case(c);
}

TEST(Linear, LowPrecisionForwardIsTheProductOfTheRoundedOperandsPlusTheBias) {
  for (DType low : {DType::BF16, DType::F16}) {
    const Tensor x = Tensor::randn({2, 5, 24}, 1), w = Tensor::randn({24, 40}, 2), b = Tensor::randn({40}, 3);
    const Tensor y = ops::linear(x, w, b, low);
    ASSERT_EQ(y.dtype(), DType::F32);
    const Tensor ref = ops::add(ops::matmul(rounded(x, low), rounded(w, low)), b);
    EXPECT_EQ(y.to_vector(), ref.to_vector()) << dtype_name(low);
    // An input already in the compute dtype is read as it is.
    EXPECT_EQ(ops::linear(rounded(x, low), w, b, low).to_vector(), ref.to_vector()) << dtype_name(low);
    // A transposed weight view is rounded in its storage order: the same product.
    const Tensor wt = Tensor::randn({40, 24}, 4);
    EXPECT_EQ(ops::linear(x, ops::transpose(wt, 0, 1), Tensor(), low).to_vector(),
              ops::matmul(rounded(x, low), ops::transpose(rounded(wt, low), 0, 1)).to_vector())
        << dtype_name(low);
  }
}

TEST(Linear, ABiasWiderThanAGemmTileIsAddedAtEveryColumn) {
  // 8,300 columns: the bf16 GEMM runs as two column tiles, each adding its part of the bias.
  const Tensor x = Tensor::randn({3, 16}, 1), w = Tensor::randn({16, 8300}, 2), b = Tensor::randn({8300}, 3);
  const Tensor ref = ops::add(ops::matmul(rounded(x, DType::BF16), rounded(w, DType::BF16)), b);
  EXPECT_EQ(ops::linear(x, w, b, DType::BF16).to_vector(), ref.to_vector());
}

TEST(Linear, LowPrecisionGradientsComeUnroundedFromTheGemmsOfTheRoundedOperands) {
  for (DType low : {DType::BF16, DType::F16}) {
    for (bool tied : {false, true}) {
      Tensor x = leaf({3, 7, 16}, 5), b = leaf({24}, 7);
      Tensor w = tied ? leaf({24, 16}, 6) : leaf({16, 24}, 6);
      const Tensor wv = tied ? ops::transpose(w, 0, 1) : w;
      const Tensor g = Tensor::randn({3, 7, 24}, 8);
      ops::linear(x, wv, tied ? Tensor() : b, low).backward(g);
      // The output gradient rounded once; each product of two rounded operands, float32 out.
      const Tensor g16 = rounded(g, low), x16 = rounded(x, low), w16 = rounded(w, low);
      const Tensor w16v = tied ? ops::transpose(w16, 0, 1) : w16;
      const Tensor dx = ops::matmul(g16, ops::transpose(w16v, 0, 1));
      const Tensor gflat = ops::reshape(g16, {21, 24}), xflat = ops::reshape(x16, {21, 16});
      const Tensor dw = tied ? ops::matmul(ops::transpose(gflat, 0, 1), xflat)
                             : ops::matmul(ops::transpose(xflat, 0, 1), gflat);
      EXPECT_EQ(x.grad().to_vector(), dx.to_vector()) << dtype_name(low) << " tied " << tied;
      EXPECT_EQ(w.grad().to_vector(), dw.to_vector()) << dtype_name(low) << " tied " << tied;
      EXPECT_NE(x.grad().to_vector(), rounded(x.grad(), DType::BF16).copy_as(DType::F32, Device::cpu()).to_vector())
          << "the input gradient is not rounded to the compute dtype";
      if (!tied) {  // the bias gradient sums the unrounded output gradient over the rows
        const std::vector<double> gv = g.to_vector(), db = b.grad().to_vector();
        for (int64_t j = 0; j < 24; ++j) {
          double s = 0;
          for (int64_t r = 0; r < 21; ++r) s += gv[static_cast<size_t>(r * 24 + j)];
          EXPECT_NEAR(db[static_cast<size_t>(j)], s, 1e-5 * (1 + std::fabs(s))) << j;
        }
      }
    }
  }
}

TEST(Linear, ColumnSumCastSumsInFloat64WhateverTheThreadCount) {
  const int64_t rows = 300, n = 200;  // above the parallel grain; n not a multiple of the block
  const Tensor x = Tensor::randn({rows, n}, 9);
  auto run = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Tensor out = Tensor::empty({rows, n}, DType::BF16), sum = Tensor::empty({n});
    backend::ColumnSumCastParams p;
    p.device = Device::cpu();
    p.dtype = DType::F32;
    p.out_dtype = DType::BF16;
    p.rows = rows;
    p.n = n;
    p.x = x.raw_data();
    p.out = out.raw_data();
    p.sum = sum.raw_data();
    backend::column_sum_cast(p);
    omp_set_num_threads(before);
    return std::make_pair(out, sum);
  };
  const auto [out1, sum1] = run(1);
  const auto [out2, sum2] = run(2);
  EXPECT_EQ(out1.to_vector(), rounded(x, DType::BF16).to_vector());
  EXPECT_EQ(sum1.to_vector(), sum2.to_vector());
  const float* xd = x.data<float>();
  const std::vector<double> s = sum1.to_vector();
  for (int64_t j = 0; j < n; ++j) {
    double acc = 0;  // row order, in float64, rounded once: the kernel's sum exactly
    for (int64_t r = 0; r < rows; ++r) acc += xd[r * n + j];
    EXPECT_EQ(s[static_cast<size_t>(j)], static_cast<float>(acc)) << j;
  }
}

TEST(Linear, RejectsBadInputs) {
  const Tensor x = Tensor::randn({3, 4}, 1), w = Tensor::randn({4, 5}, 2);
  EXPECT_THROW(ops::linear(x, Tensor::randn({5, 5}, 3), Tensor(), DType::BF16), ShapeError);
  EXPECT_THROW(ops::linear(x, w, Tensor::randn({4}, 4), DType::BF16), ShapeError);
  EXPECT_THROW(ops::linear(x, w, Tensor(), DType::F64), DTypeError);
  EXPECT_THROW(ops::linear(x.copy_as(DType::F16, Device::cpu()), w, Tensor(), DType::BF16), DTypeError);
}

}  // namespace
}  // namespace strand
