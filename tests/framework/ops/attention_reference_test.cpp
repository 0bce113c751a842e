// Reference attention: float64 gradient checks (MHA, GQA, MQA, causal, padding, per-head masks,
// a fully masked row, Nq != Nk, the gradient through lse), values against a direct double
// computation, fully masked rows, thread-count independence, and bad inputs.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <functional>
#include <limits>

#include "framework/autograd/engine.h"
#include "framework/core/error.h"
#include "framework/ops/attention_reference.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using testing::OpCase;
using V = std::vector<Tensor>;
constexpr double kInf = std::numeric_limits<double>::infinity();

// An int32 mask of `shape` whose element at (its own) index tuple is keep(idx).
Tensor make_mask(const Shape& shape, const std::function<bool(const std::vector<int64_t>&)>& keep) {
  const int64_t n = numel_of(shape);
  std::vector<double> vals(static_cast<size_t>(n));
  std::vector<int64_t> idx(shape.size());
  for (int64_t f = 0; f < n; ++f) {
    int64_t rem = f;
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    vals[f] = keep(idx) ? 1 : 0;
  }
  return Tensor::from_vector(vals, shape, DType::I32);
}

// Causal mask [Nq, Nk], aligned so the last query sees the last key (query i sees j <= i + Nk - Nq).
Tensor causal_mask(int64_t Nq, int64_t Nk) {
  return make_mask({Nq, Nk}, [=](const std::vector<int64_t>& x) { return x[1] <= x[0] + Nk - Nq; });
}

// o plus lse broadcast over D: one output whose gradient reaches both o and lse.
Tensor o_and_lse(const ops::AttentionOutput& r) { return ops::add(r.o, ops::unsqueeze(r.lse, -1)); }

std::vector<OpCase> attention_cases() {
  const Tensor causal4 = causal_mask(4, 4), causal_3x5 = causal_mask(3, 5);
  // Padding [B, 1, 1, Nk]: batch 1 cannot see its last two keys.
  const Tensor padding = make_mask({2, 1, 1, 5}, [](const std::vector<int64_t>& x) { return x[0] == 0 || x[3] < 3; });
  // Per-head mask [B, Hq, Nq, Nk] (every row keeps key (i + h) % Nk).
  const Tensor per_head = make_mask({1, 4, 3, 4}, [](const std::vector<int64_t>& x) {
    return (x[1] * 7 + x[2] * 3 + x[3] * 5) % 3 != 0 || x[3] == (x[2] + x[1]) % 4;
  });
  // Row 1 of every head sees no key.
  const Tensor masked_row = make_mask({3, 4}, [](const std::vector<int64_t>& x) { return x[0] != 1 && x[1] != 2; });
  return {
      {"MHA o+lse", {{2, 2, 4, 3}, {2, 2, 4, 3}, {2, 2, 4, 3}},
       [](const V& x) { return o_and_lse(ops::attention_reference(x[0], x[1], x[2])); }},
      {"MHA lse only", {{1, 2, 3, 4}, {1, 2, 5, 4}, {1, 2, 5, 4}},
       [](const V& x) { return ops::attention_reference(x[0], x[1], x[2]).lse; }},
      {"GQA Nq != Nk o+lse", {{1, 4, 3, 2}, {1, 2, 5, 2}, {1, 2, 5, 2}},
       [](const V& x) { return o_and_lse(ops::attention_reference(x[0], x[1], x[2])); }},
      {"MQA causal o", {{1, 3, 4, 3}, {1, 1, 4, 3}, {1, 1, 4, 3}},
       [=](const V& x) { return ops::attention_reference(x[0], x[1], x[2], causal4).o; }},
      {"GQA causal Nq < Nk o+lse", {{2, 2, 3, 2}, {2, 1, 5, 2}, {2, 1, 5, 2}},
       [=](const V& x) { return o_and_lse(ops::attention_reference(x[0], x[1], x[2], causal_3x5)); }},
      {"padding o+lse", {{2, 2, 3, 3}, {2, 2, 5, 3}, {2, 2, 5, 3}},
       [=](const V& x) { return o_and_lse(ops::attention_reference(x[0], x[1], x[2], padding)); }},
      {"per-head mask GQA o+lse scale 0.7", {{1, 4, 3, 2}, {1, 2, 4, 2}, {1, 2, 4, 2}},
       [=](const V& x) { return o_and_lse(ops::attention_reference(x[0], x[1], x[2], per_head, 0.7)); }},
      {"fully masked row o", {{1, 2, 3, 2}, {1, 2, 4, 2}, {1, 2, 4, 2}},
       [=](const V& x) { return ops::attention_reference(x[0], x[1], x[2], masked_row).o; }},
  };
}

