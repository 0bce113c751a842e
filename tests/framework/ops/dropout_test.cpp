// Dropout: float64 gradient check with a fixed seed, kept fraction within a binomial bound,
// mask reproducibility (seed, offset, thread count), scale, the p = 0 identity, and bad p; the
// per-row offset form: sequence shards draw the rows of the unsharded mask.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>

#include "framework/autograd/engine.h"
#include "framework/core/error.h"
#include "framework/ops/dropout.h"
#include "support/gradcheck.h"
#include "support/tolerance.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

TEST(Dropout, GradientsMatchFiniteDifferences) {
  const std::vector<OpCase> cases = {
      {"dropout p=0.3", {{6, 7}}, [](const V& x) { return ops::dropout(x[0], 0.3, 1234); }},
      {"dropout p=0.5 offset 5", {{3, 4, 5}}, [](const V& x) { return ops::dropout(x[0], 0.5, 99, 5); }},
      {"dropout p=0", {{4, 3}}, [](const V& x) { return ops::mul_scalar(ops::dropout(x[0], 0.0, 1), 2.0); }},
      {"dropout p=0.4 row offsets", {{2, 3, 5}},
       [](const V& x) { return ops::dropout(x[0], 0.4, 17, std::vector<uint64_t>{70, 3, 41, 5, 0, 99}); }},
  };
  for (const OpCase& c : cases) run_op_case(c);
}

TEST(Dropout, KeptFractionAndScale) {
  const int64_t n = 1000000;
  for (double p : {0.1, 0.25, 0.5, 0.9}) {
    Tensor x = Tensor::uniform({n}, 3, 0.5, 1.5);  // nonzero everywhere, so y == 0 means dropped
    const auto xv = x.to_vector(), yv = ops::dropout(x, p, 42).to_vector();
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    int64_t kept = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (yv[i] == 0) continue;
      ++kept;
      ASSERT_EQ(static_cast<float>(yv[i]), static_cast<float>(xv[i]) * scale) << "p " << p << " element " << i;
    }
    // Kept count is Binomial(n, 1 - p): within 6 standard deviations (false alarm < 1e-8).
    const double sd = std::sqrt(n * p * (1 - p));
    EXPECT_NEAR(static_cast<double>(kept), n * (1 - p), 6 * sd) << "p " << p;
  }
}

TEST(Dropout, MaskDependsOnlyOnSeedAndGlobalIndex) {
  const int64_t n = 4099;
  Tensor ones = Tensor::ones({n}, DType::F64);
  const auto a = ops::dropout(ones, 0.5, 7, 0).to_vector();
  EXPECT_EQ(a, ops::dropout(ones, 0.5, 7, 0).to_vector());
  EXPECT_NE(a, ops::dropout(ones, 0.5, 7, 1).to_vector());
  EXPECT_NE(a, ops::dropout(ones, 0.5, 8, 0).to_vector());
  // A shard starting at global position k (not a multiple of 4) draws the mask of the full
  // sequence from k on: shards of one sequence agree with the unsharded run.
  for (int64_t k : {1, 6, 1027}) {
    const auto shard = ops::dropout(Tensor::ones({n - k}, DType::F64), 0.5, 7, k).to_vector();
    for (int64_t i = 0; i < n - k; ++i) ASSERT_EQ(shard[i], a[i + k]) << "offset " << k << " element " << i;
  }
}

TEST(Dropout, MaskIsTheSameForAnyThreadCount) {
  const int64_t n = 1000000;
  Tensor x = Tensor::uniform({n}, 5, -1, 1);
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = ops::dropout(x, 0.2, 77, 13).to_vector();
  omp_set_num_threads(2);
  const auto two = ops::dropout(x, 0.2, 77, 13).to_vector();
  omp_set_num_threads(saved_threads);
  EXPECT_EQ(one, two);
}

TEST(Dropout, BackwardAppliesTheForwardMask) {
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = Tensor::uniform({50, 40}, 6, 0.5, 1.5, dt);
    x.set_requires_grad(true);
    Tensor y = ops::dropout(x, 0.4, 11, 3);
    Tensor g = Tensor::uniform({50, 40}, 7, -1, 1, dt);
    y.backward(g);
    const auto xv = x.to_vector(), yv = y.to_vector(), gv = g.to_vector(), dv = x.grad().to_vector();
    const double eps = strand::testing::dtype_eps(dt);
    for (size_t i = 0; i < xv.size(); ++i) {
      const double mask_scale = yv[i] / xv[i];  // 0 or 1/(1-p)
      EXPECT_NEAR(dv[i], gv[i] * mask_scale, 4 * eps * (1 + std::abs(gv[i] * mask_scale))) << "element " << i;
    }
  }
}

