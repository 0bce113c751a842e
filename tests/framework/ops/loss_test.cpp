// Fused cross-entropy: float64 gradient checks (mean, sum, ignore_index), values and gradients
// against a direct double computation, the all-ignored case, rows read in place, and bad targets.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "framework/core/error.h"
#include "framework/ops/loss.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;
using ops::Reduction;

Tensor targets_of(const std::vector<double>& values) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, DType::I32);
}

// Direct loss and dlogits (for an incoming gradient of 1) in double: log-softmax of each row.
struct Expected {
  double loss = 0;
  std::vector<double> dlogits;
};
Expected direct_cross_entropy(const std::vector<double>& x, const std::vector<double>& t, int64_t N, int64_t Vn,
                              int32_t ignore, Reduction red) {
  Expected e;
  e.dlogits.assign(x.size(), 0.0);
  double count = 0;
  for (double ti : t) count += ti != ignore;
  const double div = red == Reduction::Mean ? count : 1.0;
  if (div == 0) return e;
  for (int64_t r = 0; r < N; ++r) {
    if (t[r] == ignore) continue;
    double m = -std::numeric_limits<double>::infinity(), s = 0;
    for (int64_t j = 0; j < Vn; ++j) m = std::max(m, x[r * Vn + j]);
    for (int64_t j = 0; j < Vn; ++j) s += std::exp(x[r * Vn + j] - m);
    const double lse = m + std::log(s);
    e.loss += (lse - x[r * Vn + static_cast<int64_t>(t[r])]) / div;
    for (int64_t j = 0; j < Vn; ++j)
      e.dlogits[r * Vn + j] = (std::exp(x[r * Vn + j] - lse) - (j == t[r] ? 1.0 : 0.0)) / div;
  }
  return e;
}

TEST(CrossEntropy, GradientsMatchFiniteDifferences) {
  const Tensor t = targets_of({1, -100, 4, 0});
  const Tensor t_pad0 = targets_of({0, 2, 0, 3, 1});  // ignore_index 0 is also a valid class
  const std::vector<OpCase> cases = {
      {"cross_entropy mean", {{4, 5}}, [=](const V& x) { return ops::cross_entropy(x[0], t); }, -3, 3},
      {"cross_entropy sum", {{4, 5}}, [=](const V& x) { return ops::cross_entropy(x[0], t, -100, Reduction::Sum); },
       -3, 3},
      {"cross_entropy ignore 0", {{5, 4}}, [=](const V& x) { return ops::cross_entropy(x[0], t_pad0, 0); }, -3, 3},
  };
  for (const OpCase& c : cases) run_op_case(c);
}

template <class T>
void check_against_direct(DType dt, int64_t N, int64_t Vn, double shift, Reduction red) {
  std::vector<double> tv(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) tv[r] = r % 3 == 2 ? -100 : static_cast<double>((r * 37 + 5) % Vn);
  Tensor logits = ops::add_scalar(Tensor::uniform({N, Vn}, 21, -4, 4, dt), shift);  // shift tests stability
  logits.set_requires_grad(true);
  Tensor loss = ops::cross_entropy(logits, targets_of(tv), -100, red);
  EXPECT_EQ(loss.shape(), Shape{});
  const auto xv = logits.to_vector();
  const Expected e = direct_cross_entropy(xv, tv, N, Vn, -100, red);
  // Error scale: lse is stored in T, so exp(x - lse) carries a relative error of about
  // (|x| + log V) * eps(T); sums of N rows and V exponentials add (N + V) * eps(double).
  double max_abs = 0;
  for (double v : xv) max_abs = std::max(max_abs, std::abs(v));
  const double mag = max_abs + std::log(static_cast<double>(Vn)) + 1;
  const double eps = 2 * std::numeric_limits<T>::epsilon() + (N + Vn) * std::numeric_limits<double>::epsilon();
  EXPECT_NEAR(loss.item(), e.loss, eps * (std::abs(e.loss) + mag));
  loss.backward();
  const auto d = logits.grad().to_vector();
  double count = 0;
  for (double t : tv) count += t != -100;
  const double scale = red == Reduction::Mean ? 1 / count : 1.0;  // dloss/dlogit magnitude
  for (size_t i = 0; i < d.size(); ++i)
    ASSERT_NEAR(d[i], e.dlogits[i], mag * eps * (std::abs(e.dlogits[i]) + scale)) << "element " << i;
}

