// Performer linear attention: float64 gradient checks (non-causal, causal, MHA, GQA, odd lengths),
// forward values against a direct log-domain evaluation with the same projection, the
// stabilisers at magnitudes where raw features underflow, convergence to softmax attention as
// the feature count grows, and the errors bad inputs raise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/core/error.h"
#include "framework/ops/linear_attention.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

// Direct double evaluation of the Performer formula, in the log domain so that no stabiliser is
// involved: with a(x)_m = w_m . x' - |x'|^2 / 2, the weight of key j for query i is
// sum_m exp(a(q_i)_m + a(k_j)_m) / M, and out_i is the weighted mean of v_j. Also reports the
// largest |a| seen (the condition of exp, used for tolerances) and the largest a (to show when
// raw exp(a) would underflow).
struct Reference {
  std::vector<double> out;  // [B, Hq, Nq, Dv]
  double max_abs_exponent = 0;
  double max_exponent = -std::numeric_limits<double>::infinity();
};

Reference performer_reference(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& w, bool causal) {
  const int64_t B = q.size(0), Hq = q.size(1), Nq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Nk = k.size(2), Dv = v.size(3), M = w.size(0), group = Hq / Hkv;
  const auto qv = q.to_vector(), kv = k.to_vector(), vv = v.to_vector(), wv = w.to_vector();
  const double root = std::pow(static_cast<double>(D), -0.25);
  Reference ref;
  auto exponents = [&](const std::vector<double>& x, int64_t row) {
    std::vector<double> a(static_cast<size_t>(M));
    double sq = 0;
    for (int64_t d = 0; d < D; ++d) sq += root * x[row * D + d] * root * x[row * D + d];
    for (int64_t m = 0; m < M; ++m) {
      double u = 0;
      for (int64_t d = 0; d < D; ++d) u += wv[m * D + d] * root * x[row * D + d];
      a[m] = u - sq / 2;
      ref.max_abs_exponent = std::max(ref.max_abs_exponent, std::abs(a[m]));
      ref.max_exponent = std::max(ref.max_exponent, a[m]);
    }
    return a;
  };
  ref.out.assign(static_cast<size_t>(B * Hq * Nq * Dv), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t kvh = b * Hkv + h / group;
      for (int64_t i = 0; i < Nq; ++i) {
        const auto aq = exponents(qv, (b * Hq + h) * Nq + i);
        const int64_t nkeys = causal ? i + 1 : Nk;
        std::vector<double> logw(static_cast<size_t>(nkeys));
        for (int64_t j = 0; j < nkeys; ++j) {
          const auto ak = exponents(kv, kvh * Nk + j);
          double mx = -std::numeric_limits<double>::infinity();
          for (int64_t m = 0; m < M; ++m) mx = std::max(mx, aq[m] + ak[m]);
          double s = 0;
          for (int64_t m = 0; m < M; ++m) s += std::exp(aq[m] + ak[m] - mx);
          logw[j] = mx + std::log(s);
        }
        const double top = *std::max_element(logw.begin(), logw.end());
        double total = 0;
        for (double& l : logw) total += (l = std::exp(l - top));
        double* o = ref.out.data() + ((b * Hq + h) * Nq + i) * Dv;
        for (int64_t j = 0; j < nkeys; ++j)
          for (int64_t c = 0; c < Dv; ++c) o[c] += logw[j] / total * vv[(kvh * Nk + j) * Dv + c];
      }
    }
  return ref;
}

