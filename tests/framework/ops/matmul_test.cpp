// matmul: float64 gradient checks over a table of cases, forward values against a naive triple
// loop in double, gradients needed by one input only, and the errors bad inputs raise.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "framework/autograd/engine.h"
#include "framework/core/error.h"
#include "framework/ops/matmul.h"
#include "framework/ops/view.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

Tensor mm(const V& x) { return ops::matmul(x[0], x[1]); }

std::vector<OpCase> matmul_cases() {
  return {
      {"2-D", {{3, 4}, {4, 5}}, mm},
      {"2-D odd 7x5x3", {{7, 5}, {5, 3}}, mm},
      {"2-D outer product", {{4, 1}, {1, 3}}, mm},
      {"2-D row times matrix", {{1, 6}, {6, 2}}, mm},
      {"batched 3-D", {{2, 3, 4}, {2, 4, 5}}, mm},
      {"batched 3-D odd", {{3, 7, 5}, {3, 5, 3}}, mm},
      {"batched 4-D", {{2, 3, 4, 5}, {2, 3, 5, 2}}, mm},
      {"shared right matrix, 3-D", {{2, 3, 4}, {4, 5}}, mm},
      {"shared right matrix, 4-D odd", {{2, 3, 7, 5}, {5, 3}}, mm},
      {"shared right matrix, batch of one", {{1, 3, 4}, {4, 2}}, mm},
      // A step-2 slice of columns fits no BLAS layout: the operand is copied first.
      {"column slice", {{3, 8}, {4, 5}}, [](const V& x) { return ops::matmul(ops::slice(x[0], 1, 0, 8, 2), x[1]); }},
      // Batch axes permuted as attention does ([B, N, H, D] -> [B, H, N, D]).
      {"permuted batch axes", {{2, 3, 2, 4}, {2, 2, 4, 3}},
       [](const V& x) { return ops::matmul(ops::permute(x[0], {0, 2, 1, 3}), x[1]); }},
      // A right matrix broadcast over the batch (batch stride 0).
      {"expanded right matrix", {{3, 2, 4}, {1, 4, 5}},
       [](const V& x) { return ops::matmul(x[0], ops::expand(x[1], {3, 4, 5})); }},
      // The same input on both sides, and a product of products.
      {"a @ a^T", {{3, 4}}, [](const V& x) { return ops::matmul(x[0], ops::transpose(x[0], 0, 1)); }},
      {"chain", {{2, 3, 4}, {4, 5}, {2, 5, 2}},
       [](const V& x) { return ops::matmul(ops::matmul(x[0], x[1]), x[2]); }},
  };
}

TEST(Matmul, GradientsMatchFiniteDifferences) {
  for (const OpCase& c : matmul_cases()) run_op_case(c);
}

// Naive product of a [..., M, K] and b [K, N] or [..., K, N] in double, with the standard
// rounding bound of a length-K dot product: K * eps * sum_k |a_ik b_kj| per element.
struct Reference {
  std::vector<double> values, bounds;
};

Reference naive_matmul(const Tensor& a, const Tensor& b) {
  const auto av = a.to_vector(), bv = b.to_vector();
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const int64_t batch = a.numel() / std::max<int64_t>(M * K, 1);
  const bool shared = b.dim() == 2;
  const double eps = strand::testing::dtype_eps(a.dtype());
  Reference r;
  for (int64_t e = 0; e < batch; ++e)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0, abs_sum = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double p = av[(e * M + i) * K + k] * bv[((shared ? 0 : e) * K + k) * N + j];
          s += p;
          abs_sum += std::abs(p);
        }
        r.values.push_back(s);
        r.bounds.push_back(static_cast<double>(K) * eps * abs_sum);
      }
  return r;
}

void expect_matches_naive(const Tensor& a, const Tensor& b, const std::string& label) {
  Tensor y = ops::matmul(a, b);
  Shape expected_shape(a.shape().begin(), a.shape().end() - 1);
  expected_shape.push_back(b.size(-1));
  ASSERT_EQ(y.shape(), expected_shape) << label;
  ASSERT_EQ(y.dtype(), a.dtype()) << label;
  const Reference r = naive_matmul(a, b);
  const auto yv = y.to_vector();
  ASSERT_EQ(yv.size(), r.values.size()) << label;
  for (size_t i = 0; i < yv.size(); ++i)
    ASSERT_NEAR(yv[i], r.values[i], r.bounds[i] + std::numeric_limits<double>::min()) << label << " element " << i;
}

