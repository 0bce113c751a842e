// Softmax and log-softmax: float64 gradient checks (last axis, axis 0, middle axis, odd sizes),
// forward values against a direct double computation, float32/float64 agreement, large and
// masked inputs, and the errors bad input raises.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "framework/core/error.h"
#include "framework/ops/softmax.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

// Error allowance for a value computed from a row of n terms: n rounding steps of the dtype,
// relative to the magnitudes involved. x - max cancels, so the inputs' size counts (x_abs), not
// only the result's: log_softmax(1000, ...) carries 1000 * eps of rounding.
double tolerance(DType dt, int64_t n, double ref, double x_abs = 0.0) {
  const double eps = strand::testing::dtype_eps(dt);
  return static_cast<double>(n) * eps * (1.0 + std::abs(ref) + x_abs);
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double a : v) m = std::max(m, std::abs(a));
  return m;
}

// Softmax (or log-softmax) of a row-major [outer, n, inner] array along the middle axis, in double.
std::vector<double> reference(const std::vector<double>& x, int64_t outer, int64_t n, int64_t inner, bool log) {
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t j) { return static_cast<size_t>((o * n + j) * inner + i); };
      double m = -INFINITY;
      for (int64_t j = 0; j < n; ++j) m = std::max(m, x[at(j)]);
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += std::exp(x[at(j)] - m);
      for (int64_t j = 0; j < n; ++j) y[at(j)] = log ? x[at(j)] - m - std::log(s) : std::exp(x[at(j)] - m) / s;
    }
  return y;
}

// x_abs: the largest input magnitude (see tolerance).
void expect_close(const Tensor& got, const std::vector<double>& ref, int64_t n, double x_abs, const std::string& label) {
  const auto g = got.to_vector();
  ASSERT_EQ(g.size(), ref.size()) << label;
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(g[i], ref[i], tolerance(got.dtype(), n, ref[i], x_abs)) << label << " element " << i;
}

std::vector<OpCase> softmax_cases() {
  return {
      {"softmax last axis", {{3, 5}}, [](const V& x) { return ops::softmax(x[0]); }, -2.0, 2.0},
      {"softmax axis 0", {{5, 3}}, [](const V& x) { return ops::softmax(x[0], 0); }, -2.0, 2.0},
      {"softmax middle axis", {{2, 3, 7}}, [](const V& x) { return ops::softmax(x[0], 1); }, -2.0, 2.0},
      {"softmax 1-d odd", {{7}}, [](const V& x) { return ops::softmax(x[0], 0); }, -2.0, 2.0},
      {"log_softmax last axis", {{3, 5}}, [](const V& x) { return ops::log_softmax(x[0]); }, -2.0, 2.0},
      {"log_softmax axis 0", {{5, 3}}, [](const V& x) { return ops::log_softmax(x[0], 0); }, -2.0, 2.0},
      {"log_softmax axis -2", {{3, 7, 2}}, [](const V& x) { return ops::log_softmax(x[0], -2); }, -2.0, 2.0},
      {"softmax then log_softmax", {{4, 5}},
       [](const V& x) { return ops::log_softmax(ops::mul(ops::softmax(x[0], 0), x[0]), 1); }, -2.0, 2.0},
  };
}

TEST(SoftmaxOps, GradientsMatchFiniteDifferences) {
  for (const OpCase& c : softmax_cases()) run_op_case(c);
}

TEST(SoftmaxOps, ForwardMatchesDirectComputation) {
  const Shape shape{4, 5, 6};
  Tensor x = Tensor::uniform(shape, 3, -4.0, 4.0, DType::F64);
  const auto xv = x.to_vector();
  for (bool log : {false, true}) {
    const char* name = log ? "log_softmax" : "softmax";
    auto op = [&](int64_t axis) { return log ? ops::log_softmax(x, axis) : ops::softmax(x, axis); };
    const double x_abs = max_abs(xv);
    expect_close(op(-1), reference(xv, 20, 6, 1, log), 6, x_abs, std::string(name) + " axis -1");
    expect_close(op(1), reference(xv, 4, 5, 6, log), 5, x_abs, std::string(name) + " axis 1");
    expect_close(op(0), reference(xv, 1, 4, 30, log), 4, x_abs, std::string(name) + " axis 0");
    EXPECT_EQ(op(0).shape(), shape);
    EXPECT_TRUE(op(0).is_contiguous());
  }
}

