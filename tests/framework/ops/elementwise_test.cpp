// Elementwise, view and reduction ops: float64 gradient checks over a table of cases, forward
// values against direct computation, and the errors bad shapes and dtypes raise.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "framework/core/allocator.h"
#include "framework/core/error.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/reduce.h"
#include "framework/ops/view.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

std::vector<OpCase> elementwise_cases() {
  return {
      {"add", {{3, 4}, {3, 4}}, [](const V& x) { return ops::add(x[0], x[1]); }},
      {"add broadcast row", {{3, 4}, {4}}, [](const V& x) { return ops::add(x[0], x[1]); }},
      {"add broadcast both", {{3, 1, 5}, {1, 4, 5}}, [](const V& x) { return ops::add(x[0], x[1]); }},
      {"sub broadcast column", {{3, 4}, {3, 1}}, [](const V& x) { return ops::sub(x[0], x[1]); }},
      {"mul broadcast", {{2, 3, 4}, {3, 4}}, [](const V& x) { return ops::mul(x[0], x[1]); }},
      {"div", {{3, 4}, {3, 4}}, [](const V& x) { return ops::div(x[0], x[1]); }, 0.5, 2.0},
      {"div broadcast", {{2, 5}, {1, 5}}, [](const V& x) { return ops::div(x[0], x[1]); }, 0.5, 2.0},
      {"add_scalar", {{4, 3}}, [](const V& x) { return ops::add_scalar(x[0], 2.5); }},
      {"mul_scalar", {{4, 3}}, [](const V& x) { return ops::mul_scalar(x[0], -1.5); }},
      {"pow_scalar", {{4, 3}}, [](const V& x) { return ops::pow_scalar(x[0], 2.5); }, 0.5, 2.0},
      {"neg", {{5, 2}}, [](const V& x) { return ops::neg(x[0]); }},
      {"exp", {{5, 2}}, [](const V& x) { return ops::exp(x[0]); }},
      {"log", {{5, 2}}, [](const V& x) { return ops::log(x[0]); }, 0.5, 3.0},
      {"sqrt", {{5, 2}}, [](const V& x) { return ops::sqrt(x[0]); }, 0.5, 3.0},
      {"tanh", {{5, 2}}, [](const V& x) { return ops::tanh(x[0]); }, -2.0, 2.0},
      {"square", {{5, 2}}, [](const V& x) { return ops::square(x[0]); }},
      {"gelu", {{6, 7}}, [](const V& x) { return ops::gelu(x[0]); }, -3.0, 3.0},
      {"silu", {{6, 7}}, [](const V& x) { return ops::silu(x[0]); }, -3.0, 3.0},
      {"sum all", {{3, 4}}, [](const V& x) { return ops::sum(x[0]); }},
      {"sum axis 0", {{3, 4}}, [](const V& x) { return ops::sum(x[0], {0}); }},
      {"sum axes keepdim", {{2, 3, 4}}, [](const V& x) { return ops::sum(x[0], {0, 2}, true); }},
      {"mean last", {{2, 3, 5}}, [](const V& x) { return ops::mean(x[0], {-1}); }},
      {"max axis 1", {{4, 6}}, [](const V& x) { return ops::max(x[0], {1}); }},
      {"max all", {{3, 5}}, [](const V& x) { return ops::max(x[0]); }},
      {"reshape", {{3, 4}}, [](const V& x) { return ops::mul(ops::reshape(x[0], {2, -1}), ops::reshape(x[0], {2, 6})); }},
      {"permute", {{2, 3, 4}}, [](const V& x) { return ops::contiguous(ops::permute(x[0], {2, 0, 1})); }},
      {"slice step", {{7, 3}}, [](const V& x) { return ops::mul_scalar(ops::slice(x[0], 0, 1, 7, 2), 3.0); }},
      {"expand", {{3, 1}}, [](const V& x) { return ops::mul(ops::expand(x[0], {2, 3, 4}), ops::expand(x[0], {2, 3, 4})); }},
      {"unsqueeze squeeze", {{3, 4}}, [](const V& x) { return ops::squeeze(ops::exp(ops::unsqueeze(x[0], 1)), 1); }},
      {"shared subgraph", {{3, 4}}, [](const V& x) { Tensor t = ops::tanh(x[0]); return ops::mul(t, ops::add(t, x[0])); }},
  };
}

TEST(ElementwiseOps, GradientsMatchFiniteDifferences) {
  for (const OpCase& c : elementwise_cases()) run_op_case(c);
}