TEST(AttentionReference, GradientsMatchFiniteDifferences) {
  for (const OpCase& c : attention_cases()) run_op_case(c);
}

// Direct double computation, straight from the definition, reading the mask by broadcasting.
struct Direct {
  std::vector<double> o, lse;
};
Direct direct_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, double scale) {
  const int64_t B = q.size(0), Hq = q.size(1), Nq = q.size(2), D = q.size(3), Hkv = k.size(1), Nk = k.size(2);
  const auto qv = q.to_vector(), kv = k.to_vector(), vv = v.to_vector();
  const auto mv = mask.defined() ? mask.to_vector() : std::vector<double>{};
  auto keep = [&](int64_t b, int64_t h, int64_t i, int64_t j) {
    if (!mask.defined()) return true;
    const int64_t full[4] = {b, h, i, j};
    int64_t flat = 0;
    for (int64_t d = 0; d < mask.dim(); ++d) {
      const int64_t size = mask.size(d), at = full[4 - mask.dim() + d];
      flat = flat * size + (size == 1 ? 0 : at);
    }
    return mv[flat] != 0;
  };
  Direct r;
  r.o.assign(static_cast<size_t>(B * Hq * Nq * D), 0.0);
  r.lse.assign(static_cast<size_t>(B * Hq * Nq), -kInf);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t g = h / (Hq / Hkv);
      for (int64_t i = 0; i < Nq; ++i) {
        std::vector<double> s(Nk, -kInf);
        double m = -kInf;
        for (int64_t j = 0; j < Nk; ++j) {
          if (!keep(b, h, i, j)) continue;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d)
            dot += qv[((b * Hq + h) * Nq + i) * D + d] * kv[((b * Hkv + g) * Nk + j) * D + d];
          s[j] = scale * dot;
          m = std::max(m, s[j]);
        }
        if (m == -kInf) continue;
        double sum = 0;
        for (int64_t j = 0; j < Nk; ++j) sum += std::exp(s[j] - m);
        const int64_t row = (b * Hq + h) * Nq + i;
        r.lse[row] = m + std::log(sum);
        for (int64_t j = 0; j < Nk; ++j)
          for (int64_t d = 0; d < D; ++d)
            r.o[row * D + d] += std::exp(s[j] - r.lse[row]) * vv[((b * Hkv + g) * Nk + j) * D + d];
      }
    }
  return r;
}

template <class T>
void check_forward(DType dt, const Shape& qs, const Shape& ks, const Tensor& mask, double scale) {
  Tensor q = Tensor::uniform(qs, 1, -1, 1, dt), k = Tensor::uniform(ks, 2, -1, 1, dt);
  Tensor v = Tensor::uniform(ks, 3, -1, 1, dt);
  const auto r = ops::attention_reference(q, k, v, mask, scale);
  const double used_scale = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(qs[3]));
  const Direct e = direct_attention(q, k, v, mask, used_scale);
  // Inputs are exact in double; the kernel accumulates in double over Nk keys and D dimensions
  // and rounds to T once at the end.
  const double eps =
      2 * std::numeric_limits<T>::epsilon() + 4 * (ks[2] + qs[3]) * std::numeric_limits<double>::epsilon();
  const auto o = r.o.to_vector(), lse = r.lse.to_vector();
  for (size_t i = 0; i < o.size(); ++i) ASSERT_NEAR(o[i], e.o[i], eps * (1 + std::abs(e.o[i]))) << "o " << i;
  for (size_t i = 0; i < lse.size(); ++i) {
    if (e.lse[i] == -kInf) {
      ASSERT_EQ(lse[i], -kInf) << "lse " << i;
      continue;
    }
    ASSERT_NEAR(lse[i], e.lse[i], eps * (1 + std::abs(e.lse[i]))) << "lse " << i;
  }
}

