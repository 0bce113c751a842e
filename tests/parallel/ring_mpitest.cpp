// parallel::ring_attention under mpiexec (1, 2 and 4 ranks): every rank builds the same global
// q, k, v, runs one-rank ops::attention and its backward, and checks its own shard of o, lse, dq,
// dk, dv from the ring against those rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/autograd/grad_mode.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/view.h"
#include "parallel/attention.h"
#include "parallel/comm/group.h"
#include "parallel/ring.h"

namespace strand::parallel {
namespace {

struct RingCase {
  std::string name;
  int64_t batch = 2, q_heads = 2, kv_heads = 2, n = 13, d = 16;  // n: rows per rank (odd: no tile multiple)
  MaskSpec mask;
  DType dtype = DType::F32;
  uint64_t seed = 1;
};

// Rows [r*n, (r+1)*n) along axis 2 (the sequence) of a global tensor, as a contiguous copy.
Tensor shard(const Tensor& t, int rank, int64_t n) {
  return ops::slice(t.detach(), 2, rank * n, (rank + 1) * n).copy_as(t.dtype(), t.device());
}

// got against ref's rows of this rank. Tolerance from the dtype: each value is a sum of at most
// `terms` products, rounded once per term and again by the ring's merges (one per rank), so the
// error is bounded by a few eps per term of the magnitude involved (the value's own, or the
// tensor's typical one where terms cancel).
void expect_close(const Tensor& got, const Tensor& ref_shard, int64_t terms, const std::string& what) {
  const std::vector<double> g = got.to_vector(), r = ref_shard.to_vector();
  ASSERT_EQ(got.shape(), ref_shard.shape()) << what;
  const double eps = ref_shard.dtype() == DType::F64 ? std::numeric_limits<double>::epsilon()
                                                     : std::numeric_limits<float>::epsilon();
  // bfloat16 results are float32 computations rounded once on each side: up to 2^-8 relative each.
  const double rounding = ref_shard.dtype() == DType::BF16 ? std::ldexp(1.0, -7) : 0.0;
  double typical = 0.0;
  int64_t finite = 0;
  for (double x : r)
    if (std::isfinite(x)) typical += std::abs(x), ++finite;
  typical = finite ? typical / static_cast<double>(finite) : 0.0;
  const double rel = 8.0 * eps * static_cast<double>(terms + world().size());
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_FALSE(std::isnan(g[i])) << what << " element " << i;
    if (std::isinf(r[i])) {
      EXPECT_EQ(g[i], r[i]) << what << " element " << i;
      continue;
    }
    EXPECT_NEAR(g[i], r[i], rel * (std::abs(r[i]) + typical) + rounding * std::abs(r[i]))
        << what << " element " << i;
  }
}

void run_case(const RingCase& c) {
  SCOPED_TRACE(c.name);
  Group& sp = world();
  const int p = sp.size(), r = sp.rank();
  const int64_t total = p * c.n;
  Tensor q = Tensor::randn({c.batch, c.q_heads, total, c.d}, c.seed, c.dtype);
  Tensor k = Tensor::randn({c.batch, c.kv_heads, total, c.d}, c.seed + 1, c.dtype);
  Tensor v = Tensor::randn({c.batch, c.kv_heads, total, c.d}, c.seed + 2, c.dtype);
  const Tensor d_o = Tensor::randn({c.batch, c.q_heads, total, c.d}, c.seed + 3, c.dtype);
  const DType lse_dtype = c.dtype == DType::BF16 ? DType::F32 : c.dtype;  // lse of bfloat16 inputs is float32
  const Tensor d_lse = Tensor::randn({c.batch, c.q_heads, total}, c.seed + 4, lse_dtype);
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  const ops::AttentionOutput ref = ops::attention(q, k, v, c.mask);
  autograd::backward({ref.o, ref.lse}, {d_o, d_lse});

  Tensor qs = shard(q, r, c.n), ks = shard(k, r, c.n), vs = shard(v, r, c.n);
  for (Tensor* t : {&qs, &ks, &vs}) t->set_requires_grad(true);
  const std::vector<double> k_before = ks.to_vector(), v_before = vs.to_vector();
  const ops::AttentionOutput got = ring_attention(qs, ks, vs, c.mask, 0.0, sp);
  autograd::backward({got.o, got.lse}, {shard(d_o, r, c.n), shard(d_lse, r, c.n)});
  // The ring receives into its own buffers, never into the caller's k and v.
  EXPECT_EQ(ks.to_vector(), k_before);
  EXPECT_EQ(vs.to_vector(), v_before);

  // o and dq sum over the keys, dk and dv over the queries of a kv-head group.
  const int64_t keys = total, queries = total * (c.q_heads / c.kv_heads);
  expect_close(got.o, shard(ref.o, r, c.n), keys, "o");
  expect_close(got.lse, ops::slice(ref.lse.detach(), 2, r * c.n, (r + 1) * c.n), keys, "lse");
  // The gradients add a D-term product (dO . v) inside each summed term.
  expect_close(qs.grad(), shard(q.grad(), r, c.n), keys + c.d, "dq");
  expect_close(ks.grad(), shard(k.grad(), r, c.n), queries + c.d, "dk");
  expect_close(vs.grad(), shard(v.grad(), r, c.n), queries, "dv");
}

TEST(RingAttention, CausalMha) {
  RingCase c{.name = "causal MHA D=16", .mask = MaskSpec::causal(), .seed = 11};
  run_case(c);
}

TEST(RingAttention, BidirectionalMha) {
  run_case(RingCase{.name = "non-causal MHA D=16", .mask = MaskSpec{}, .seed = 21});
}

TEST(RingAttention, CausalGqaD64) {
  run_case(RingCase{.name = "causal GQA 4/2 D=64", .q_heads = 4, .kv_heads = 2, .d = 64,
                    .mask = MaskSpec::causal(), .seed = 31});
}

TEST(RingAttention, BidirectionalGqaD64) {
  run_case(RingCase{.name = "non-causal GQA 4/2 D=64", .q_heads = 4, .kv_heads = 2, .d = 64, .mask = MaskSpec{},
                    .seed = 41});
}

TEST(RingAttention, SlidingWindowWiderThanABlock) {
  // left window 16 > n = 13: a query reaches into the block two ranks back; farther blocks are skipped.
  run_case(RingCase{.name = "sliding (16, 2) GQA", .q_heads = 4, .kv_heads = 2, .mask = MaskSpec::sliding(16, 2),
                    .seed = 51});
}

TEST(RingAttention, Float64Causal) {
  run_case(RingCase{.name = "causal MHA float64", .mask = MaskSpec::causal(), .dtype = DType::F64, .seed = 61});
}

TEST(RingAttention, Bfloat16CausalGqa) {
  run_case(RingCase{.name = "causal GQA bfloat16", .q_heads = 4, .kv_heads = 2, .mask = MaskSpec::causal(),
                    .dtype = DType::BF16, .seed = 91});
}

TEST(RingAttention, FullyMaskedRowsGiveZeroNotNan) {
  // Batch row 0 has no keys at all: o = 0, lse = -inf and zero gradients on every rank, no NaN
  // from merging -inf partials; batch row 1's padding leaves the last rank's keys all masked
  // (P > 1), so that block is skipped for every query.
  RingCase c{.name = "key padding", .mask = MaskSpec{}, .seed = 71};
  const int p = world().size();
  c.mask.key_lengths = {0, p == 1 ? c.n - 5 : (p - 1) * c.n - 2};
  run_case(c);
}

TEST(RingAttention, ParallelAttentionDispatchesToTheRing) {
  Group& sp = world();
  const int64_t n = 7;
  const Tensor q = Tensor::randn({1, 2, sp.size() * n, 8}, 81);
  const Tensor k = Tensor::randn({1, 1, sp.size() * n, 8}, 82);
  const Tensor v = Tensor::randn({1, 1, sp.size() * n, 8}, 83);
  const Tensor qs = shard(q, sp.rank(), n), ks = shard(k, sp.rank(), n), vs = shard(v, sp.rank(), n);
  const ops::AttentionOutput want = sp.size() > 1 ? ring_attention(qs, ks, vs, MaskSpec::causal(), 0.0, sp)
                                                  : ops::attention(qs, ks, vs, MaskSpec::causal());
  const ops::AttentionOutput got = parallel::attention(qs, ks, vs, MaskSpec::causal(), 0.0, SequenceContext{&sp});
  EXPECT_EQ(got.o.to_vector(), want.o.to_vector());
  EXPECT_EQ(got.lse.to_vector(), want.lse.to_vector());
  // Strided views (a sequence slice of the global tensor) are read as their values.
  const ops::AttentionOutput view = ring_attention(ops::slice(q, 2, sp.rank() * n, (sp.rank() + 1) * n),
                                                   ops::slice(k, 2, sp.rank() * n, (sp.rank() + 1) * n),
                                                   ops::slice(v, 2, sp.rank() * n, (sp.rank() + 1) * n),
                                                   MaskSpec::causal(), 0.0, sp);
  const ops::AttentionOutput contiguous = ring_attention(qs, ks, vs, MaskSpec::causal(), 0.0, sp);
  EXPECT_EQ(view.o.to_vector(), contiguous.o.to_vector());
}

TEST(RingAttention, BadInputsNameTheOpAndShapes) {
  Group& sp = world();
  const Tensor q = Tensor::randn({1, 2, 5, 8}, 1), k = Tensor::randn({1, 2, 6, 8}, 2);
  try {
    ring_attention(q, k, k, MaskSpec{}, 0.0, sp);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ring_attention"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[1, 2, 6, 8]"), std::string::npos) << msg;
  }
  const Tensor gqa_bad = Tensor::randn({1, 3, 5, 8}, 3), kv2 = Tensor::randn({1, 2, 5, 8}, 4);
  EXPECT_THROW(ring_attention(gqa_bad, kv2, kv2, MaskSpec{}, 0.0, sp), ShapeError);
  const Tensor ints = Tensor::zeros({1, 2, 5, 8}, DType::I32);
  EXPECT_THROW(ring_attention(ints, ints, ints, MaskSpec{}, 0.0, sp), DTypeError);
  MaskSpec bad = MaskSpec::sliding(-1);
  EXPECT_THROW(ring_attention(q, q, q, bad, 0.0, sp), ValueError);
}

}  // namespace
}  // namespace strand::parallel
