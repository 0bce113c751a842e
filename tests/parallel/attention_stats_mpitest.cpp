// Attention entropy and mean distance under sequence parallelism: each rank's rows, from the
// lse of ring (contiguous and zigzag layouts) or Ulysses attention and the gathered keys, equal
// the one-rank statistics of the whole sequence at those rows (float64, causal, sliding window,
// MHA and GQA).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "parallel/attention.h"
#include "parallel/attention_stats.h"
#include "parallel/comm/group.h"
#include "parallel/layout.h"

namespace strand::parallel {
namespace {

struct Case {
  std::string name;
  MaskSpec mask;
  int64_t q_heads, kv_heads;
};

// The [B, H, N] statistics of one rank's rows under `layout`.
std::vector<double> rows_of(const std::vector<double>& all, int64_t b, int64_t h, int64_t n_total,
                            const SequenceLayout& layout, int rank) {
  const Tensor t = Tensor::from_vector(all, {b, h, n_total}, DType::F64);
  return layout.shard(t, rank, 2).to_vector();
}

void check(const Case& c, bool ulysses, LayoutKind kind) {
  Group& sp = world();
  const int P = sp.size();
  const int64_t B = 2, N = 2 * P * 7, D = 8;
  SCOPED_TRACE(c.name + (ulysses ? " ulysses" : kind == LayoutKind::Zigzag ? " ring zigzag" : " ring contiguous"));
  const Tensor q = Tensor::randn({B, c.q_heads, N, D}, 1, DType::F64);
  const Tensor k = Tensor::randn({B, c.kv_heads, N, D}, 2, DType::F64);
  const Tensor v = Tensor::randn({B, c.kv_heads, N, D}, 3, DType::F64);
  const ops::AttentionOutput ref = ops::attention(q, k, v, c.mask);
  const ops::AttentionRowStats want = ops::attention_row_stats(q, k, ref.lse, c.mask);

  const SequenceLayout layout = SequenceLayout::make(ulysses ? LayoutKind::Contiguous : kind, N, P);
  SequenceShard shard;
  if (ulysses) {
    shard.ulysses = &sp;
  } else {
    shard.ring = &sp;
    shard.layout = std::make_shared<const SequenceLayout>(layout);
  }
  shard.positions = layout.positions(sp.rank());
  const Tensor qs = layout.shard(q, sp.rank(), 2), ks = layout.shard(k, sp.rank(), 2), vs = layout.shard(v, sp.rank(), 2);
  const ops::AttentionOutput out = parallel::attention(qs, ks, vs, c.mask, 0.0, shard);
  const ops::AttentionRowStats got = parallel::attention_row_stats(qs, ks, out.lse, c.mask, 0.0, shard);
  const std::vector<double> want_h = rows_of(want.entropy, B, c.q_heads, N, layout, sp.rank());
  const std::vector<double> want_d = rows_of(want.distance, B, c.q_heads, N, layout, sp.rank());
  ASSERT_EQ(got.entropy.size(), want_h.size());
  for (size_t i = 0; i < want_h.size(); ++i) {
    EXPECT_NEAR(got.entropy[i], want_h[i], 1e-10) << "row " << i;
    EXPECT_NEAR(got.distance[i], want_d[i], 1e-9) << "row " << i;
  }
}

TEST(AttentionStatsSp, EveryRanksRowsEqualTheOneRankStatistics) {
  const std::vector<Case> cases = {{"causal MHA", MaskSpec::causal_mask(), 2, 2},
                                   {"causal GQA 4/2", MaskSpec::causal_mask(), 4, 2},
                                   {"sliding w=5 GQA 4/2", MaskSpec::sliding(5), 4, 2}};
  for (const Case& c : cases) {
    check(c, false, LayoutKind::Contiguous);
    check(c, false, LayoutKind::Zigzag);
    check(c, true, LayoutKind::Contiguous);
  }
}

TEST(AttentionStatsSp, AHybridShardIsRefused) {
  Group& sp = world();
  SequenceShard shard;
  shard.ring = &sp;
  shard.ulysses = &sp;
  if (shard.local()) GTEST_SKIP() << "one rank: nothing is split";
  const Tensor q = Tensor::randn({1, 2, 4, 8}, 1, DType::F64);
  EXPECT_THROW(parallel::attention_row_stats(q, q, Tensor::zeros({1, 2, 4}, DType::F64), MaskSpec{}, 0.0, shard),
               ValueError);
}

}  // namespace
}  // namespace strand::parallel
