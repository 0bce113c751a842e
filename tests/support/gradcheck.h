// The one finite-difference gradient checker of the tests: analytic gradients from the autograd
// engine against central differences in float64, for op functions (expect_gradients_match and
// the table-driven run_op_case) and for any scalar loss over a tensor's elements
// (expect_elements_match_differences, which the model tests use through model_testing.h).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/autograd/grad_mode.h"
#include "framework/core/tensor.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/reduce.h"
#include "framework/ops/view.h"

namespace strand::testing {

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double atol = 1e-6;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-5;
  uint64_t seed = 7;   // for the random projection of the output
};

// Central difference of `loss` at element i of the float64 tensor x, which it perturbs in place
// and restores. points 2: (L(x+h) - L(x-h)) / 2h, truncation O(h^2); points 4: the fourth-order
// stencil (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h, truncation O(h^4), which allows a
// larger h and so less rounding (about 1e-16 |L| / h) for the same truncation.
inline double central_difference(Tensor& x, int64_t i, double h, const std::function<double()>& loss,
                                 int points = 2) {
  double* xd = x.data<double>();
  const double orig = xd[i];
  auto at = [&](double offset) {
    xd[i] = orig + offset;
    const double value = loss();
    xd[i] = orig;
    return value;
  };
  const double d1 = at(h) - at(-h);
  if (points == 2) return d1 / (2 * h);
  const double d2 = at(2 * h) - at(-2 * h);
  return (8 * d1 - d2) / (12 * h);
}

// Checks analytic[i] against the central difference of `loss` at every element i of x (float64,
// contiguous): |analytic - numeric| <= atol + rtol |numeric|. Elements listed in `zero` are zero
// by construction and must have an analytic gradient of exactly 0 (and a numeric one below atol).
struct DifferenceOptions {
  double h = 1e-6;
  int points = 2;
  double atol = 1e-6;
  double rtol = 1e-5;
};
inline void expect_elements_match_differences(Tensor x, const std::vector<double>& analytic,
                                              const std::function<double()>& loss, const std::string& label,
                                              const DifferenceOptions& opt, const std::vector<int64_t>& zero = {}) {
  ASSERT_EQ(x.dtype(), DType::F64) << label << ": gradient checks run in float64";
  ASSERT_TRUE(x.is_contiguous()) << label;
  ASSERT_EQ(static_cast<int64_t>(analytic.size()), x.numel()) << label;
  std::vector<bool> is_zero(analytic.size(), false);
  for (int64_t i : zero) is_zero[static_cast<size_t>(i)] = true;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double a = analytic[static_cast<size_t>(i)];
    const double numeric = central_difference(x, i, opt.h, loss, opt.points);
    if (is_zero[static_cast<size_t>(i)]) {
      ASSERT_EQ(a, 0.0) << label << ": element " << i << " is zero by construction";
      ASSERT_LE(std::abs(numeric), opt.atol) << label << ": element " << i << " is zero by construction";
    } else {
      ASSERT_NEAR(a, numeric, opt.atol + opt.rtol * std::abs(numeric)) << label << ": element " << i;
    }
  }
}

// L(inputs) = sum(f(inputs) * w) for a fixed random w; checks dL/dinput for every float input
// that requires grad. Inputs must be float64 leaves.
inline void expect_gradients_match(const OpFn& f, const std::vector<Tensor>& inputs, const std::string& label,
                                   const GradcheckOptions& opt = {}) {
  Tensor y = f(inputs);
  ASSERT_TRUE(y.requires_grad()) << label << ": output records no gradient";
  Tensor w = Tensor::randn(y.shape(), opt.seed, y.dtype());
  std::vector<Tensor> wrt;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) wrt.push_back(t);
  std::vector<Tensor> analytic = autograd::grad({y}, {w}, wrt);
  const std::vector<double> wv = w.to_vector();
  auto loss = [&] {
    autograd::NoGradGuard no_grad;
    const std::vector<double> yv = f(inputs).to_vector();
    double s = 0;
    for (size_t i = 0; i < yv.size(); ++i) s += yv[i] * wv[i];
    return s;
  };
  DifferenceOptions d;
  d.h = opt.eps;
  d.atol = opt.atol;
  d.rtol = opt.rtol;
  for (size_t k = 0; k < wrt.size(); ++k)
    expect_elements_match_differences(wrt[k], analytic[k].to_vector(), loss, label + ": input " + std::to_string(k), d);
}

// One row of an op table: input shapes, how to draw inputs, and the op.
struct OpCase {
  std::string name;
  std::vector<Shape> shapes;
  OpFn fn;
  double lo = -1.0, hi = 1.0;  // inputs drawn uniformly from [lo, hi)
  GradcheckOptions opt = {};
};

// Runs a case on contiguous inputs, and again with every input of 2+ dimensions passed as a
// transposed (non-contiguous) view of a leaf, so kernels see non-unit strides.
inline void run_op_case(const OpCase& c) {
  for (bool strided : {false, true}) {
    std::vector<Tensor> leaves;
    std::vector<bool> transposed;
    uint64_t seed = 11;
    for (const Shape& s : c.shapes) {
      const bool tr = strided && s.size() >= 2;
      Shape leaf_shape = s;
      if (tr) std::swap(leaf_shape[s.size() - 1], leaf_shape[s.size() - 2]);
      Tensor leaf = Tensor::uniform(leaf_shape, seed++, c.lo, c.hi, DType::F64);
      leaf.set_requires_grad(true);
      leaves.push_back(leaf);
      transposed.push_back(tr);
    }
    OpFn wrapped = [&](const std::vector<Tensor>& in) {
      std::vector<Tensor> args;
      for (size_t i = 0; i < in.size(); ++i) args.push_back(transposed[i] ? ops::transpose(in[i], -1, -2) : in[i]);
      return c.fn(args);
    };
    expect_gradients_match(wrapped, leaves, c.name + (strided ? " (strided inputs)" : ""), c.opt);
  }
}

// Largest |a - b| over two tensors of the same shape.
inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector(), y = b.to_vector();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace strand::testing