// Exact softmax attention in double, scale 1/sqrt(D).
std::vector<double> softmax_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  const int64_t B = q.size(0), Hq = q.size(1), Nq = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), Nk = k.size(2), Dv = v.size(3), group = Hq / Hkv;
  const auto qv = q.to_vector(), kv = k.to_vector(), vv = v.to_vector();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> out(static_cast<size_t>(B * Hq * Nq * Dv), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t kvh = b * Hkv + h / group;
      for (int64_t i = 0; i < Nq; ++i) {
        const int64_t nkeys = causal ? i + 1 : Nk;
        std::vector<double> s(static_cast<size_t>(nkeys));
        for (int64_t j = 0; j < nkeys; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qv[((b * Hq + h) * Nq + i) * D + d] * kv[(kvh * Nk + j) * D + d];
          s[j] = dot * scale;
        }
        const double top = *std::max_element(s.begin(), s.end());
        double total = 0;
        for (double& x : s) total += (x = std::exp(x - top));
        double* o = out.data() + ((b * Hq + h) * Nq + i) * Dv;
        for (int64_t j = 0; j < nkeys; ++j)
          for (int64_t c = 0; c < Dv; ++c) o[c] += s[j] / total * vv[(kvh * Nk + j) * Dv + c];
      }
    }
  return out;
}

using strand::testing::dtype_eps;

// Rounding bound for the op against the reference: sums of up to D, M and N terms, and exp turns
// an absolute error in an exponent of size |a| into a relative error of |a| * eps.
double forward_tolerance(DType dt, const Tensor& q, const Tensor& k, const Tensor& w, const Reference& ref) {
  const double terms = static_cast<double>(q.size(3) + w.size(0) + k.size(2));
  return dtype_eps(dt) * terms * (1.0 + ref.max_abs_exponent);
}

void expect_matches_reference(const Tensor& got, const Reference& ref, double tol, const char* label) {
  const auto g = got.to_vector();
  ASSERT_EQ(g.size(), ref.out.size()) << label;
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(g[i], ref.out[i], tol * (1.0 + std::abs(ref.out[i]))) << label << " element " << i;
}

std::vector<OpCase> gradient_cases() {
  const Tensor w3 = ops::performer_projection(8, 3, 21, DType::F64);
  const Tensor w4 = ops::performer_projection(6, 4, 22, DType::F64);
  auto la = [](Tensor w, bool causal) {
    return [w, causal](const V& x) { return ops::linear_attention(x[0], x[1], x[2], w, causal); };
  };
  return {
      {"mha non-causal", {{1, 2, 5, 3}, {1, 2, 5, 3}, {1, 2, 5, 3}}, la(w3, false)},
      {"mha causal", {{1, 2, 5, 3}, {1, 2, 5, 3}, {1, 2, 5, 3}}, la(w3, true)},
      {"gqa non-causal, Nk != Nq, Dv != D", {{2, 4, 3, 4}, {2, 2, 7, 4}, {2, 2, 7, 2}}, la(w4, false)},
      {"gqa causal odd N", {{1, 4, 7, 4}, {1, 2, 7, 4}, {1, 2, 7, 3}}, la(w4, true)},
      {"mqa causal", {{2, 3, 5, 3}, {2, 1, 5, 3}, {2, 1, 5, 3}}, la(w3, true)},
  };
}

TEST(LinearAttention, GradientsMatchFiniteDifferences) {
  for (const OpCase& c : gradient_cases()) run_op_case(c);
}

TEST(LinearAttention, ForwardMatchesDirectEvaluation) {
  struct Case { Shape q, k, v; int64_t M; bool causal; };
  const std::vector<Case> cases = {
      {{2, 4, 7, 6}, {2, 2, 7, 6}, {2, 2, 7, 5}, 16, true},
      {{2, 4, 7, 6}, {2, 2, 9, 6}, {2, 2, 9, 5}, 16, false},
      {{1, 3, 11, 8}, {1, 3, 11, 8}, {1, 3, 11, 8}, 33, true},
      {{1, 2, 1, 4}, {1, 1, 1, 4}, {1, 1, 1, 4}, 5, false},
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    const Tensor q = Tensor::uniform(c.q, seed++, -1, 1, DType::F64), k = Tensor::uniform(c.k, seed++, -1, 1, DType::F64);
    const Tensor v = Tensor::randn(c.v, seed++, DType::F64), w = ops::performer_projection(c.M, c.q[3], seed++, DType::F64);
    const Reference ref = performer_reference(q, k, v, w, c.causal);
    for (DType dt : {DType::F64, DType::F32}) {
      auto cast = [dt](const Tensor& t) { return t.copy_as(dt, Device::cpu()); };
      const Tensor out = ops::linear_attention(cast(q), cast(k), cast(v), cast(w), c.causal);
      EXPECT_EQ(out.shape(), (Shape{c.q[0], c.q[1], c.q[2], c.v[3]}));
      EXPECT_EQ(out.dtype(), dt);
      expect_matches_reference(out, ref, forward_tolerance(dt, q, k, w, ref), dt == DType::F32 ? "float32" : "float64");
    }
  }
}

