// Rotary position embedding: float64 gradient checks (contiguous and strided inputs, shared and
// per-row positions), forward values against a direct computation, the relative-position
// property, and the errors bad inputs raise.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "framework/core/error.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/reduce.h"
#include "framework/ops/rope.h"
#include "framework/ops/view.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

Tensor ints(const std::vector<double>& v, const Shape& s) { return Tensor::from_vector(v, s, DType::I32); }

// Direct RoPE of x [B, H, N, D] (any layout) with positions pos(b, n), in double.
std::vector<double> rope_direct(const Tensor& x, const std::vector<double>& pos, bool per_row, double base) {
  const Tensor xc = ops::contiguous(x);
  const auto v = xc.to_vector();
  const int64_t B = x.size(0), H = x.size(1), N = x.size(2), D = x.size(3), half = D / 2;
  std::vector<double> y(v.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t n = 0; n < N; ++n) {
        const double p = pos[static_cast<size_t>(per_row ? b * N + n : n)];
        const int64_t row = ((b * H + h) * N + n) * D;
        for (int64_t i = 0; i < half; ++i) {
          const double theta = p * std::pow(base, -2.0 * i / static_cast<double>(D));
          const double a = v[row + i], c = v[row + i + half];
          y[row + i] = a * std::cos(theta) - c * std::sin(theta);
          y[row + i + half] = c * std::cos(theta) + a * std::sin(theta);
        }
      }
  return y;
}

TEST(Rope, GradientsMatchFiniteDifferences) {
  const Tensor shared = ints({0, 3, 1, 7, 1000}, {5});
  const Tensor per_row = ints({4, 5, 6, 7, 8, 100, 0, 2, 2, 9}, {2, 5});
  const std::vector<OpCase> cases = {
      {"rope shared positions", {{2, 3, 5, 4}}, [&](const V& x) { return ops::rope(x[0], shared); }},
      {"rope per-row positions", {{2, 2, 5, 6}}, [&](const V& x) { return ops::rope(x[0], per_row); }},
      {"rope base 500", {{1, 2, 5, 8}}, [&](const V& x) { return ops::rope(x[0], shared, 500.0); }},
      // [B, N, H, D] transposed to [B, H, N, D], as attention projections arrive.
      {"rope of a transposed projection", {{2, 5, 3, 4}},
       [&](const V& x) { return ops::rope(ops::transpose(x[0], 1, 2), shared); }},
      {"rope inside a product", {{1, 2, 5, 4}},
       [&](const V& x) { return ops::mul(ops::rope(x[0], shared), x[0]); }},
  };
  for (const OpCase& c : cases) run_op_case(c);
}

TEST(Rope, ForwardMatchesDirectComputation) {
  for (DType dt : {DType::F64, DType::F32}) {
    const double eps = strand::testing::dtype_eps(dt);
    const Tensor x = Tensor::uniform({2, 3, 6, 8}, 3, -2, 2, dt);
    const std::vector<double> shared = {0, 1, 2, 50, 511, 4095};
    const std::vector<double> per_row = {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 16383};
    for (bool rowwise : {false, true}) {
      const Tensor pos = rowwise ? ints(per_row, {2, 6}) : ints(shared, {6});
      const auto got = ops::rope(x, pos).to_vector();
      const auto want = rope_direct(x, rowwise ? per_row : shared, rowwise, 10000.0);
      ASSERT_EQ(got.size(), want.size());
      // Each output is a 2-term sum of |x| <= 2 times cos/sin, each rounded once in dtype; the
      // angle itself is computed in double before rounding, so the error is a few eps of |x|.
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 8 * eps * 2.0) << dtype_name(dt) << " element " << i << " rowwise " << rowwise;
    }
  }
}

TEST(Rope, PositionZeroIsIdentityAndNormIsKept) {
  const Tensor x = Tensor::uniform({1, 2, 3, 4}, 5, -1, 1, DType::F64);
  EXPECT_LE(testing::max_abs_diff(ops::rope(x, ints({0, 0, 0}, {3})), x), 1e-15);
  const Tensor y = ops::rope(x, ints({5, 77, 1234}, {3}));
  const double nx = ops::sum(ops::square(x)).item(), ny = ops::sum(ops::square(y)).item();
  EXPECT_NEAR(nx, ny, 16 * std::numeric_limits<double>::epsilon() * nx);
}

TEST(Rope, ScoresDependOnlyOnRelativePosition) {
  // q(m) . k(n) after rotation depends on m - n only: shifting both positions changes nothing.
  const Tensor q = Tensor::uniform({1, 1, 1, 8}, 8, -1, 1, DType::F64);
  const Tensor k = Tensor::uniform({1, 1, 1, 8}, 9, -1, 1, DType::F64);
  auto score = [&](int m, int n) {
    return ops::sum(ops::mul(ops::rope(q, ints({double(m)}, {1})), ops::rope(k, ints({double(n)}, {1})))).item();
  };
  const double s = score(7, 3);
  for (int shift : {1, 100, 10000})
    EXPECT_NEAR(score(7 + shift, 3 + shift), s, 1e-9) << "shift " << shift;
  EXPECT_GT(std::abs(score(9, 3) - s), 1e-6);  // a different distance gives a different score
}

TEST(Rope, BackwardIsTheInverseRotation) {
  Tensor leaf = Tensor::uniform({1, 2, 4, 6}, 10, -1, 1, DType::F64);
  leaf.set_requires_grad(true);
  const Tensor pos = ints({3, 9, 27, 81}, {4});
  const Tensor y = ops::rope(leaf, pos);
  y.backward(y.detach());  // the gradient of |y|^2 / 2 is R^T y = R^T R x = x
  EXPECT_LE(testing::max_abs_diff(leaf.grad(), leaf.detach()), 16 * std::numeric_limits<double>::epsilon());
}

TEST(Rope, BadInputsNameTheOpAndShapes) {
  const Tensor x = Tensor::zeros({1, 2, 3, 4});
  auto expect_error = [](auto&& fn, const char* needle) {
    try {
      fn();
      FAIL() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("rope"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  EXPECT_THROW(ops::rope(Tensor::zeros({1, 2, 3, 5}), ints({0, 1, 2}, {3})), ShapeError);
  expect_error([&] { ops::rope(Tensor::zeros({1, 2, 3, 5}), ints({0, 1, 2}, {3})); }, "[1, 2, 3, 5]");
  EXPECT_THROW(ops::rope(x, Tensor::zeros({3})), DTypeError);
  EXPECT_THROW(ops::rope(x, ints({0, 1}, {2})), ShapeError);
  expect_error([&] { ops::rope(x, ints({0, 1}, {2})); }, "[1, 2, 3, 4]");
  EXPECT_THROW(ops::rope(x, ints({0, -1, 2}, {3})), ValueError);
  EXPECT_THROW(ops::rope(Tensor::zeros({2, 3, 4}), ints({0, 1, 2}, {3})), ShapeError);
  EXPECT_THROW(ops::rope(x, ints({0, 1, 2}, {3}), 0.0), ValueError);
  EXPECT_THROW(ops::rope(Tensor::zeros({1, 2, 3, 4}, DType::I32), ints({0, 1, 2}, {3})), DTypeError);
}

}  // namespace
}  // namespace strand