TEST(SoftmaxOps, RowsSumToOne) {
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = Tensor::uniform({6, 37}, 5, -10.0, 10.0, dt);
    const auto y = ops::softmax(x).to_vector();
    const auto ly = ops::log_softmax(x).to_vector();
    for (int64_t r = 0; r < 6; ++r) {
      double s = 0, ls = 0;
      for (int64_t j = 0; j < 37; ++j) {
        ASSERT_GE(y[r * 37 + j], 0.0);
        s += y[r * 37 + j];
        ls += std::exp(ly[r * 37 + j]);
      }
      EXPECT_NEAR(s, 1.0, tolerance(dt, 37, 1.0, 10.0)) << dtype_name(dt) << " row " << r;
      EXPECT_NEAR(ls, 1.0, tolerance(dt, 37, 1.0, 10.0)) << dtype_name(dt) << " row " << r;
    }
  }
}

TEST(SoftmaxOps, LargeInputsStayFinite) {
  const std::vector<double> xv{1000, 1000, 999, -1000, 500};
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = Tensor::from_vector(xv, {1, 5}, dt);
    const auto ref_log = reference(xv, 1, 5, 1, true);
    const auto ref = reference(xv, 1, 5, 1, false);
    Tensor ly = ops::log_softmax(x), y = ops::softmax(x);
    for (double v : ly.to_vector()) EXPECT_TRUE(std::isfinite(v)) << dtype_name(dt);
    expect_close(ly, ref_log, 5, max_abs(xv), std::string("log_softmax of 1000s ") + dtype_name(dt));
    expect_close(y, ref, 5, max_abs(xv), std::string("softmax of 1000s ") + dtype_name(dt));
  }
  // -inf entries (masked positions) get exactly zero probability.
  Tensor masked = Tensor::from_vector({0.0, -INFINITY, 1.0}, {3}, DType::F64);
  const auto y = ops::softmax(masked).to_vector();
  EXPECT_EQ(y[1], 0.0);
  EXPECT_NEAR(y[2], 1.0 / (1.0 + std::exp(-1.0)), tolerance(DType::F64, 3, y[2]));
}

TEST(SoftmaxOps, Float32AgreesWithFloat64) {
  // Large enough that the kernels take their OpenMP path.
  const Shape shape{300, 131};
  Tensor x64 = Tensor::uniform(shape, 9, -6.0, 6.0, DType::F64);
  Tensor g64 = Tensor::randn(shape, 10, DType::F64);
  Tensor x32 = x64.copy_as(DType::F32, Device::cpu()), g32 = g64.copy_as(DType::F32, Device::cpu());
  for (bool log : {false, true}) {
    for (int64_t axis : {int64_t{-1}, int64_t{0}}) {
      const int64_t n = shape[axis < 0 ? 1 : 0];
      auto run = [&](const Tensor& x, const Tensor& g) {
        Tensor leaf = x.detach();
        leaf.set_requires_grad(true);
        Tensor y = log ? ops::log_softmax(leaf, axis) : ops::softmax(leaf, axis);
        return std::make_pair(y, autograd::grad({y}, {g}, {leaf})[0]);
      };
      auto [y64, dx64] = run(x64, g64);
      auto [y32, dx32] = run(x32, g32);
      const std::string label = std::string(log ? "log_softmax" : "softmax") + " axis " + std::to_string(axis);
      expect_close(y32, y64.to_vector(), n, max_abs(x64.to_vector()), label + " forward");
      // dx carries a sum of n terms of size up to max|g|: its rounding error scales with max|g|.
      const double x_abs = max_abs(x64.to_vector());
      double gmax = 1.0;
      for (double v : g64.to_vector()) gmax = std::max(gmax, std::abs(v));
      const auto a = dx32.to_vector(), b = dx64.to_vector();
      for (size_t i = 0; i < a.size(); ++i)
        ASSERT_NEAR(a[i], b[i], gmax * tolerance(DType::F32, n, b[i], x_abs)) << label << " backward element " << i;
    }
  }
}

TEST(SoftmaxOps, BadInputNamesTheOp) {
  try {
    ops::softmax(Tensor::zeros({2, 3}, DType::I32));
    FAIL() << "expected DTypeError";
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("softmax"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::log_softmax(Tensor::zeros({4}, DType::BF16)), DTypeError);
  try {
    ops::log_softmax(Tensor::zeros({2, 3}), 2);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("log_softmax"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("axis 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::softmax(Tensor::zeros({2, 3}), -3), ValueError);
}

}  // namespace
}  // namespace strand
