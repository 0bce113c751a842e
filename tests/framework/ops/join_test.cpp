// concat, split, stack: float64 gradient checks (including split pieces that get no gradient),
// values against direct indexing, views, other dtypes, and bad shapes and sizes.
#include <gtest/gtest.h>

#include "framework/core/error.h"
#include "framework/ops/join.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

std::vector<OpCase> join_cases() {
  return {
      {"concat axis 0", {{2, 3}, {4, 3}, {1, 3}}, [](const V& x) { return ops::concat(x, 0); }},
      {"concat axis 1", {{2, 3}, {2, 1}, {2, 4}}, [](const V& x) { return ops::concat(x, 1); }},
      {"concat axis -2 of 3-d", {{2, 3, 2}, {2, 1, 2}}, [](const V& x) { return ops::concat(x, -2); }},
      {"concat same input twice", {{2, 3}}, [](const V& x) { return ops::concat({x[0], ops::square(x[0])}, 0); }},
      {"split recombined", {{3, 4}},
       [](const V& x) {
         V p = ops::split(x[0], {1, 2, 1}, 1);
         return ops::concat({ops::square(p[0]), p[2], ops::exp(p[1])}, 1);
       }},
      {"split with unused pieces", {{5, 3}},
       [](const V& x) { return ops::mul_scalar(ops::split(x[0], {2, 2, 1}, 0)[1], 3.0); }},
      {"split axis -1 with empty piece", {{2, 5}},
       [](const V& x) {
         V p = ops::split(x[0], {0, 3, 2}, -1);
         return ops::mul(p[1], ops::concat({p[2], p[0], ops::slice(p[1], 1, 0, 1)}, 1));
       }},
      {"stack axis 0", {{2, 3}, {2, 3}, {2, 3}}, [](const V& x) { return ops::stack(x, 0); }},
      {"stack axis 1", {{2, 3}, {2, 3}}, [](const V& x) { return ops::stack(x, 1); }},
      {"stack last axis", {{2, 3}, {2, 3}}, [](const V& x) { return ops::stack({x[0], ops::tanh(x[1])}, -1); }},
  };
}

TEST(Join, GradientsMatchFiniteDifferences) {
  for (const OpCase& c : join_cases()) run_op_case(c);
}

TEST(Join, ConcatValues) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
  Tensor b = Tensor::from_vector({5, 6}, {2, 1});
  EXPECT_EQ(ops::concat({a, b}, 1).to_vector(), (std::vector<double>{1, 2, 5, 3, 4, 6}));
  EXPECT_EQ(ops::concat({a, ops::transpose(a, 0, 1)}, 0).to_vector(), (std::vector<double>{1, 2, 3, 4, 1, 3, 2, 4}));
  // Integer ids concatenate too (no gradient involved).
  Tensor i = Tensor::from_vector({7, 8}, {2}, DType::I32);
  Tensor j = ops::concat({i, i}, 0);
  EXPECT_EQ(j.dtype(), DType::I32);
  EXPECT_EQ(j.to_vector(), (std::vector<double>{7, 8, 7, 8}));
}

TEST(Join, LargeConcatMatchesIndexing) {
  // Large enough for the parallel copy; compared element by element with direct indexing.
  Tensor a = Tensor::uniform({300, 7, 40}, 1, -1, 1), b = Tensor::uniform({300, 5, 40}, 2, -1, 1);
  const auto y = ops::concat({a, b}, 1).to_vector(), av = a.to_vector(), bv = b.to_vector();
  for (int64_t r = 0; r < 300; ++r)
    for (int64_t k = 0; k < 12; ++k)
      for (int64_t c = 0; c < 40; ++c) {
        const double expected = k < 7 ? av[(r * 7 + k) * 40 + c] : bv[(r * 5 + (k - 7)) * 40 + c];
        ASSERT_EQ(y[(r * 12 + k) * 40 + c], expected) << r << " " << k << " " << c;
      }
}

TEST(Join, SplitReturnsViewsWithTheRightValues) {
  Tensor x = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4});
  V p = ops::split(x, {3, 1}, 1);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].shape(), (Shape{3, 3}));
  EXPECT_EQ(p[1].shape(), (Shape{3, 1}));
  EXPECT_EQ(p[0].to_vector(), (std::vector<double>{0, 1, 2, 4, 5, 6, 8, 9, 10}));
  EXPECT_EQ(p[1].to_vector(), (std::vector<double>{3, 7, 11}));
  EXPECT_EQ(p[1].storage(), x.storage());
  V rows = ops::split(x, {1, 2}, 0);
  EXPECT_EQ(rows[1].to_vector(), (std::vector<double>{4, 5, 6, 7, 8, 9, 10, 11}));
}

TEST(Join, SplitGradientFillsZerosForUnusedPieces) {
  Tensor x = Tensor::uniform({4, 2}, 3, -1, 1, DType::F64);
  x.set_requires_grad(true);
  V p = ops::split(x, {1, 3}, 0);
  ops::sum(p[1]).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 0, 1, 1, 1, 1, 1, 1}));
}

TEST(Join, StackValues) {
  Tensor a = Tensor::from_vector({1, 2, 3}, {3}), b = Tensor::from_vector({4, 5, 6}, {3});
  Tensor s0 = ops::stack({a, b}, 0), s1 = ops::stack({a, b}, 1);
  EXPECT_EQ(s0.shape(), (Shape{2, 3}));
  EXPECT_EQ(s0.to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(s1.shape(), (Shape{3, 2}));
  EXPECT_EQ(s1.to_vector(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
}

TEST(Join, BadInputNamesTheOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 4});
  try {
    ops::concat({a, b}, 0);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("concat"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("[3, 4]"), std::string::npos) << m;
  }
  EXPECT_THROW(ops::concat({a, Tensor::zeros({2, 3, 1})}, 0), ShapeError);
  EXPECT_THROW(ops::concat({a, Tensor::zeros({2, 3}, DType::F64)}, 0), DTypeError);
  EXPECT_THROW(ops::concat({}, 0), ValueError);
  EXPECT_THROW(ops::concat({a, a}, 2), ValueError);
  try {
    ops::split(a, {1, 1}, 1);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("split"), std::string::npos) << m;
    EXPECT_NE(m.find("[1, 1]"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
  }
  EXPECT_THROW(ops::split(a, {4, -1}, 1), ValueError);
  EXPECT_THROW(ops::split(a, {3}, 3), ValueError);
  try {
    ops::stack({a, Tensor::zeros({3, 2})}, 0);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("stack"), std::string::npos) << m;
    EXPECT_NE(m.find("[3, 2]"), std::string::npos) << m;
  }
  EXPECT_THROW(ops::stack({}, 0), ValueError);
  EXPECT_THROW(ops::stack({a, a}, 3), ValueError);
}

}  // namespace
}  // namespace strand
