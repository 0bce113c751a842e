// LayerNorm and RMSNorm: float64 gradient checks (with and without weight/bias), forward and
// backward against a direct double computation, float32/float64 agreement, thread-count
// determinism of the weight gradients, and the errors bad input raises.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>

#include "framework/backend/norm.h"
#include "framework/core/error.h"
#include "framework/ops/norm.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

using strand::testing::dtype_eps;

// Roundings along one element's chain outside the sums: the input cast, the casts of mean and
// rstd, subtract, two products and an add (counted generously).
constexpr double kElementRoundings = 8;

// The classic bound for a value built from a sum of `terms` terms: (terms + k) * eps times the
// sum of the magnitudes involved (`scale`).
double tolerance(DType dt, double terms, double scale) { return (terms + kElementRoundings) * dtype_eps(dt) * scale; }

// Direct double computation of the norm forward and backward, with the magnitude each value's
// rounding error scales with.
struct NormReference {
  std::vector<double> y, dx, dw, db;
  std::vector<double> y_scale, dx_scale, dw_scale, db_scale;
};

NormReference norm_reference(const Tensor& x_t, const Tensor& g_t, const Tensor& w_t, const Tensor& b_t, double eps,
                             bool centred) {
  const auto x = x_t.to_vector(), g = g_t.to_vector();
  const int64_t c = x_t.shape().back(), rows = x_t.numel() / c;
  const std::vector<double> w = w_t.defined() ? w_t.to_vector() : std::vector<double>(c, 1.0);
  const std::vector<double> b = b_t.defined() ? b_t.to_vector() : std::vector<double>(c, 0.0);
  NormReference r;
  for (auto* v : {&r.y, &r.dx, &r.y_scale, &r.dx_scale}) v->assign(x.size(), 0.0);
  for (auto* v : {&r.dw, &r.db, &r.dw_scale, &r.db_scale}) v->assign(c, 0.0);
  for (int64_t i = 0; i < rows; ++i) {
    const double* xr = x.data() + i * c;
    const double* gr = g.data() + i * c;
    double mean = 0, var = 0;
    if (centred) {
      for (int64_t j = 0; j < c; ++j) mean += xr[j];
      mean /= c;
    }
    for (int64_t j = 0; j < c; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    const double rstd = 1.0 / std::sqrt(var / c + eps);
    double a = 0, bb = 0, a_abs = 0, bb_abs = 0;
    for (int64_t j = 0; j < c; ++j) {
      const double xhat = (xr[j] - mean) * rstd, dxhat = gr[j] * w[j];
      a += dxhat / c;
      bb += dxhat * xhat / c;
      a_abs += std::abs(dxhat) / c;
      bb_abs += std::abs(dxhat) * (std::abs(xr[j]) + std::abs(mean)) * rstd / c;
    }
    if (!centred) a = a_abs = 0;
    for (int64_t j = 0; j < c; ++j) {
      const size_t k = static_cast<size_t>(i * c + j);
      const double xhat = (xr[j] - mean) * rstd, xhat_abs = (std::abs(xr[j]) + std::abs(mean)) * rstd;
      r.y[k] = xhat * w[j] + b[j];
      r.y_scale[k] = xhat_abs * std::abs(w[j]) + std::abs(b[j]);
      r.dx[k] = rstd * (gr[j] * w[j] - a - xhat * bb);
      r.dx_scale[k] = rstd * (std::abs(gr[j] * w[j]) + a_abs + xhat_abs * bb_abs);
      r.dw[j] += gr[j] * xhat;
      r.dw_scale[j] += std::abs(gr[j]) * xhat_abs;
      r.db[j] += gr[j];
      r.db_scale[j] += std::abs(gr[j]);
    }
  }
  return r;
}

void expect_within(const Tensor& got, const std::vector<double>& ref, const std::vector<double>& scale, double terms,
                   DType tol_dtype, const std::string& label) {
  ASSERT_TRUE(got.defined()) << label;
  const auto v = got.to_vector();
  ASSERT_EQ(v.size(), ref.size()) << label;
  for (size_t i = 0; i < v.size(); ++i)
    ASSERT_NEAR(v[i], ref[i], tolerance(tol_dtype, terms, scale[i])) << label << " element " << i;
}

struct NormRun {
  Tensor y, dx, dw, db;
};

// Forward and backward of one norm with the given upstream gradient; gradients are taken for
// every defined argument.
NormRun run_norm(bool centred, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& g, double eps) {
  std::vector<Tensor> leaves;
  for (const Tensor& t : {x, w, b}) {
    Tensor leaf = t.defined() ? t.detach() : Tensor();
    if (leaf.defined()) leaf.set_requires_grad(true);
    leaves.push_back(leaf);
  }
  Tensor y = centred ? ops::layer_norm(leaves[0], leaves[1], leaves[2], eps) : ops::rms_norm(leaves[0], leaves[1], eps);
  std::vector<Tensor> wrt;
  for (const Tensor& t : leaves)
    if (t.defined()) wrt.push_back(t);
  const auto grads = autograd::grad({y}, {g}, wrt);
  NormRun r{y, grads[0], Tensor(), Tensor()};
  size_t k = 1;
  if (w.defined()) r.dw = grads[k++];
  if (b.defined()) r.db = grads[k++];
  return r;
}

std::vector<OpCase> norm_cases() {
  return {
      {"layer_norm", {{4, 7}, {7}, {7}}, [](const V& x) { return ops::layer_norm(x[0], x[1], x[2], 1e-5); }},
      {"layer_norm no bias", {{5, 6}, {6}}, [](const V& x) { return ops::layer_norm(x[0], x[1], Tensor(), 1e-5); }},
      {"layer_norm 3-d", {{2, 3, 5}, {5}, {5}}, [](const V& x) { return ops::layer_norm(x[0], x[1], x[2], 1e-3); }},
      {"layer_norm no affine", {{3, 9}}, [](const V& x) { return ops::layer_norm(x[0], Tensor(), Tensor(), 1e-5); }},
      {"rms_norm", {{4, 7}, {7}}, [](const V& x) { return ops::rms_norm(x[0], x[1], 1e-6); }},
      {"rms_norm 3-d", {{3, 2, 5}, {5}}, [](const V& x) { return ops::rms_norm(x[0], x[1], 1e-3); }},
      {"rms_norm no weight", {{3, 8}}, [](const V& x) { return ops::rms_norm(x[0], Tensor(), 1e-6); }},
      {"layer_norm then rms_norm", {{3, 6}, {6}},
       [](const V& x) { return ops::rms_norm(ops::layer_norm(x[0], x[1], Tensor()), x[1]); }},
  };
}

TEST(NormOps, GradientsMatchFiniteDifferences) {
  for (const OpCase& c : norm_cases()) run_op_case(c);
}

TEST(NormOps, LayerNormRowsHaveMeanZeroVarianceOne) {
  for (DType dt : {DType::F32, DType::F64}) {
    const int64_t rows = 5, c = 33;
    Tensor x = Tensor::uniform({rows, c}, 4, -3.0, 5.0, dt);
    const auto y = ops::layer_norm(x, Tensor(), Tensor(), 0.0).to_vector();
    for (int64_t r = 0; r < rows; ++r) {
      double mean = 0, var = 0;
      for (int64_t j = 0; j < c; ++j) mean += y[r * c + j] / c;
      for (int64_t j = 0; j < c; ++j) var += (y[r * c + j] - mean) * (y[r * c + j] - mean) / c;
      EXPECT_NEAR(mean, 0.0, tolerance(dt, c, 1.0)) << dtype_name(dt) << " row " << r;
      EXPECT_NEAR(var, 1.0, tolerance(dt, c, 1.0)) << dtype_name(dt) << " row " << r;
    }
  }
}

// Forward and all gradients against the direct double computation, on shapes large enough for
// the OpenMP path and many row blocks, with every combination of weight and bias.
TEST(NormOps, MatchesDirectComputation) {
  const Shape shape{3, 100, 131};
  const int64_t rows = 300, c = 131;
  Tensor x = Tensor::uniform(shape, 21, -2.0, 3.0, DType::F64);
  Tensor g = Tensor::randn(shape, 22, DType::F64);
  Tensor w = Tensor::uniform({c}, 23, 0.5, 1.5, DType::F64);
  Tensor b = Tensor::uniform({c}, 24, -1.0, 1.0, DType::F64);
  struct Variant { const char* name; bool centred; bool has_w, has_b; };
  for (const Variant& v : {Variant{"layer_norm", true, true, true}, Variant{"layer_norm no bias", true, true, false},
                           Variant{"layer_norm no affine", true, false, false}, Variant{"rms_norm", false, true, false},
                           Variant{"rms_norm no weight", false, false, false}}) {
    const double eps = 1e-5;
    Tensor wv = v.has_w ? w : Tensor(), bv = v.has_b ? b : Tensor();
    const NormReference ref = norm_reference(x, g, wv, bv, eps, v.centred);
    const NormRun got = run_norm(v.centred, x, wv, bv, g, eps);
    const std::string label = v.name;
    expect_within(got.y, ref.y, ref.y_scale, c, DType::F64, label + " y");
    expect_within(got.dx, ref.dx, ref.dx_scale, c, DType::F64, label + " dx");
    if (v.has_w) expect_within(got.dw, ref.dw, ref.dw_scale, rows, DType::F64, label + " dweight");
    if (v.has_b) expect_within(got.db, ref.db, ref.db_scale, rows, DType::F64, label + " dbias");
  }
}

TEST(NormOps, Float32AgreesWithFloat64) {
  const Shape shape{257, 129};
  const int64_t rows = 257, c = 129;
  Tensor x = Tensor::uniform(shape, 31, -2.0, 2.0, DType::F64);
  Tensor g = Tensor::randn(shape, 32, DType::F64);
  Tensor w = Tensor::uniform({c}, 33, -1.5, 1.5, DType::F64);
  Tensor b = Tensor::uniform({c}, 34, -1.0, 1.0, DType::F64);
  auto f32 = [](const Tensor& t) { return t.defined() ? t.copy_as(DType::F32, Device::cpu()) : Tensor(); };
  for (bool centred : {true, false}) {
    const std::string label = centred ? "layer_norm" : "rms_norm";
    Tensor bv = centred ? b : Tensor();
    const NormReference scale = norm_reference(x, g, w, bv, 1e-5, centred);
    const NormRun r64 = run_norm(centred, x, w, bv, g, 1e-5);
    const NormRun r32 = run_norm(centred, f32(x), f32(w), f32(bv), f32(g), 1e-5);
    EXPECT_EQ(r32.y.dtype(), DType::F32);
    EXPECT_EQ(r32.dw.dtype(), DType::F32);
    expect_within(r32.y, r64.y.to_vector(), scale.y_scale, c, DType::F32, label + " y");
    expect_within(r32.dx, r64.dx.to_vector(), scale.dx_scale, c, DType::F32, label + " dx");
    expect_within(r32.dw, r64.dw.to_vector(), scale.dw_scale, rows, DType::F32, label + " dweight");
    if (centred) expect_within(r32.db, r64.db.to_vector(), scale.db_scale, rows, DType::F32, label + " dbias");
  }
}

// The weight gradients are block sums combined in a fixed order: the same bits on 1 or 2 threads.
TEST(NormOps, GradientsDoNotDependOnThreadCount) {
  const Shape shape{400, 96};
  Tensor x = Tensor::uniform(shape, 41, -1.0, 1.0);
  Tensor g = Tensor::randn(shape, 42);
  Tensor w = Tensor::uniform({96}, 43, 0.5, 1.5), b = Tensor::uniform({96}, 44, -1.0, 1.0);
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const NormRun one = run_norm(true, x, w, b, g, 1e-5);
  omp_set_num_threads(2);
  const NormRun two = run_norm(true, x, w, b, g, 1e-5);
  omp_set_num_threads(saved_threads);
  EXPECT_EQ(one.y.to_vector(), two.y.to_vector());
  EXPECT_EQ(one.dx.to_vector(), two.dx.to_vector());
  EXPECT_EQ(one.dw.to_vector(), two.dw.to_vector());
  EXPECT_EQ(one.db.to_vector(), two.db.to_vector());
}

// Gradients are computed only for the arguments that need them, and agree with the full run.
TEST(NormOps, PartialGradients) {
  Tensor x = Tensor::uniform({6, 10}, 51, -1.0, 1.0, DType::F64);
  Tensor w = Tensor::uniform({10}, 52, 0.5, 1.5, DType::F64), b = Tensor::uniform({10}, 53, -1.0, 1.0, DType::F64);
  Tensor g = Tensor::randn({6, 10}, 54, DType::F64);
  const NormRun full = run_norm(true, x, w, b, g, 1e-5);
  Tensor wl = w.detach();
  wl.set_requires_grad(true);
  Tensor y = ops::layer_norm(x, wl, b, 1e-5);  // only the weight requires grad
  const auto dw = autograd::grad({y}, {g}, {wl})[0];
  EXPECT_EQ(dw.to_vector(), full.dw.to_vector());
  Tensor xl = x.detach();
  xl.set_requires_grad(true);
  const auto dx = autograd::grad({ops::rms_norm(xl, w)}, {g}, {xl})[0];  // weight needs no grad
  const NormRun rms = run_norm(false, x, w, Tensor(), g, 1e-6);
  EXPECT_EQ(dx.to_vector(), rms.dx.to_vector());
}

template <class Err, class Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& needles) {
  try {
    fn();
    ADD_FAILURE() << "expected an error naming " << needles[0];
  } catch (const Err& e) {
    for (const std::string& s : needles) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
  }
}