TEST(Matmul, ForwardMatchesNaiveLoop) {
  for (DType dt : {DType::F32, DType::F64}) {
    const std::string d = dtype_name(dt);
    expect_matches_naive(Tensor::uniform({7, 5}, 1, -1, 1, dt), Tensor::uniform({5, 3}, 2, -1, 1, dt), d + " 7x5x3");
    // Large enough for OpenBLAS to use its threads.
    expect_matches_naive(Tensor::uniform({130, 200}, 3, -1, 1, dt), Tensor::uniform({200, 90}, 4, -1, 1, dt),
                         d + " 130x200x90");
    expect_matches_naive(Tensor::uniform({4, 6, 9, 5}, 5, -1, 1, dt), Tensor::uniform({4, 6, 5, 7}, 6, -1, 1, dt),
                         d + " batched 4-D");
    // Many small products: one per OpenMP thread.
    expect_matches_naive(Tensor::uniform({16, 12, 10}, 7, -1, 1, dt), Tensor::uniform({16, 10, 11}, 8, -1, 1, dt),
                         d + " batch of 16");
    expect_matches_naive(Tensor::uniform({3, 33, 17}, 9, -1, 1, dt), Tensor::uniform({17, 20}, 10, -1, 1, dt),
                         d + " shared right matrix");
    // Transposed views of both sides (BLAS Trans), also on a batched left side that cannot be flattened.
    Tensor at = ops::transpose(Tensor::uniform({3, 17, 33}, 11, -1, 1, dt), -1, -2);
    Tensor bt = ops::transpose(Tensor::uniform({20, 17}, 12, -1, 1, dt), 0, 1);
    expect_matches_naive(at, bt, d + " transposed views");
    Tensor bbt = ops::transpose(Tensor::uniform({3, 20, 17}, 13, -1, 1, dt), -1, -2);
    expect_matches_naive(at, bbt, d + " batched transposed views");
  }
}

TEST(Matmul, EmptyInnerDimensionGivesZeros) {
  Tensor y = ops::matmul(Tensor::zeros({3, 0}), Tensor::zeros({0, 2}));
  EXPECT_EQ(y.shape(), (Shape{3, 2}));
  EXPECT_EQ(y.to_vector(), std::vector<double>(6, 0.0));
  EXPECT_EQ(ops::matmul(Tensor::zeros({2, 0, 4}), Tensor::zeros({4, 5})).shape(), (Shape{2, 0, 5}));
}

TEST(Matmul, GradientOnlyForTheInputThatNeedsOne) {
  Tensor a = Tensor::uniform({2, 3, 4}, 1, -1, 1, DType::F64);
  Tensor b = Tensor::uniform({4, 5}, 2, -1, 1, DType::F64);
  a.set_requires_grad(true);
  Tensor y = ops::matmul(a, b);
  Tensor g = Tensor::uniform(y.shape(), 3, -1, 1, DType::F64);
  y.backward(g);
  EXPECT_FALSE(b.grad().defined());
  ASSERT_TRUE(a.grad().defined());
  // dA = g @ b^T, checked against the naive loop.
  const Reference r = naive_matmul(g, ops::contiguous(ops::transpose(b, 0, 1)));
  const auto da = a.grad().to_vector();
  ASSERT_EQ(da.size(), r.values.size());
  for (size_t i = 0; i < da.size(); ++i) EXPECT_NEAR(da[i], r.values[i], r.bounds[i]);
}

TEST(Matmul, SharedRightMatrixGradientSumsOverTheBatch) {
  Tensor a = Tensor::uniform({3, 4, 5}, 1, -1, 1, DType::F64);
  Tensor b = Tensor::uniform({5, 2}, 2, -1, 1, DType::F64);
  b.set_requires_grad(true);
  Tensor y = ops::matmul(a, b);
  y.backward(Tensor::ones(y.shape(), DType::F64));
  // dB[k, j] = sum over batch and rows of a[..., i, k] (the upstream gradient is all ones).
  const auto av = a.to_vector(), db = b.grad().to_vector();
  for (int64_t k = 0; k < 5; ++k) {
    double s = 0;
    for (int64_t r = 0; r < 12; ++r) s += av[r * 5 + k];
    for (int64_t j = 0; j < 2; ++j) EXPECT_NEAR(db[k * 2 + j], s, 12 * std::numeric_limits<double>::epsilon() * 12);
  }
  EXPECT_FALSE(a.grad().defined());
}

void expect_shape_error(const Tensor& a, const Tensor& b, const std::vector<std::string>& fragments) {
  try {
    ops::matmul(a, b);
    FAIL() << "expected ShapeError for " << describe(a) << " @ " << describe(b);
  } catch (const ShapeError& e) {
    for (const std::string& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << "message: " << e.what() << " lacks " << f;
  }
}

TEST(Matmul, BadInputNamesTheOpAndShapes) {
  expect_shape_error(Tensor::zeros({2, 3}), Tensor::zeros({4, 5}), {"matmul", "[2, 3]", "[4, 5]"});
  expect_shape_error(Tensor::zeros({2, 3, 4}), Tensor::zeros({2, 5, 6}), {"matmul", "[2, 3, 4]", "[2, 5, 6]"});
  expect_shape_error(Tensor::zeros({3}), Tensor::zeros({3, 4}), {"matmul", "[3]", "[3, 4]"});
  expect_shape_error(Tensor::zeros({2, 3}), Tensor::zeros({3}), {"matmul", "[2, 3]", "[3]"});
  expect_shape_error(Tensor::zeros({2, 3, 4}), Tensor::zeros({3, 4, 5}), {"matmul", "batch", "[2, 3, 4]", "[3, 4, 5]"});
  expect_shape_error(Tensor::zeros({3, 4}), Tensor::zeros({2, 4, 5}), {"matmul", "[3, 4]", "[2, 4, 5]"});
  try {
    ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 4}, DType::F64));
    FAIL() << "expected DTypeError";
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("matmul"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::matmul(Tensor::zeros({2, 3}, DType::I32), Tensor::zeros({3, 4}, DType::I32)), DTypeError);
}

}  // namespace
}  // namespace strand
