// parallel::GradSync under mpiexec (1, 2 and 4 ranks): a small three-layer network of raw leaves
// with rank-dependent inputs; after backward + finish every gradient equals the sum over ranks of
// the local gradients (computed with a plain all_reduce per parameter) times the scale, buckets
// start during backward, accumulation over unarmed micro-batches is summed once, unused
// parameters keep no gradient, and the destructor removes its hooks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "framework/autograd/grad_mode.h"
#include "framework/core/error.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/matmul.h"
#include "framework/ops/reduce.h"
#include "parallel/comm/group.h"
#include "parallel/grad_sync.h"
#include "support/tolerance.h"

namespace strand::parallel {
namespace {

Tensor leaf(const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::randn(shape, seed, DType::F32, 0.5);
  t.set_requires_grad(true);
  return t;
}

// x [4, 8] -> tanh(x W1 + b1) -> tanh(. W2 + b2) -> . W3 -> loss = sum(y * y). `unused` is a
// parameter the forward never reads (a pruned head, a disabled branch): it must keep no gradient.
struct Net {
  Tensor unused = leaf({70}, 10);  // 280 bytes: a bucket of its own with kSmallBucket
  Tensor w1 = leaf({8, 16}, 11), b1 = leaf({16}, 12);
  Tensor w2 = leaf({16, 12}, 13), b2 = leaf({12}, 14);
  Tensor w3 = leaf({12, 4}, 15);

  // The model's order (GradSync cuts buckets from the end).
  std::vector<Tensor> params() const { return {unused, w1, b1, w2, b2, w3}; }

  Tensor loss(const Tensor& x) const {
    const Tensor h1 = ops::tanh(ops::add(ops::matmul(x, w1), b1));
    const Tensor h2 = ops::tanh(ops::add(ops::matmul(h1, w2), b2));
    const Tensor y = ops::matmul(h2, w3);
    return ops::sum(ops::mul(y, y));
  }
};

// A different input on every rank (and for every micro-batch), as data parallelism gives.
Tensor rank_input(int micro) {
  return Tensor::randn({4, 8}, 1000 + static_cast<uint64_t>(100 * world().rank() + micro), DType::F32);
}

// Bucket cut in reverse order at 256 bytes: [w3 192 B + b2 48 B], [w2 768 B], [b1 64 B],
// [w1 512 B], [unused 280 B]: five buckets, the first four fill during backward.
constexpr int64_t kSmallBucket = 256;
constexpr int64_t kBucketsWithGradients = 4;

struct Reference {
  std::vector<Tensor> sum;      // all_reduce(local grad) * scale, per parameter (undefined: no grad)
  std::vector<Tensor> abs_sum;  // all_reduce(|local grad|) * |scale|: the size of the terms
};

// The expected result from the local gradients as they are before finish().
Reference reference_of(const std::vector<Tensor>& params, double scale) {
  Reference ref;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) {
      ref.sum.emplace_back();
      ref.abs_sum.emplace_back();
      continue;
    }
    Tensor s = g.copy_as(DType::F32, g.device());
    world().all_reduce(s);
    Tensor a = g.copy_as(DType::F32, g.device());
    float* ad = a.data<float>();
    for (int64_t i = 0; i < a.numel(); ++i) ad[i] = std::abs(ad[i]);
    world().all_reduce(a);
    ref.sum.push_back(ops::mul_scalar(s, scale));
    ref.abs_sum.push_back(ops::mul_scalar(a, std::abs(scale)));
  }
  return ref;
}

// Each element is a sum of P float32 terms, rounded once per addition in an order MPI picks (the
// bucketed and the per-parameter all-reduce may differ), then scaled: both sides are within
// (P + 1) eps * sum|terms| of the exact value.
void expect_matches(const std::vector<Tensor>& params, const Reference& ref) {
  const double eps = strand::testing::kEpsF32;
  const double rel = 2.0 * (world().size() + 1) * eps;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor g = params[i].grad();
    ASSERT_EQ(g.defined(), ref.sum[i].defined()) << "parameter " << i;
    if (!g.defined()) continue;
    const std::vector<double> got = g.to_vector(), want = ref.sum[i].to_vector(), size = ref.abs_sum[i].to_vector();
    ASSERT_EQ(got.size(), want.size());
    for (size_t e = 0; e < got.size(); ++e)
      EXPECT_NEAR(got[e], want[e], rel * size[e]) << "parameter " << i << " element " << e;
  }
}

