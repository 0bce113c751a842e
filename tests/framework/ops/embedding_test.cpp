// Embedding: float64 gradient checks, gathered rows and scattered gradients against direct
// loops, thread-count independence of the scatter-add, and bad ids.
#include <gtest/gtest.h>
#include <omp.h>

#include <limits>

#include "framework/core/error.h"
#include "framework/ops/embedding.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;

Tensor ids_of(const std::vector<double>& values, const Shape& shape) {
  return Tensor::from_vector(values, shape, DType::I32);
}

TEST(Embedding, GradientsMatchFiniteDifferences) {
  const Tensor ids_2d = ids_of({0, 3, 3, 1, 4, 3}, {2, 3});  // repeats: rows 3 sum three gradients
  const Tensor ids_1d = ids_of({2, 2, 0}, {3});              // rows 1, 3, 4 get no gradient
  const Tensor ids_3d = ids_of({1, 0, 1, 1}, {2, 1, 2});
  const std::vector<OpCase> cases = {
      {"embedding ids [2, 3]", {{5, 3}}, [=](const V& x) { return ops::embedding(x[0], ids_2d); }},
      {"embedding ids [3]", {{5, 4}}, [=](const V& x) { return ops::embedding(x[0], ids_1d); }},
      {"embedding ids [2, 1, 2]", {{2, 3}}, [=](const V& x) { return ops::embedding(x[0], ids_3d); }},
  };
  for (const OpCase& c : cases) run_op_case(c);
}

template <class T>
void check_forward_and_backward(DType dt) {
  const int64_t Vn = 7, C = 5;
  Tensor table = Tensor::uniform({Vn, C}, 3, -1, 1, dt);
  table.set_requires_grad(true);
  Tensor ids = ids_of({6, 0, 2, 2, 6, 6, 1, 3}, {2, 4});
  Tensor y = ops::embedding(table, ids);
  ASSERT_EQ(y.shape(), (Shape{2, 4, C}));
  const auto tv = table.to_vector(), yv = y.to_vector(), iv = ids.to_vector();
  for (size_t i = 0; i < iv.size(); ++i)
    for (int64_t c = 0; c < C; ++c)  // a gather copies: exact
      ASSERT_EQ(yv[i * C + c], tv[static_cast<size_t>(iv[i]) * C + c]) << "position " << i << " column " << c;

  Tensor g = Tensor::uniform(y.shape(), 4, -1, 1, dt);
  y.backward(g);
  const auto gv = g.to_vector(), dv = table.grad().to_vector();
  std::vector<double> expected(static_cast<size_t>(Vn * C), 0.0);
  for (size_t i = 0; i < iv.size(); ++i)
    for (int64_t c = 0; c < C; ++c) expected[static_cast<size_t>(iv[i]) * C + c] += gv[i * C + c];
  // At most three terms meet in a row: a few roundings of the dtype.
  const double eps = 4 * std::numeric_limits<T>::epsilon();
  for (size_t j = 0; j < expected.size(); ++j)
    EXPECT_NEAR(dv[j], expected[j], eps * (1 + std::abs(expected[j]))) << "table element " << j;
}

TEST(Embedding, ForwardGathersRowsAndBackwardScatterAdds) {
  check_forward_and_backward<float>(DType::F32);
  check_forward_and_backward<double>(DType::F64);
}

TEST(Embedding, NonContiguousIdsAndTable) {
  Tensor table_t = Tensor::uniform({4, 6}, 5, -1, 1, DType::F64);  // [C, V]
  Tensor table = ops::transpose(table_t, 0, 1);                     // [V, C] view
  Tensor ids = ops::transpose(ids_of({0, 5, 1, 4, 2, 3}, {2, 3}), 0, 1);  // [[0, 4], [5, 2], [1, 3]]
  Tensor y = ops::embedding(table, ids);
  const auto yv = y.to_vector(), tv = ops::contiguous(table).to_vector();
  const std::vector<int> order = {0, 4, 5, 2, 1, 3};
  for (size_t i = 0; i < order.size(); ++i)
    for (int c = 0; c < 4; ++c) EXPECT_EQ(yv[i * 4 + c], tv[order[i] * 4 + c]);
}

TEST(Embedding, ScatterAddIsTheSameForAnyThreadCount) {
  // Large enough for the parallel path; many repeats of few ids.
  const int64_t n = 20000, Vn = 50, C = 64;
  std::vector<double> idv(n);
  for (int64_t i = 0; i < n; ++i) idv[i] = static_cast<double>((i * 7919) % Vn);
  Tensor ids = ids_of(idv, {n});
  Tensor g = Tensor::uniform({n, C}, 9, -1, 1);
  auto table_grad = [&](int threads) {
    omp_set_num_threads(threads);
    Tensor table = Tensor::zeros({Vn, C});
    table.set_requires_grad(true);
    ops::embedding(table, ids).backward(g);
    return table.grad().to_vector();
  };
  const int saved_threads = omp_get_max_threads();
  const auto one = table_grad(1), two = table_grad(2);
  omp_set_num_threads(saved_threads);
  EXPECT_EQ(one, two);
  // And it is the sum: row 0 against a double loop, within the float32 bound for k terms
  // added in sequence, k * eps * sum |term|.
  const auto gv = g.to_vector();
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, s_abs = 0, k = 0;
    for (int64_t i = 0; i < n; ++i)
      if (idv[i] == 0) {
        s += gv[i * C + c];
        s_abs += std::abs(gv[i * C + c]);
        ++k;
      }
    EXPECT_NEAR(one[c], s, k * std::numeric_limits<float>::epsilon() * s_abs);
  }
}

TEST(Embedding, BadInputNamesTheOpAndValues) {
  Tensor table = Tensor::zeros({5, 3});
  try {
    ops::embedding(table, ids_of({1, 5}, {2}));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("embedding"), std::string::npos) << m;
    EXPECT_NE(m.find("id 5"), std::string::npos) << m;
    EXPECT_NE(m.find("V = 5"), std::string::npos) << m;
  }
  try {
    ops::embedding(table, ids_of({-1}, {1}));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("id -1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::embedding(table, Tensor::zeros({2})), DTypeError);
  EXPECT_THROW(ops::embedding(Tensor::zeros({5, 3}, DType::I32), ids_of({1}, {1})), DTypeError);
  try {
    ops::embedding(Tensor::zeros({15}), ids_of({1}, {1}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("embedding"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("[15]"), std::string::npos);
  }
}

}  // namespace
}  // namespace strand
