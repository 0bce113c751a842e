// Single-query attention over a cache (ops::attention_decode) against the materialised reference
// attention: causal, sliding and dilated masks, MHA / GQA / MQA, float64 and float32, a ring
// cache whose slots are out of position order, empty slots, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/attention_decode.h"
#include "framework/ops/attention_reference.h"
#include "framework/ops/view.h"
#include "support/tolerance.h"

namespace strand {
namespace {

struct Case {
  std::string name;
  MaskSpec mask;
  int64_t capacity;  // cache slots; fewer than q_position + 1 makes a ring that wrapped
};

MaskSpec dilated(int64_t left, int64_t dilation) {
  MaskSpec m = MaskSpec::sliding(left);
  m.kind = MaskKind::Dilated;
  m.dilation = dilation;
  m.causal = true;
  return m;
}

std::vector<Case> cases() {
  MaskSpec sliding = MaskSpec::sliding(12);
  sliding.causal = true;
  return {
      {"causal, cache with empty slots", MaskSpec::causal_mask(), 90},
      {"sliding 13, ring", sliding, 13},
      {"dilated 4x6, ring", dilated(24, 6), 25},
  };
}

// The query at global position P = 70 against keys 0..P: the reference over all keys with the
// dense mask of the spec at q_offset P; the cache holds the keys of the last `capacity`
// positions (or all of them), key p in slot p % capacity.
void check_case(const Case& c, int64_t hq, int64_t hkv, DType dt, uint64_t seed) {
  const int64_t B = 2, D = 24, P = 70, N = P + 1;
  const auto draw = [&](const Shape& s, uint64_t sd) {
    return Tensor::uniform(s, sd, -1.0, 1.0, DType::F64).copy_as(dt, Device::cpu());
  };
  const Tensor q = draw({B, hq, 1, D}, seed), k = draw({B, hkv, N, D}, seed + 1), v = draw({B, hkv, N, D}, seed + 2);

  Tensor kc = Tensor::zeros({B, hkv, c.capacity, D}, dt), vc = Tensor::zeros({B, hkv, c.capacity, D}, dt);
  std::vector<int64_t> positions(static_cast<size_t>(c.capacity), -1);
  for (int64_t p = std::max<int64_t>(0, N - c.capacity); p < N; ++p) {
    const int64_t s = p % c.capacity;
    ops::slice(kc, 2, s, s + 1).copy_from(ops::slice(k, 2, p, p + 1));
    ops::slice(vc, 2, s, s + 1).copy_from(ops::slice(v, 2, p, p + 1));
    positions[static_cast<size_t>(s)] = p;
  }
  if (c.capacity < N) ASSERT_NE(positions[0], 0) << "the ring must have wrapped";
  const Tensor got = ops::attention_decode(q, kc, vc, positions, P, c.mask);

  MaskSpec at = c.mask;
  at.q_offset = P;
  const Tensor dense = ops::dense_mask(at, B, 1, N);
  const auto f64 = [](const Tensor& t) { return t.copy_as(DType::F64, Device::cpu()); };
  const Tensor ref = ops::attention_reference(f64(q), f64(k), f64(v), dense).o;

  // A sum of D products and a softmax over at most N terms in precision eps (as attention_test).
  const double eps = testing::dtype_eps(dt), terms = static_cast<double>(D + N);
  const auto g = got.to_vector(), r = ref.to_vector();
  ASSERT_EQ(got.shape(), ref.shape());
  double mx = 0;
  for (double x : r) mx = std::max(mx, std::abs(x));
  for (size_t i = 0; i < r.size(); ++i)
    ASSERT_LE(std::abs(g[i] - r[i]), terms * eps * (mx + std::abs(r[i])))
        << c.name << " Hq=" << hq << " Hkv=" << hkv << " " << dtype_name(dt) << " element " << i << ": got " << g[i]
        << ", reference " << r[i];
}

TEST(AttentionDecode, MatchesReferenceForEveryCachedMaskHeadLayoutAndDtype) {
  uint64_t seed = 7;
  for (const Case& c : cases())
    for (auto [hq, hkv] : {std::pair<int64_t, int64_t>{4, 4}, {4, 2}, {4, 1}})
      for (DType dt : {DType::F64, DType::F32}) {
        check_case(c, hq, hkv, dt, seed += 3);
        if (HasFatalFailure()) return;
      }
}

TEST(AttentionDecode, EmptySlotsAndLaterKeysAreNeverAttended) {
  // One real key at position 0 and a slot claiming a later position: the output is that key's value.
  const Tensor q = Tensor::ones({1, 1, 1, 2}, DType::F64);
  const Tensor k = Tensor::from_vector({1, 0, 5, 5, 9, 9}, {1, 1, 3, 2}, DType::F64);
  const Tensor v = Tensor::from_vector({3, 4, 100, 100, 200, 200}, {1, 1, 3, 2}, DType::F64);
  const std::vector<int64_t> positions = {0, -1, 3};
  const Tensor o = ops::attention_decode(q, k, v, positions, 2, MaskSpec::causal_mask());
  EXPECT_EQ(o.to_vector(), (std::vector<double>{3, 4}));
}

TEST(AttentionDecode, RefusesBadShapesWithAnError) {
  const Tensor q = Tensor::zeros({1, 3, 1, 4}), k = Tensor::zeros({1, 2, 5, 4});
  const std::vector<int64_t> five(5, 0), four(4, 0);
  EXPECT_THROW(ops::attention_decode(q, k, k, five, 0, MaskSpec::causal_mask()), ShapeError);  // 2 does not divide 3
  const Tensor q2 = Tensor::zeros({1, 2, 1, 4});
  EXPECT_THROW(ops::attention_decode(q2, k, k, four, 0, MaskSpec::causal_mask()), ShapeError);
  EXPECT_THROW(ops::attention_decode(Tensor::zeros({1, 2, 1, 4}, DType::F64), k, k, five, 0, MaskSpec::causal_mask()),
               DTypeError);
}

}  // namespace
}  // namespace strand