// Replicas must hold the same bits after the sum, or their weights drift apart.
void expect_same_bits_on_every_rank(const std::vector<Tensor>& params) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    std::vector<uint32_t> words(static_cast<size_t>(g.numel()));
    std::memcpy(words.data(), g.data<float>(), g.nbytes());
    for (uint32_t w : words) h = (h ^ w) * 0x100000001B3ull;
  }
  std::vector<int64_t> lo{static_cast<int64_t>(h)}, hi{static_cast<int64_t>(h)};
  world().all_reduce(std::span<int64_t>(lo), ReduceOp::Min);
  world().all_reduce(std::span<int64_t>(hi), ReduceOp::Max);
  EXPECT_EQ(lo[0], hi[0]) << "ranks hold different summed gradients";
}

TEST(GradSync, SumsOverRanksWithBucketsStartedDuringBackward) {
  Net net;
  const std::vector<Tensor> params = net.params();
  GradSync sync(params, world(), kSmallBucket);
  EXPECT_EQ(sync.bucket_count(), 5);

  sync.arm();
  net.loss(rank_input(0)).backward();
  const double scale = 1.0 / (4.0 * world().size());
  const Reference ref = reference_of(params, scale);
  sync.finish(scale);

  EXPECT_EQ(sync.buckets_started_in_backward(), kBucketsWithGradients);
  EXPECT_FALSE(net.unused.grad().defined());
  expect_matches(params, ref);
  expect_same_bits_on_every_rank(params);
}

// The value a float32 tensor has after rounding each element to bfloat16.
Tensor rounded_to_bf16(const Tensor& t) { return t.copy_as(DType::BF16, t.device()).copy_as(DType::F32, t.device()); }

TEST(GradSync, Bf16WireRoundsEachRanksGradientAndEveryPartialSum) {
  Net net;
  const std::vector<Tensor> params = net.params();
  GradSync sync(params, world(), kSmallBucket, DType::BF16);
  sync.arm();
  net.loss(rank_input(0)).backward();
  const double scale = 1.0 / (4.0 * world().size());
  const Reference ref = reference_of(params, scale);
  // Two ranks: one bfloat16 addition of the two rounded gradients, which is float32's sum of
  // them rounded once more.
  std::vector<Tensor> exact_two;
  for (const Tensor& p : params) {
    if (!p.grad().defined()) {
      exact_two.emplace_back();
      continue;
    }
    Tensor s = rounded_to_bf16(p.grad());
    world().all_reduce(s);
    exact_two.push_back(rounded_to_bf16(s));
  }
  sync.finish(scale);
  EXPECT_EQ(sync.buckets_started_in_backward(), kBucketsWithGradients);
  EXPECT_FALSE(net.unused.grad().defined());
  expect_same_bits_on_every_rank(params);

  const int P = world().size();
  int64_t differ_from_fp32 = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor g = params[i].grad();
    if (!g.defined()) continue;
    const std::vector<double> got = g.to_vector(), fp32 = ref.sum[i].to_vector(), size = ref.abs_sum[i].to_vector();
    std::vector<double> two;
    if (P == 2) two = exact_two[i].to_vector();
    for (size_t e = 0; e < got.size(); ++e) {
      if (P == 1) {
        EXPECT_EQ(got[e], fp32[e]) << "one rank sums nothing, so rounds nothing: parameter " << i;
        continue;
      }
      // P roundings of the terms and P - 1 of the partial sums, each at most 2^-9 relative.
      EXPECT_NEAR(got[e], fp32[e], (2.0 * P) * std::ldexp(1.0, -9) * size[e]) << "parameter " << i << " element " << e;
      if (P == 2) EXPECT_EQ(static_cast<float>(got[e]), static_cast<float>(two[e] * scale)) << "parameter " << i;
      if (static_cast<float>(got[e]) != static_cast<float>(fp32[e])) ++differ_from_fp32;
    }
  }
  if (P > 1) EXPECT_GT(differ_from_fp32, 0) << "the bfloat16 wire should round some sums";
}

TEST(GradSync, RefusesAWireDtypeOtherThanFloat32OrBfloat16) {
  Net net;
  EXPECT_THROW(GradSync(net.params(), world(), kSmallBucket, DType::F16), DTypeError);
}

TEST(GradSync, UnarmedMicroBatchesAccumulateAndTheArmedOneSumsTheTotal) {
  Net net;
  const std::vector<Tensor> params = net.params();
  GradSync sync(params, world(), kSmallBucket);
  const double scale = 0.125;
  for (int step = 0; step < 2; ++step) {  // twice: the second step reuses the hooks and buckets
    SCOPED_TRACE("step " + std::to_string(step));
    for (const Tensor& p : params) Tensor(p).zero_grad();
    net.loss(rank_input(3 * step)).backward();  // unarmed: only accumulates
    net.loss(rank_input(3 * step + 1)).backward();
    sync.arm();
    net.loss(rank_input(3 * step + 2)).backward();
    const Reference ref = reference_of(params, scale);
    sync.finish(scale);
    EXPECT_EQ(sync.buckets_started_in_backward(), kBucketsWithGradients);
    expect_matches(params, ref);
    expect_same_bits_on_every_rank(params);
  }
}