// The backward kernel's one-pass loop (dx, dweight and dbias all wanted, training's case) gives
// the bits of its separate loops (dx alone, then dweight and dbias alone), for both norms.
TEST(NormOps, FusedBackwardPassEqualsSeparatePassesBitForBit) {
  const int64_t rows = 37, n = 203;
  const Tensor x = Tensor::randn({rows, n}, 21), g = Tensor::randn({rows, n}, 22), w = Tensor::randn({n}, 23),
               b = Tensor::randn({n}, 24);
  for (bool centred : {true, false}) {
    Tensor y = Tensor::empty({rows, n}), mean = Tensor::empty({rows}), rstd = Tensor::empty({rows});
    backend::NormParams f;
    f.op = centred ? backend::NormOp::LayerNorm : backend::NormOp::RmsNorm;
    f.rows = rows, f.n = n, f.x = x.raw_data(), f.weight = w.raw_data(), f.bias = centred ? b.raw_data() : nullptr;
    f.eps = 1e-5, f.y = y.raw_data(), f.mean = centred ? mean.raw_data() : nullptr, f.rstd = rstd.raw_data();
    backend::norm_rows(f);
    backend::NormParams bw = f;
    bw.op = backend::NormOp::Backward;
    bw.g = g.raw_data();
    Tensor dx1 = Tensor::empty({rows, n}), dw1 = Tensor::empty({n}), db1 = Tensor::empty({n});
    bw.dx = dx1.raw_data(), bw.dweight = dw1.raw_data(), bw.dbias = db1.raw_data();
    backend::norm_rows(bw);
    Tensor dx2 = Tensor::empty({rows, n}), dw2 = Tensor::empty({n}), db2 = Tensor::empty({n});
    bw.dx = dx2.raw_data(), bw.dweight = nullptr, bw.dbias = nullptr;
    backend::norm_rows(bw);
    bw.dx = nullptr, bw.dweight = dw2.raw_data(), bw.dbias = db2.raw_data();
    backend::norm_rows(bw);
    EXPECT_EQ(dx1.to_vector(), dx2.to_vector()) << (centred ? "layer_norm" : "rms_norm");
    EXPECT_EQ(dw1.to_vector(), dw2.to_vector()) << (centred ? "layer_norm" : "rms_norm");
    EXPECT_EQ(db1.to_vector(), db2.to_vector()) << (centred ? "layer_norm" : "rms_norm");
  }
}

