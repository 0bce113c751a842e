// Gradient checking for tests: analytic gradients from the autograd engine against central
// finite differences in float64, and a table-driven runner over op cases.
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
  for (size_t k = 0; k < wrt.size(); ++k) {
    Tensor x = wrt[k];
    ASSERT_EQ(x.dtype(), DType::F64) << label << ": gradient checks run in float64";
    ASSERT_TRUE(x.is_contiguous());
    const std::vector<double> a = analytic[k].to_vector();
    double* xd = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double orig = xd[i];
      xd[i] = orig + opt.eps;
      const double lp = loss();
      xd[i] = orig - opt.eps;
      const double lm = loss();
      xd[i] = orig;
      const double numeric = (lp - lm) / (2 * opt.eps);
      ASSERT_NEAR(a[static_cast<size_t>(i)], numeric, opt.atol + opt.rtol * std::abs(numeric))
          << label << ": input " << k << " element " << i;
    }
  }
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