TEST(ElementwiseOps, ForwardValues) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector({10, 20, 30}, {3});
  EXPECT_EQ(ops::add(a, b).to_vector(), (std::vector<double>{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ(ops::sum(a, {0}).to_vector(), (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(ops::max(a, {1}).to_vector(), (std::vector<double>{3, 6}));
  EXPECT_EQ(ops::contiguous(ops::transpose(a, 0, 1)).to_vector(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  EXPECT_NEAR(ops::gelu(Tensor::from_vector({1.0}, {1}, DType::F64)).item(), 0.8411919906082768, 1e-12);
}

TEST(ElementwiseOps, ArgmaxTakesTheFirstMaximum) {
  // Rows [1 7 7], [9 2 9]: ties go to the first position; over axis 0 of the transposed view too.
  Tensor a = Tensor::from_vector({1, 7, 7, 9, 2, 9}, {2, 3});
  const Tensor rows = ops::argmax(a, -1);
  EXPECT_EQ(rows.dtype(), DType::I32);
  EXPECT_EQ(rows.shape(), (Shape{2}));
  EXPECT_EQ(rows.to_vector(), (std::vector<double>{1, 0}));
  EXPECT_EQ(ops::argmax(ops::transpose(a, 0, 1), 0).to_vector(), (std::vector<double>{1, 0}));
  EXPECT_EQ(ops::argmax(a, 0).to_vector(), (std::vector<double>{1, 0, 1}));
}

TEST(ElementwiseOps, MaxAndArgmaxMatchAScanThatMovesOnlyOnALargerValue) {
  // Long random rows with a planted repeated maximum, a first NaN, and signed zeros: the value
  // and the first position a left-to-right scan finds (NaN wins and stays; +0 and -0 tie).
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> v = Tensor::uniform({4, 1000}, 3, -1, 1).to_vector();
  v[517] = v[900] = 5;                                      // row 0: max 5 first at 517
  v[1000 + 20] = nan, v[1000 + 30] = 9, v[1000 + 40] = nan;  // row 1: the first NaN, at 20
  for (int j = 0; j < 1000; ++j) v[2000 + j] = j % 3 == 0 ? -0.0 : -1.0;  // row 2: -0 at 0
  v[2000 + 6] = 0.0;
  v[3000 + 999] = 7;  // row 3: the last element
  const Tensor a = Tensor::from_vector(v, {4, 1000});
  EXPECT_EQ(ops::argmax(a, -1).to_vector(), (std::vector<double>{517, 20, 0, 999}));
  const std::vector<double> m = ops::max(a, {1}).to_vector();
  EXPECT_EQ(m[0], 5);
  EXPECT_TRUE(std::isnan(m[1]));
  EXPECT_EQ(m[2], 0.0);
  EXPECT_TRUE(std::signbit(m[2])) << "the value at the first position, -0";
  EXPECT_EQ(m[3], 7);
}

TEST(ElementwiseOps, LargeInputsTakeTheParallelPath) {
  const int64_t n = 1 << 18;
  Tensor a = Tensor::uniform({n}, 1, -1, 1);
  Tensor b = Tensor::uniform({n}, 2, -1, 1);
  const auto av = a.to_vector(), bv = b.to_vector(), cv = ops::mul(a, b).to_vector();
  for (int64_t i = 0; i < n; i += 997) ASSERT_FLOAT_EQ(cv[i], static_cast<float>(av[i] * bv[i]));
  EXPECT_NEAR(ops::sum(a).item(), [&] { double s = 0; for (double v : av) s += v; return s; }(), 1e-2);
}

TEST(ElementwiseOps, BadInputNamesTheOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  try {
    ops::add(a, b);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("add"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[4]"), std::string::npos);
  }
  EXPECT_THROW(ops::mul(a, Tensor::zeros({2, 3}, DType::F64)), DTypeError);
  EXPECT_THROW(ops::exp(Tensor::zeros({2}, DType::I32)), DTypeError);
  EXPECT_THROW(ops::reshape(a, {4, 2}), ShapeError);
  EXPECT_THROW(ops::sum(a, {2}), ValueError);
  EXPECT_THROW(ops::slice(a, 1, 2, 1), ValueError);
}

TEST(ElementwiseOps, ReshapeOfTransposeCopiesWhenItMust) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor t = ops::transpose(a, 0, 1);  // [3, 2], not contiguous
  Tensor r = ops::reshape(t, {6});
  EXPECT_EQ(r.to_vector(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  Tensor v = ops::reshape(a, {3, 2});  // a view
  EXPECT_EQ(v.storage(), a.storage());
}

// The activation's backward writes over the incoming gradient when it holds the only handle on
// it: the same bits as into a fresh buffer, and no second [n] buffer during the backward.
TEST(ElementwiseOps, ActivationBackwardReusesAnUnsharedGradient) {
  const int64_t n = int64_t{1} << 20;
  for (const bool in_place : {true, false}) {
    Tensor x = Tensor::randn({n}, 4).set_requires_grad(true);
    Tensor y = ops::gelu(x);
    // mul_scalar's backward hands a fresh buffer on (in place), or the root gradient the
    // caller still holds goes straight in (shared, so a fresh result).
    Tensor root = in_place ? ops::mul_scalar(y, 2.0) : y;
    const Tensor g = in_place ? Tensor::ones({n}) : Tensor::full({n}, 2.0);
    const int64_t base = memory::stats(Device::cpu()).current_bytes;
    memory::reset_peak(Device::cpu());
    root.backward(g);
    const int64_t peak = memory::stats(Device::cpu()).peak_bytes - base, bytes = n * 4;
    // In place: the scaled gradient is the only new buffer; otherwise the result is one more.
    if (in_place) EXPECT_LE(peak, bytes + bytes / 8) << "peak " << peak;
    else EXPECT_GE(peak, bytes) << "peak " << peak;
    const Tensor expect = Tensor::full({n}, 2.0);
    Tensor x2 = Tensor::randn({n}, 4).set_requires_grad(true);
    ops::gelu(x2).backward(expect);
    EXPECT_EQ(x.grad().to_vector(), x2.grad().to_vector()) << in_place;
  }
}

}  // namespace
}  // namespace strand