// Rows of norm ~76 along a shared direction: every raw exponent is below -745, so exp underflows
// even in float64 and an unstabilised evaluation would divide 0 by 0.
TEST(LinearAttention, StabilisersKeepLargeInputsFinite) {
  const int64_t D = 8, N = 9, M = 32;
  std::vector<double> dir(D);
  for (int64_t d = 0; d < D; ++d) dir[d] = (d % 2 ? 1.0 : -1.0) * (1.0 + 0.1 * d);
  double norm = 0;
  for (double x : dir) norm += x * x;
  norm = std::sqrt(norm);
  auto rows_along_dir = [&](uint64_t seed) {
    Tensor t = Tensor::randn({1, 2, N, D}, seed, DType::F64, 0.3);
    double* p = t.data<double>();
    for (int64_t r = 0; r < 2 * N; ++r)
      for (int64_t d = 0; d < D; ++d) p[r * D + d] += 76.0 * dir[d] / norm;
    return t;
  };
  const Tensor q = rows_along_dir(1), k = rows_along_dir(2), v = Tensor::randn({1, 2, N, D}, 3, DType::F64);
  const Tensor w = ops::performer_projection(M, D, 4, DType::F64);
  for (bool causal : {false, true}) {
    const Reference ref = performer_reference(q, k, v, w, causal);
    ASSERT_LT(ref.max_exponent, std::log(std::numeric_limits<double>::denorm_min())) << "raw features must underflow";
    for (DType dt : {DType::F64, DType::F32}) {
      auto cast = [dt](const Tensor& t) { return t.copy_as(dt, Device::cpu()); };
      const Tensor out = ops::linear_attention(cast(q), cast(k), cast(v), cast(w), causal);
      for (double x : out.to_vector()) ASSERT_TRUE(std::isfinite(x));
      expect_matches_reference(out, ref, forward_tolerance(dt, q, k, w, ref), causal ? "causal" : "non-causal");
    }
  }
}

// The estimator's error against exact softmax attention falls like 1/sqrt(M): M = 16 -> 1024
// should divide it by about 8. Asserted: each step lowers the seed-averaged error, and the last is
// below a quarter of the first (a factor 2 of slack on the expected 1/8).
TEST(LinearAttention, ApproachesSoftmaxAttentionAsFeaturesGrow) {
  const int64_t B = 1, H = 2, N = 24, D = 16;
  const std::vector<int64_t> feature_counts = {16, 64, 256, 1024};
  const int seeds = 6;
  for (bool causal : {false, true}) {
    std::vector<double> mean_error(feature_counts.size(), 0.0);
    for (int s = 0; s < seeds; ++s) {
      const uint64_t base = 1000 + 10 * static_cast<uint64_t>(s);
      const Tensor q = Tensor::randn({B, H, N, D}, base, DType::F64, 0.5);
      const Tensor k = Tensor::randn({B, H, N, D}, base + 1, DType::F64, 0.5);
      const Tensor v = Tensor::randn({B, H, N, D}, base + 2, DType::F64);
      const std::vector<double> exact = softmax_attention(q, k, v, causal);
      for (size_t f = 0; f < feature_counts.size(); ++f) {
        const Tensor w = ops::performer_projection(feature_counts[f], D, base + 3 + f, DType::F64);
        const auto approx = ops::linear_attention(q, k, v, w, causal).to_vector();
        double err = 0;
        for (size_t i = 0; i < approx.size(); ++i) err += std::abs(approx[i] - exact[i]);
        mean_error[f] += err / static_cast<double>(approx.size()) / seeds;
      }
    }
    for (size_t f = 0; f < feature_counts.size(); ++f)
      std::printf("[ linear_attention %s ] M = %4lld  mean |performer - softmax| = %.5f\n",
                  causal ? "causal    " : "non-causal", static_cast<long long>(feature_counts[f]), mean_error[f]);
    for (size_t f = 1; f < feature_counts.size(); ++f)
      EXPECT_LT(mean_error[f], mean_error[f - 1]) << "M = " << feature_counts[f] << (causal ? " causal" : "");
    EXPECT_LT(mean_error.back(), 0.25 * mean_error.front()) << (causal ? "causal" : "non-causal");
  }
}