TEST(Dropout, ZeroProbabilityIsTheIdentity) {
  Tensor x = Tensor::uniform({3, 4}, 1, -1, 1);
  x.set_requires_grad(true);
  Tensor y = ops::dropout(x, 0.0, 5);
  EXPECT_EQ(y.impl(), x.impl());  // no copy, no graph node
}

TEST(Dropout, NonContiguousInputUsesLogicalOrder) {
  Tensor x = Tensor::uniform({6, 5}, 2, 0.5, 1.5, DType::F64);
  Tensor xt = ops::transpose(x, 0, 1);
  const auto from_view = ops::dropout(xt, 0.5, 3).to_vector();
  const auto from_copy = ops::dropout(ops::contiguous(xt), 0.5, 3).to_vector();
  EXPECT_EQ(from_view, from_copy);
}

// Row offsets (b * N + pos[t]) * C: a shard of the sequence, its rows in any order (a zigzag
// rank holds two chunks far apart), draws exactly the unsharded [B, N, C] mask's rows.
TEST(Dropout, ShardRowsDrawTheUnshardedMask) {
  const int64_t B = 2, N = 16, C = 7, P = 4, chunk = N / (2 * P);
  const auto full = ops::dropout(Tensor::ones({B, N, C}, DType::F64), 0.5, 21).to_vector();
  for (int64_t rank = 0; rank < P; ++rank) {
    // Zigzag: chunks rank and 2P-1-rank.
    std::vector<int64_t> pos;
    for (int64_t c : {rank, 2 * P - 1 - rank})
      for (int64_t i = 0; i < chunk; ++i) pos.push_back(c * chunk + i);
    const int64_t T = static_cast<int64_t>(pos.size());
    std::vector<uint64_t> offsets;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) offsets.push_back(static_cast<uint64_t>((b * N + pos[t]) * C));
    const auto shard = ops::dropout(Tensor::ones({B, T, C}, DType::F64), 0.5, 21, offsets).to_vector();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c)
          ASSERT_EQ(shard[(b * T + t) * C + c], full[(b * N + pos[t]) * C + c])
              << "rank " << rank << " row " << b << " position " << pos[t] << " channel " << c;
  }
  // Offsets row * C for every row are the single-offset mask, bit for bit (the unsharded default).
  std::vector<uint64_t> rows;
  for (int64_t r = 0; r < B * N; ++r) rows.push_back(static_cast<uint64_t>(r * C));
  Tensor x = Tensor::uniform({B, N, C}, 4, 0.5, 1.5);
  EXPECT_EQ(ops::dropout(x, 0.3, 8, rows).to_vector(), ops::dropout(x, 0.3, 8).to_vector());
}

TEST(Dropout, RowOffsetsBackwardAppliesTheForwardMask) {
  Tensor x = Tensor::uniform({3, 4, 9}, 6, 0.5, 1.5, DType::F64);
  x.set_requires_grad(true);
  std::vector<uint64_t> offsets;
  for (int64_t r = 0; r < 12; ++r) offsets.push_back(static_cast<uint64_t>(1000 - 37 * r));
  Tensor y = ops::dropout(x, 0.5, 13, offsets);
  y.backward(Tensor::ones({3, 4, 9}, DType::F64));
  const auto xv = x.to_vector(), yv = y.to_vector(), dv = x.grad().to_vector();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_EQ(dv[i], yv[i] / xv[i]) << "element " << i;  // 0 or 2
}

TEST(Dropout, WrongRowOffsetCountNamesTheOpAndShape) {
  try {
    ops::dropout(Tensor::zeros({2, 3, 4}), 0.5, 1, std::vector<uint64_t>(5, 0));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("dropout"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3, 4]"), std::string::npos) << m;
    EXPECT_NE(m.find("5 row offsets"), std::string::npos) << m;
  }
}

TEST(Dropout, BadInputNamesTheOpAndValue) {
  Tensor x = Tensor::zeros({2, 3});
  for (double p : {-0.1, 1.0, 1.5, std::nan("")}) {
    try {
      ops::dropout(x, p, 1);
      FAIL() << "expected ValueError for p " << p;
    } catch (const ValueError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("dropout"), std::string::npos) << m;
      EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
    }
  }
  EXPECT_THROW(ops::dropout(Tensor::zeros({2}, DType::I32), 0.5, 1), DTypeError);
}

}  // namespace
}  // namespace strand
