// Attention entropy and mean distance under sequence parallelism: each rank's rows, from the
// lse of ring (contiguous and zigzag layouts) or Ulysses attention at 2 ranks, or hybrid 2 ring x
// 2 Ulysses (both layouts) at 4, and the gathered keys, equal the one-rank statistics of the
// whole sequence at those rows (float64, causal, sliding window, MHA and GQA); and the attention
// transfer loss summed over ranks, with each rank's gradient to its q and k rows, equals the
// one-rank loss and gradient rows, also with unequal head counts (head-averaged) and over a
// sample of the query rows drawn alike on every rank.
#include <gtest/gtest.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/core/error.h"
#include "framework/ops/attention_transfer.h"
#include "framework/ops/attention.h"
#include "parallel/attention.h"
#include "parallel/attention_stats.h"
#include "parallel/comm/group.h"
#include "parallel/grid.h"
#include "parallel/layout.h"

namespace strand::parallel {
namespace {

struct Case {
  std::string name;
  MaskSpec mask;
  int64_t q_heads, kv_heads;
};

// How the sequence is split over the world's ranks: ulysses_degree 1 is a ring, the world's
// size is Ulysses, in between hybrid (ring x Ulysses, sp rank = ring rank * u + Ulysses rank).
struct SplitMode {
  std::string name;
  LayoutKind kind;
  int ulysses_degree;
};

// Ring (contiguous, zigzag) and Ulysses at 2 ranks; hybrid 2 x 2 (both layouts) at 4.
std::vector<SplitMode> split_modes() {
  const int P = world().size();
  if (P == 4)
    return {{"hybrid 2 x 2 contiguous", LayoutKind::Contiguous, 2}, {"hybrid 2 x 2 zigzag", LayoutKind::Zigzag, 2}};
  return {{"ring contiguous", LayoutKind::Contiguous, 1},
          {"ring zigzag", LayoutKind::Zigzag, 1},
          {"ulysses", LayoutKind::Contiguous, P}};
}

// A mode made real over a sequence of N positions: the groups, the layout and the shard that
// parallel::attention takes. A ring and a hybrid zigzag name their layout; Ulysses and a hybrid
// contiguous leave it unset (contiguous over the sp ranks).
struct Sharded {
  std::unique_ptr<ProcessGrid> grid;  // hybrid's ring and Ulysses groups
  SequenceLayout layout;
  SequenceShard shard;
  int rank = 0;  // this rank's sp rank
  Sharded(const SplitMode& m, int64_t N) {
    Group& sp = world();
    const int P = sp.size(), u = m.ulysses_degree;
    rank = sp.rank();
    layout = SequenceLayout::hybrid(m.kind, N, P / u, u);
    if (u == 1) {
      shard.ring = &sp;
    } else if (u == P) {
      shard.ulysses = &sp;
    } else {
      grid = std::make_unique<ProcessGrid>(sp, 1, P, u);
      shard.ring = &grid->ring_group();
      shard.ulysses = &grid->ulysses_group();
    }
    if (u == 1 || m.kind == LayoutKind::Zigzag) shard.layout = std::make_shared<const SequenceLayout>(layout);
    shard.positions = layout.positions(rank);
    EXPECT_EQ(shard.rank(), rank);
  }
};

// The [B, H, N] statistics of one rank's rows under `layout`.
std::vector<double> rows_of(const std::vector<double>& all, int64_t b, int64_t h, int64_t n_total,
                            const SequenceLayout& layout, int rank) {
  const Tensor t = Tensor::from_vector(all, {b, h, n_total}, DType::F64);
  return layout.shard(t, rank, 2).to_vector();
}

void check(const Case& c, const SplitMode& m) {
  Group& sp = world();
  const int P = sp.size();
  const int64_t B = 2, N = 2 * P * 7, D = 8;
  SCOPED_TRACE(c.name + " " + m.name);
  const Tensor q = Tensor::randn({B, c.q_heads, N, D}, 1, DType::F64);
  const Tensor k = Tensor::randn({B, c.kv_heads, N, D}, 2, DType::F64);
  const Tensor v = Tensor::randn({B, c.kv_heads, N, D}, 3, DType::F64);
  const ops::AttentionOutput ref = ops::attention(q, k, v, c.mask);
  const ops::AttentionRowStats want = ops::attention_row_stats(q, k, ref.lse, c.mask);

  const Sharded split(m, N);
  const SequenceLayout& layout = split.layout;
  const int rank = split.rank;
  const Tensor qs = layout.shard(q, rank, 2), ks = layout.shard(k, rank, 2), vs = layout.shard(v, rank, 2);
  const ops::AttentionOutput out = parallel::attention(qs, ks, vs, c.mask, 0.0, split.shard);
  const ops::AttentionRowStats got = parallel::attention_row_stats(qs, ks, out.lse, c.mask, 0.0, split.shard);
  const std::vector<double> want_h = rows_of(want.entropy, B, c.q_heads, N, layout, rank);
  const std::vector<double> want_d = rows_of(want.distance, B, c.q_heads, N, layout, rank);
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
  for (const Case& c : cases)
    for (const SplitMode& m : split_modes()) check(c, m);
}

// The transfer loss of a student (heads c.q_heads / c.kv_heads, D 8) against a teacher with
// other widths (D 6, one key head; teacher_heads query heads, the student's when 0): loss summed
// over ranks, dq and dk rows against one rank, over all rows or `sample`'s.
void check_transfer(const Case& c, const SplitMode& m, int64_t teacher_heads = 0, const ops::RowSample& sample = {}) {
  Group& sp = world();
  const int P = sp.size();
  const int64_t B = 2, N = 2 * P * 7, Ht = teacher_heads > 0 ? teacher_heads : c.q_heads;
  SCOPED_TRACE("transfer " + c.name + ", teacher heads " + std::to_string(Ht) + ", sampled rows " +
               std::to_string(sample.rows) + " " + m.name);
  Tensor q = Tensor::randn({B, c.q_heads, N, 8}, 11, DType::F64), k = Tensor::randn({B, c.kv_heads, N, 8}, 12, DType::F64);
  const Tensor qt = Tensor::randn({B, Ht, N, 6}, 13, DType::F64), kt = Tensor::randn({B, 1, N, 6}, 14, DType::F64);
  q.set_requires_grad(true);
  k.set_requires_grad(true);
  const Tensor want =
      ops::attention_transfer_loss(q, k, qt, kt, c.mask, ops::Reduction::Sum, 0.0, 0.0, 64, sample);
  const std::vector<Tensor> want_g = autograd::grad({want}, {Tensor::full({}, 1.0, DType::F64)}, {q, k});

  const Sharded split(m, N);
  const SequenceLayout& layout = split.layout;
  const SequenceShard& shard = split.shard;
  const int rank = split.rank;
  Tensor qs = layout.shard(q.detach(), rank, 2), ks = layout.shard(k.detach(), rank, 2);
  qs.set_requires_grad(true);
  ks.set_requires_grad(true);
  const Tensor got = parallel::attention_transfer_loss(qs, ks, layout.shard(qt, rank, 2), layout.shard(kt, rank, 2),
                                                       c.mask, shard, 0.0, 0.0,
                                                       sample);
  std::vector<double> total{got.item()};
  sp.all_reduce(std::span<double>(total));
  EXPECT_NEAR(total[0], want.item(), 1e-10 * want.item());
  const std::vector<Tensor> g = autograd::grad({got}, {Tensor::full({}, 1.0, DType::F64)}, {qs, ks});
  const std::vector<double> dq = g[0].to_vector(), dk = g[1].to_vector();
  const std::vector<double> want_dq = layout.shard(want_g[0], rank, 2).to_vector();
  const std::vector<double> want_dk = layout.shard(want_g[1], rank, 2).to_vector();
  ASSERT_EQ(dq.size(), want_dq.size());
  ASSERT_EQ(dk.size(), want_dk.size());
  for (size_t i = 0; i < dq.size(); ++i) ASSERT_NEAR(dq[i], want_dq[i], 1e-12) << "dq " << i;
  for (size_t i = 0; i < dk.size(); ++i) ASSERT_NEAR(dk[i], want_dk[i], 1e-12) << "dk " << i;
}

TEST(AttentionTransferSp, TheLossOverRanksAndEachRanksGradientRowsEqualOneRank) {
  const std::vector<Case> cases = {{"causal MHA", MaskSpec::causal_mask(), 2, 2},
                                   {"causal GQA 4/2", MaskSpec::causal_mask(), 4, 2},
                                   {"sliding w=5 GQA 4/2", MaskSpec::sliding(5), 4, 2}};
  for (const Case& c : cases)
    for (const SplitMode& m : split_modes()) check_transfer(c, m);
}

TEST(AttentionTransferSp, UnequalHeadCountsAverageTheHeadsAsOneRankDoes) {
  // The student's 2 or 3 query heads against the teacher's 4 or 2: the head-averaged term.
  const std::vector<std::pair<Case, int64_t>> cases = {{{"causal 2 vs 4", MaskSpec::causal_mask(), 2, 2}, 4},
                                                       {{"causal GQA 4/2 vs 2", MaskSpec::causal_mask(), 4, 2}, 2},
                                                       {{"sliding w=5 3 vs 2", MaskSpec::sliding(5), 3, 3}, 2}};
  for (const auto& [c, ht] : cases)
    for (const SplitMode& m : split_modes()) check_transfer(c, m, ht);
}

TEST(AttentionTransferSp, SampledRowsAreDrawnAlikeOnEveryRankAndEqualOneRank) {
  // 9 of the N = 28 (2 ranks) or 56 (4 ranks) rows per batch row, head by head and
  // head-averaged; and every row.
  const Case c{"causal GQA 4/2", MaskSpec::causal_mask(), 4, 2};
  const int64_t N = 2 * world().size() * 7;
  for (const ops::RowSample sample : {ops::RowSample{9, 5}, ops::RowSample{N, 5}})
    for (int64_t ht : {int64_t{0}, int64_t{2}})
      for (const SplitMode& m : split_modes()) check_transfer(c, m, ht, sample);
}

TEST(AttentionTransferSp, MoreSampledRowsThanTheSequenceAreRefused) {
  Group& sp = world();
  SequenceShard shard;
  shard.ring = &sp;
  if (shard.local()) GTEST_SKIP() << "one rank: nothing is split";
  const int64_t n = 7, N = n * sp.size();
  const Tensor q = Tensor::randn({1, 2, n, 8}, 1, DType::F64);
  EXPECT_THROW(parallel::attention_transfer_loss(q, q, q, q, MaskSpec::causal_mask(), shard, 0.0, 0.0,
                                                 ops::RowSample{N + 1, 1}),
               ValueError);
}

}  // namespace
}  // namespace strand::parallel