// The last causal row sees every key, so it equals the non-causal row; and the float32 backward
// agrees with the float64 one within float32 rounding.
TEST(LinearAttention, CausalLastRowAndFloat32Backward) {
  const Tensor q = Tensor::uniform({2, 4, 6, 5}, 1, -1, 1, DType::F64), k = Tensor::uniform({2, 2, 6, 5}, 2, -1, 1, DType::F64);
  const Tensor v = Tensor::randn({2, 2, 6, 3}, 3, DType::F64), w = ops::performer_projection(12, 5, 4, DType::F64);
  const auto causal = ops::linear_attention(q, k, v, w, true).to_vector();
  const auto full = ops::linear_attention(q, k, v, w, false).to_vector();
  const Reference ref = performer_reference(q, k, v, w, false);
  const double eps = forward_tolerance(DType::F64, q, k, w, ref);
  for (int64_t s = 0; s < 2 * 4; ++s)
    for (int64_t c = 0; c < 3; ++c) {
      const size_t i = static_cast<size_t>((s * 6 + 5) * 3 + c);
      EXPECT_NEAR(causal[i], full[i], eps * (1 + std::abs(full[i])));
    }

  for (bool is_causal : {false, true}) {
    std::vector<std::vector<double>> grads[2];
    int slot = 0;
    for (DType dt : {DType::F64, DType::F32}) {
      V in = {q.copy_as(dt, Device::cpu()), k.copy_as(dt, Device::cpu()), v.copy_as(dt, Device::cpu())};
      for (Tensor& t : in) t.set_requires_grad(true);
      const Tensor out = ops::linear_attention(in[0], in[1], in[2], w.copy_as(dt, Device::cpu()), is_causal);
      const V g = autograd::grad({out}, {Tensor::randn(out.shape(), 9, dt)}, in);
      for (const Tensor& t : g) grads[slot].push_back(t.to_vector());
      ++slot;
    }
    const double tol = forward_tolerance(DType::F32, q, k, w, ref);
    for (size_t t = 0; t < 3; ++t)
      for (size_t i = 0; i < grads[0][t].size(); ++i)
        ASSERT_NEAR(grads[1][t][i], grads[0][t][i], tol * (1 + std::abs(grads[0][t][i])))
            << (is_causal ? "causal" : "non-causal") << " input " << t << " element " << i;
  }
}

// Enough work for the OpenMP path: repeated calls give identical bits, and values match the reference.
TEST(LinearAttention, ParallelPathIsDeterministic) {
  const Tensor q = Tensor::uniform({2, 4, 64, 16}, 5, -1, 1, DType::F64), k = Tensor::uniform({2, 2, 64, 16}, 6, -1, 1, DType::F64);
  const Tensor v = Tensor::randn({2, 2, 64, 16}, 7, DType::F64), w = ops::performer_projection(64, 16, 8, DType::F64);
  for (bool causal : {false, true}) {
    V in = {q.copy_as(DType::F64, Device::cpu()), k.copy_as(DType::F64, Device::cpu()), v.copy_as(DType::F64, Device::cpu())};
    for (Tensor& t : in) t.set_requires_grad(true);
    const Tensor g = Tensor::randn({2, 4, 64, 16}, 9, DType::F64);
    const Tensor a = ops::linear_attention(in[0], in[1], in[2], w, causal);
    const Tensor b = ops::linear_attention(in[0], in[1], in[2], w, causal);
    EXPECT_EQ(a.to_vector(), b.to_vector());
    const V ga = autograd::grad({a}, {g}, in), gb = autograd::grad({b}, {g}, in);
    for (size_t t = 0; t < 3; ++t) EXPECT_EQ(ga[t].to_vector(), gb[t].to_vector());
    const Reference ref = performer_reference(q, k, v, w, causal);
    expect_matches_reference(a, ref, forward_tolerance(DType::F64, q, k, w, ref), "parallel");
  }
}