TEST(GradSync, OneBucketHoldingAnUnusedParameterStartsInFinish) {
  // One bucket with every parameter: `unused` never reports, so the bucket waits for finish(),
  // which sends zeros in its place and leaves it without a gradient.
  Net net;
  const std::vector<Tensor> params = net.params();
  GradSync sync(params, world());
  EXPECT_EQ(sync.bucket_count(), 1);
  sync.arm();
  net.loss(rank_input(0)).backward();
  const Reference ref = reference_of(params, 1.0);
  sync.finish(1.0);
  EXPECT_EQ(sync.buckets_started_in_backward(), 0);
  EXPECT_FALSE(net.unused.grad().defined());
  expect_matches(params, ref);
}

TEST(GradSync, FinishWithoutArmSumsEverythingAtTheEnd) {
  Net net;
  const std::vector<Tensor> params = net.params();
  GradSync sync(params, world(), kSmallBucket);
  net.loss(rank_input(0)).backward();
  const Reference ref = reference_of(params, 2.0);
  sync.finish(2.0);
  EXPECT_EQ(sync.buckets_started_in_backward(), 0);
  expect_matches(params, ref);
}

TEST(GradSync, NoGradientAnywhereIsANoOp) {
  Net net;
  GradSync sync(net.params(), world(), kSmallBucket);
  sync.arm();
  sync.finish(0.5);  // every bucket skipped alike on every rank
  for (const Tensor& p : net.params()) EXPECT_FALSE(p.grad().defined());
}

TEST(GradSync, DestructorRemovesItsHooks) {
  Net net;
  const std::vector<Tensor> params = net.params();
  {
    GradSync sync(params, world(), kSmallBucket);
    for (const Tensor& p : params) EXPECT_EQ(p.impl()->autograd.post_accumulate_hooks.size(), 1u);
    sync.arm();  // armed but never finished: destruction must still leave the leaves clean
  }
  for (const Tensor& p : params) EXPECT_TRUE(p.impl()->autograd.post_accumulate_hooks.empty());
  // A later backward runs no hook of the dead GradSync (it would start an all-reduce on freed
  // state), and the gradients are this rank's own.
  net.loss(rank_input(0)).backward();
  Net fresh;
  fresh.loss(rank_input(0)).backward();
  for (size_t i = 1; i < params.size(); ++i)
    EXPECT_EQ(params[i].grad().to_vector(), fresh.params()[i].grad().to_vector()) << "parameter " << i;
}

TEST(GradSync, SecondBackwardAfterItsBucketStartedIsAnError) {
  Net net;
  GradSync sync(net.params(), world(), kSmallBucket);
  sync.arm();
  net.loss(rank_input(0)).backward();
  // w3's bucket is in flight; adding into w3 again would change a gradient being summed.
  try {
    net.loss(rank_input(1)).backward();
    ADD_FAILURE() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("GradSync"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("float32[12, 4]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sync.arm(), ValueError);  // buckets still in flight
  sync.finish(1.0);                      // completes them on every rank alike
  sync.arm();
}

TEST(GradSync, RejectsBadParameters) {
  Net net;
  Tensor f64 = Tensor::randn({3}, 1, DType::F64);
  f64.set_requires_grad(true);
  const Tensor not_leaf = ops::tanh(net.w1);
  const Tensor no_grad = Tensor::zeros({3});
  EXPECT_THROW(GradSync({net.w1, f64}, world()), DTypeError);
  EXPECT_THROW(GradSync({not_leaf}, world()), ValueError);
  EXPECT_THROW(GradSync({no_grad}, world()), ValueError);
  EXPECT_THROW(GradSync({net.w1, net.b1, net.w1}, world()), ValueError);
  EXPECT_THROW(GradSync({net.w1}, world(), 0), ValueError);
  try {
    GradSync({net.w1, f64}, world());
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("GradSync: parameter 1 float64[3]"), std::string::npos) << e.what();
  }
  for (const Tensor& p : {net.w1, net.b1}) EXPECT_TRUE(p.impl()->autograd.post_accumulate_hooks.empty());
}

TEST(GradSync, RanksWithDifferentShapesAreAnErrorOnEveryRank) {
  if (world().size() == 1) GTEST_SKIP() << "needs two ranks";
  const Tensor p = leaf({world().rank() == 0 ? 4 : 5}, 1);
  try {
    GradSync sync({p}, world());
    ADD_FAILURE() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("different parameter shapes"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strand::parallel