TEST(NormOps, BadInputNamesTheOpAndShapes) {
  Tensor x = Tensor::zeros({3, 4});
  expect_error<ShapeError>([&] { ops::layer_norm(x, Tensor::ones({5}), Tensor::zeros({4})); },
                           {"layer_norm", "weight", "[5]", "[3, 4]"});
  expect_error<ShapeError>([&] { ops::layer_norm(x, Tensor::ones({4}), Tensor::zeros({3})); },
                           {"layer_norm", "bias", "[3]", "[3, 4]"});
  expect_error<ShapeError>([&] { ops::rms_norm(x, Tensor::ones({2, 2})); }, {"rms_norm", "weight", "[2, 2]", "[3, 4]"});
  expect_error<DTypeError>([&] { ops::layer_norm(x, Tensor::ones({4}, DType::F64), Tensor()); },
                           {"layer_norm", "float32", "float64"});
  expect_error<DTypeError>([&] { ops::rms_norm(x, Tensor::ones({4}, DType::F64)); }, {"rms_norm", "float64"});
  expect_error<DTypeError>([&] { ops::layer_norm(Tensor::zeros({3, 4}, DType::I32), Tensor(), Tensor()); },
                           {"layer_norm", "int32"});
  expect_error<DTypeError>([&] { ops::rms_norm(Tensor::zeros({3, 4}, DType::I32), Tensor::zeros({4}, DType::I32)); },
                           {"rms_norm"});
  expect_error<ValueError>([&] { ops::layer_norm(x, Tensor(), Tensor(), -1.0); }, {"layer_norm", "eps"});
  expect_error<ShapeError>([&] { ops::rms_norm(Tensor::zeros({}), Tensor()); }, {"rms_norm"});
}

}  // namespace
}  // namespace strand