void expect_error_names(const std::function<void()>& call, const std::vector<std::string>& parts) {
  try {
    call();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(LinearAttention, BadInputsNameTheOpAndShapes) {
  const Tensor q = Tensor::zeros({1, 4, 5, 8}), k = Tensor::zeros({1, 2, 5, 8}), v = Tensor::zeros({1, 2, 5, 8});
  const Tensor w = ops::performer_projection(16, 8, 1);
  EXPECT_THROW(ops::linear_attention(q, k, v, ops::performer_projection(16, 6, 1)), ShapeError);
  expect_error_names([&] { ops::linear_attention(q, k, v, ops::performer_projection(16, 6, 1)); },
                     {"linear_attention", "[16, 6]", "[1, 4, 5, 8]"});
  const Tensor k3 = Tensor::zeros({1, 3, 5, 8}), v3 = Tensor::zeros({1, 3, 5, 8});
  EXPECT_THROW(ops::linear_attention(q, k3, v3, w), ShapeError);
  expect_error_names([&] { ops::linear_attention(q, k3, v3, w); }, {"linear_attention", "[1, 4, 5, 8]", "[1, 3, 5, 8]"});
  const Tensor k7 = Tensor::zeros({1, 2, 7, 8}), v7 = Tensor::zeros({1, 2, 7, 8});
  EXPECT_NO_THROW(ops::linear_attention(q, k7, v7, w, false));
  EXPECT_THROW(ops::linear_attention(q, k7, v7, w, true), ShapeError);
  expect_error_names([&] { ops::linear_attention(q, k7, v7, w, true); }, {"linear_attention", "causal", "[1, 2, 7, 8]"});
  EXPECT_THROW(ops::linear_attention(q, k, Tensor::zeros({1, 2, 4, 8}), w), ShapeError);
  EXPECT_THROW(ops::linear_attention(Tensor::zeros({4, 5, 8}), k, v, w), ShapeError);
  EXPECT_THROW(ops::linear_attention(q, k.copy_as(DType::F64, Device::cpu()), v, w), DTypeError);
  EXPECT_THROW(ops::linear_attention(q, k, v, w.copy_as(DType::F64, Device::cpu())), DTypeError);
  Tensor trainable = ops::performer_projection(16, 8, 1);
  trainable.set_requires_grad(true);
  EXPECT_THROW(ops::linear_attention(q, k, v, trainable), ValueError);
  EXPECT_THROW(ops::performer_projection(0, 8, 1), ValueError);
  EXPECT_THROW(ops::performer_projection(4, 8, 1, DType::I32), DTypeError);
}

TEST(LinearAttention, ProjectionIsGaussianAndReproducible) {
  const Tensor a = ops::performer_projection(256, 32, 5, DType::F64), b = ops::performer_projection(256, 32, 5, DType::F64);
  EXPECT_EQ(a.shape(), (Shape{256, 32}));
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), ops::performer_projection(256, 32, 6, DType::F64).to_vector());
  double mean = 0, sq = 0;
  const auto x = a.to_vector();
  for (double e : x) mean += e / x.size(), sq += e * e / x.size();
  // 8192 N(0, 1) draws: the sample mean has sd 0.011 and the second moment sd 0.016; 5 sd bounds.
  EXPECT_NEAR(mean, 0.0, 5 * 0.011);
  EXPECT_NEAR(sq, 1.0, 5 * 0.016);
}

}  // namespace
}  // namespace strand