TEST(CrossEntropy, MatchesDirectComputation) {
  check_against_direct<double>(DType::F64, 9, 7, 0.0, Reduction::Mean);
  check_against_direct<double>(DType::F64, 6, 1300, 500.0, Reduction::Sum);  // several blocks, large logits
  check_against_direct<float>(DType::F32, 9, 7, 0.0, Reduction::Mean);
  check_against_direct<float>(DType::F32, 40, 2000, 0.0, Reduction::Mean);  // parallel path
}

TEST(CrossEntropy, AllIgnoredGivesZeroLossAndZeroGradients) {
  for (Reduction red : {Reduction::Mean, Reduction::Sum}) {
    Tensor logits = Tensor::uniform({3, 4}, 2, -1, 1, DType::F64);
    logits.set_requires_grad(true);
    Tensor loss = ops::cross_entropy(logits, targets_of({-100, -100, -100}), -100, red);
    EXPECT_EQ(loss.item(), 0.0);
    loss.backward();
    for (double g : logits.grad().to_vector()) EXPECT_EQ(g, 0.0);
  }
}

TEST(CrossEntropy, RowsOfAWiderBufferAreReadInPlace) {
  // A column slice keeps unit-stride rows with a row stride larger than V.
  Tensor wide = Tensor::uniform({5, 9}, 4, -2, 2, DType::F64);
  Tensor logits = ops::slice(wide, 1, 2, 8);  // [5, 6], row stride 9
  const std::vector<double> tv = {0, 5, 3, -100, 2};
  Tensor loss = ops::cross_entropy(logits, targets_of(tv));
  const Expected e = direct_cross_entropy(ops::contiguous(logits).to_vector(), tv, 5, 6, -100, Reduction::Mean);
  EXPECT_NEAR(loss.item(), e.loss, 16 * std::numeric_limits<double>::epsilon() * (1 + std::abs(e.loss)));
}

TEST(CrossEntropy, GradientScalesWithTheIncomingGradient) {
  Tensor logits = Tensor::uniform({4, 3}, 8, -1, 1, DType::F64);
  logits.set_requires_grad(true);
  const std::vector<double> tv = {2, 0, -100, 1};
  ops::cross_entropy(logits, targets_of(tv)).backward(Tensor::full({}, 2.5, DType::F64));
  const Expected e = direct_cross_entropy(logits.to_vector(), tv, 4, 3, -100, Reduction::Mean);
  const auto d = logits.grad().to_vector();
  for (size_t i = 0; i < d.size(); ++i)
    EXPECT_NEAR(d[i], 2.5 * e.dlogits[i], 16 * std::numeric_limits<double>::epsilon());
}

TEST(CrossEntropy, BadInputNamesTheOpAndValues) {
  Tensor logits = Tensor::zeros({3, 4});
  try {
    ops::cross_entropy(logits, targets_of({0, 4, 1}));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cross_entropy"), std::string::npos) << m;
    EXPECT_NE(m.find("target 4"), std::string::npos) << m;
    EXPECT_NE(m.find("V = 4"), std::string::npos) << m;
  }
  EXPECT_THROW(ops::cross_entropy(logits, targets_of({0, -1, 1})), ValueError);  // -1 is not ignore_index
  // With ignore_index -1 the middle row is left out: the mean over two uniform rows is log 4.
  const Tensor ignored = ops::cross_entropy(logits, targets_of({0, -1, 1}), -1);
  EXPECT_NEAR(ignored.item(), std::log(4.0), 16 * testing::kEpsF32);
  try {
    ops::cross_entropy(logits, targets_of({0, 1}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cross_entropy"), std::string::npos) << m;
    EXPECT_NE(m.find("[2]"), std::string::npos) << m;
    EXPECT_NE(m.find("[3, 4]"), std::string::npos) << m;
  }
  EXPECT_THROW(ops::cross_entropy(Tensor::zeros({2, 3, 4}), targets_of({0, 1})), ShapeError);
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::zeros({3})), DTypeError);
  EXPECT_THROW(ops::cross_entropy(Tensor::zeros({3, 4}, DType::I32), targets_of({0, 1, 2})), DTypeError);
}

}  // namespace
}  // namespace strand