TEST(AttentionReference, ForwardMatchesDirectComputation) {
  const Tensor padding = make_mask({2, 1, 1, 6}, [](const std::vector<int64_t>& x) { return x[0] == 0 || x[3] != 1; });
  const Tensor masked_row = make_mask({1, 1, 5, 6}, [](const std::vector<int64_t>& x) { return x[2] != 3; });
  check_forward<double>(DType::F64, {2, 3, 5, 4}, {2, 3, 5, 4}, Tensor(), 0.0);
  check_forward<double>(DType::F64, {2, 4, 5, 8}, {2, 2, 6, 8}, causal_mask(5, 6), 0.0);
  check_forward<double>(DType::F64, {2, 4, 5, 8}, {2, 1, 6, 8}, padding, 0.3);
  check_forward<float>(DType::F32, {2, 4, 5, 8}, {2, 2, 6, 8}, causal_mask(5, 6), 0.0);
  check_forward<float>(DType::F32, {1, 2, 5, 3}, {1, 2, 6, 3}, masked_row, 0.0);
  check_forward<float>(DType::F32, {1, 2, 64, 16}, {1, 1, 80, 16}, Tensor(), 0.0);  // parallel path
}

TEST(AttentionReference, NonContiguousMaskReadsThroughStrides) {
  Tensor q = Tensor::uniform({1, 2, 4, 3}, 1, -1, 1, DType::F64);
  Tensor k = Tensor::uniform({1, 2, 4, 3}, 2, -1, 1, DType::F64);
  Tensor v = Tensor::uniform({1, 2, 4, 3}, 3, -1, 1, DType::F64);
  Tensor upper = make_mask({4, 4}, [](const std::vector<int64_t>& x) { return x[0] <= x[1]; });
  Tensor lower_view = ops::transpose(upper, 0, 1);  // the causal mask, as a transposed view
  const auto a = ops::attention_reference(q, k, v, lower_view);
  const auto b = ops::attention_reference(q, k, v, causal_mask(4, 4));
  EXPECT_EQ(a.o.to_vector(), b.o.to_vector());
  EXPECT_EQ(a.lse.to_vector(), b.lse.to_vector());
}

TEST(AttentionReference, FullyMaskedRowsGiveZeroOutputAndGradients) {
  for (DType dt : {DType::F32, DType::F64}) {
    const int64_t B = 2, H = 2, Nq = 3, Nk = 4, D = 3;
    Tensor q = Tensor::uniform({B, H, Nq, D}, 1, -1, 1, dt), k = Tensor::uniform({B, H, Nk, D}, 2, -1, 1, dt);
    Tensor v = Tensor::uniform({B, H, Nk, D}, 3, -1, 1, dt);
    for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
    // Batch 1 sees no key at all; in batch 0, query row 2 sees none.
    Tensor mask = make_mask({B, 1, Nq, Nk}, [](const std::vector<int64_t>& x) { return x[0] == 0 && x[2] != 2; });
    const auto r = ops::attention_reference(q, k, v, mask);
    const auto o = r.o.to_vector(), lse = r.lse.to_vector();
    auto masked = [](int64_t b, int64_t i) { return b == 1 || i == 2; };
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < Nq; ++i) {
          const int64_t row = (b * H + h) * Nq + i;
          if (masked(b, i)) {
            EXPECT_EQ(lse[row], -kInf);
            for (int64_t d = 0; d < D; ++d) EXPECT_EQ(o[row * D + d], 0.0);
          } else {
            EXPECT_TRUE(std::isfinite(lse[row]));
          }
        }
    // Gradients through both outputs, with a finite gradient arriving at the -inf lse rows too.
    Tensor go = Tensor::uniform(r.o.shape(), 4, -1, 1, dt), gl = Tensor::uniform(r.lse.shape(), 5, -1, 1, dt);
    const V g = autograd::grad({r.o, r.lse}, {go, gl}, {q, k, v});
    for (const Tensor& t : g)
      for (double x : t.to_vector()) ASSERT_TRUE(std::isfinite(x));
    const auto dq = g[0].to_vector(), dk = g[1].to_vector(), dv = g[2].to_vector();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < Nq; ++i)
          for (int64_t d = 0; d < D; ++d) {
            const double x = dq[((b * H + h) * Nq + i) * D + d];
            if (masked(b, i)) EXPECT_EQ(x, 0.0);
            else EXPECT_NE(x, 0.0);
          }
    for (int64_t f = H * Nk * D; f < B * H * Nk * D; ++f) {  // batch 1: no query reads its keys
      EXPECT_EQ(dk[f], 0.0);
      EXPECT_EQ(dv[f], 0.0);
    }
  }
}

TEST(AttentionReference, ZeroKeysGiveZeroOutput) {
  Tensor q = Tensor::uniform({1, 1, 2, 3}, 1, -1, 1), k = Tensor::zeros({1, 1, 0, 3});
  const auto r = ops::attention_reference(q, k, k);
  EXPECT_EQ(r.o.to_vector(), (std::vector<double>(6, 0.0)));
  EXPECT_EQ(r.lse.to_vector(), (std::vector<double>(2, -kInf)));
}

TEST(AttentionReference, BackwardIsTheSameForAnyThreadCount) {
  // Above the parallel threshold; GQA so dk, dv sum over query heads.
  Tensor q = Tensor::uniform({1, 4, 48, 16}, 1, -1, 1), k = Tensor::uniform({1, 2, 40, 16}, 2, -1, 1);
  Tensor v = Tensor::uniform({1, 2, 40, 16}, 3, -1, 1);
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  Tensor go = Tensor::uniform({1, 4, 48, 16}, 4, -1, 1), gl = Tensor::uniform({1, 4, 48}, 5, -1, 1);
  // The last 40 columns of a [48, 48] causal mask: a strided view whose first 8 rows see no key.
  const Tensor mask = causal_mask(48, 48);
  auto grads = [&](int threads) {
    omp_set_num_threads(threads);
    const auto r = ops::attention_reference(q, k, v, ops::slice(mask, 1, 8, 48));
    std::vector<std::vector<double>> out;
    for (const Tensor& t : autograd::grad({r.o, r.lse}, {go, gl}, {q, k, v})) out.push_back(t.to_vector());
    out.push_back(r.o.to_vector());
    return out;
  };
  const int saved_threads = omp_get_max_threads();
  const auto one = grads(1), two = grads(2);
  omp_set_num_threads(saved_threads);
  EXPECT_EQ(one, two);
}

TEST(AttentionReference, BadInputNamesTheOpAndShapes) {
  Tensor q = Tensor::zeros({1, 4, 3, 2}), k = Tensor::zeros({1, 2, 5, 2});
  auto expect_shape_error = [](const std::function<void()>& f, const std::vector<std::string>& needles) {
    try {
      f();
      FAIL() << "expected ShapeError";
    } catch (const ShapeError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("attention_reference"), std::string::npos) << m;
      for (const auto& s : needles) EXPECT_NE(m.find(s), std::string::npos) << m << " lacks " << s;
    }
  };
  expect_shape_error([&] { ops::attention_reference(Tensor::zeros({4, 3, 2}), k, k); }, {"[4, 3, 2]"});
  expect_shape_error([&] { ops::attention_reference(q, Tensor::zeros({1, 3, 5, 2}), Tensor::zeros({1, 3, 5, 2})); },
                     {"4", "3"});
  expect_shape_error([&] { ops::attention_reference(q, k, Tensor::zeros({1, 2, 4, 2})); },
                     {"[1, 2, 5, 2]", "[1, 2, 4, 2]"});
  expect_shape_error([&] { ops::attention_reference(q, Tensor::zeros({1, 2, 5, 3}), Tensor::zeros({1, 2, 5, 3})); },
                     {"[1, 4, 3, 2]", "[1, 2, 5, 3]"});
  expect_shape_error([&] { ops::attention_reference(q, Tensor::zeros({2, 2, 5, 2}), Tensor::zeros({2, 2, 5, 2})); },
                     {"[2, 2, 5, 2]"});
  expect_shape_error([&] { ops::attention_reference(q, k, k, Tensor::zeros({3, 4}, DType::I32)); },
                     {"[3, 4]", "[1, 4, 3, 5]"});
  expect_shape_error([&] { ops::attention_reference(q, k, k, Tensor::zeros({2, 1, 1, 5}, DType::I32)); },
                     {"[2, 1, 1, 5]"});
  expect_shape_error([&] { ops::attention_reference(q, k, k, Tensor::zeros({1, 1, 1, 3, 5}, DType::I32)); },
                     {"[1, 1, 1, 3, 5]"});
  EXPECT_THROW(ops::attention_reference(q, k, k, Tensor::zeros({3, 5})), DTypeError);
  EXPECT_THROW(ops::attention_reference(q, Tensor::zeros({1, 2, 5, 2}, DType::F64), k), DTypeError);
  EXPECT_THROW(ops::attention_reference(Tensor::zeros({1, 4, 3, 2}, DType::I32), k, k), DTypeError);
}

}  // namespace
}  // namespace strand
