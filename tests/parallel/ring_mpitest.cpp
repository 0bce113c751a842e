// parallel::ring_attention under mpiexec (1, 2, 3 and 4 ranks): every rank builds the same global
// q, k, v, runs one-rank ops::attention and its backward, and checks its own shard of o, lse, dq,
// dk, dv from the ring against those rows, for the contiguous, zigzag and hybrid-style layouts;
// plus the ring's schedule (balanced zigzag steps, window early stop).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/autograd/grad_mode.h"
#include "framework/core/error.h"
#include "framework/ops/attention_contract.h"
#include "framework/ops/attention.h"
#include "framework/ops/view.h"
#include "parallel/attention.h"
#include "parallel/comm/backends.h"
#include "parallel/comm/group.h"
#include "parallel/layout.h"
#include "parallel/ring.h"
#include "tests/parallel/attention_check.h"

namespace strand::parallel {
namespace {

using testing::expect_close;

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

// Checks this rank's rows of the ring (over `ring`, with `layout`; the contiguous overload when
// `layout_overload` is false) against one-rank ops::attention on the gathered sequence.
void check_ring(const RingCase& c, Group& ring, const SequenceLayout& layout, bool layout_overload) {
  const int r = ring.rank();
  const testing::AttentionProblem problem(
      {.batch = c.batch, .q_heads = c.q_heads, .kv_heads = c.kv_heads, .seq = layout.seq_len(), .d = c.d,
       .dtype = c.dtype, .seed = c.seed},
      c.mask);
  const testing::RankRows rows(problem, layout, r);
  const testing::Bf16IsaScope isa(c.dtype, problem.shape.bf16_isa);
  const std::vector<double> k_before = rows.k.to_vector(), v_before = rows.v.to_vector();
  const ops::AttentionOutput got = layout_overload ? ring_attention(rows.q, rows.k, rows.v, c.mask, 0.0, ring, layout)
                                                   : ring_attention(rows.q, rows.k, rows.v, c.mask, 0.0, ring);
  const int64_t merges = static_cast<int64_t>(ring.size()) * static_cast<int64_t>(layout.segments(r).size());
  rows.backward_and_check(got, merges);
  // The ring receives into its own buffers, never into the caller's k and v.
  EXPECT_EQ(rows.k.to_vector(), k_before);
  EXPECT_EQ(rows.v.to_vector(), v_before);
}

// The contiguous overload over the world, n rows per rank.
void run_case(const RingCase& c) {
  SCOPED_TRACE(c.name);
  Group& sp = world();
  check_ring(c, sp, SequenceLayout::make(LayoutKind::Contiguous, sp.size() * c.n, sp.size()), false);
}

// The layout overload over the world: `kind` over P ranks, n rows per rank.
void run_layout_case(const RingCase& c, LayoutKind kind) {
  SCOPED_TRACE(c.name);
  Group& sp = world();
  const SequenceLayout layout = SequenceLayout::make(kind, sp.size() * c.n, sp.size());
  SCOPED_TRACE(layout.describe());
  check_ring(c, sp, layout, true);
}

TEST(RingAttention, CausalMha) {
  RingCase c{.name = "causal MHA D=16", .mask = MaskSpec::causal_mask(), .seed = 11};
  run_case(c);
}

TEST(RingAttention, BidirectionalMha) {
  run_case(RingCase{.name = "non-causal MHA D=16", .mask = MaskSpec{}, .seed = 21});
}

TEST(RingAttention, CausalGqaD64) {
  run_case(RingCase{.name = "causal GQA 4/2 D=64", .q_heads = 4, .kv_heads = 2, .d = 64,
                    .mask = MaskSpec::causal_mask(), .seed = 31});
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
  run_case(RingCase{.name = "causal MHA float64", .mask = MaskSpec::causal_mask(), .dtype = DType::F64, .seed = 61});
}

TEST(RingAttention, Bfloat16CausalGqa) {
  run_case(RingCase{.name = "causal GQA bfloat16", .q_heads = 4, .kv_heads = 2, .mask = MaskSpec::causal_mask(),
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
  const ops::AttentionOutput want = sp.size() > 1 ? ring_attention(qs, ks, vs, MaskSpec::causal_mask(), 0.0, sp)
                                                  : ops::attention(qs, ks, vs, MaskSpec::causal_mask());
  SequenceShard shard;
  shard.ring = &sp;
  const ops::AttentionOutput got = parallel::attention(qs, ks, vs, MaskSpec::causal_mask(), 0.0, shard);
  EXPECT_EQ(got.o.to_vector(), want.o.to_vector());
  EXPECT_EQ(got.lse.to_vector(), want.lse.to_vector());
  // Strided views (a sequence slice of the global tensor) are read as their values.
  const ops::AttentionOutput view = ring_attention(ops::slice(q, 2, sp.rank() * n, (sp.rank() + 1) * n),
                                                   ops::slice(k, 2, sp.rank() * n, (sp.rank() + 1) * n),
                                                   ops::slice(v, 2, sp.rank() * n, (sp.rank() + 1) * n),
                                                   MaskSpec::causal_mask(), 0.0, sp);
  const ops::AttentionOutput contiguous = ring_attention(qs, ks, vs, MaskSpec::causal_mask(), 0.0, sp);
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

// Zigzag: n = 14 rows per rank are two chunks of 7 (odd: no tile multiple).

TEST(RingAttentionZigzag, CausalMha) {
  run_layout_case(RingCase{.name = "zigzag causal MHA D=16", .n = 14, .mask = MaskSpec::causal_mask(), .seed = 111},
                  LayoutKind::Zigzag);
}

TEST(RingAttentionZigzag, BidirectionalMha) {
  run_layout_case(RingCase{.name = "zigzag non-causal MHA D=16", .n = 14, .mask = MaskSpec{}, .seed = 121},
                  LayoutKind::Zigzag);
}

TEST(RingAttentionZigzag, CausalGqaD64) {
  run_layout_case(RingCase{.name = "zigzag causal GQA 4/2 D=64", .q_heads = 4, .kv_heads = 2, .n = 14, .d = 64,
                           .mask = MaskSpec::causal_mask(), .seed = 131},
                  LayoutKind::Zigzag);
}

TEST(RingAttentionZigzag, SlidingWindowGqa) {
  // Left window 9 > a chunk of 7: queries reach into the chunk before their own's neighbour.
  run_layout_case(RingCase{.name = "zigzag sliding (9, 2) GQA", .q_heads = 4, .kv_heads = 2, .n = 14,
                           .mask = MaskSpec::sliding(9, 2), .seed = 141},
                  LayoutKind::Zigzag);
}

TEST(RingAttentionZigzag, Float64CausalD64) {
  run_layout_case(RingCase{.name = "zigzag causal float64 D=64", .n = 14, .d = 64, .mask = MaskSpec::causal_mask(),
                           .dtype = DType::F64, .seed = 151},
                  LayoutKind::Zigzag);
}

TEST(RingAttentionZigzag, Bfloat16CausalGqa) {
  run_layout_case(RingCase{.name = "zigzag causal GQA bfloat16", .q_heads = 4, .kv_heads = 2, .n = 14,
                           .mask = MaskSpec::causal_mask(), .dtype = DType::BF16, .seed = 161},
                  LayoutKind::Zigzag);
}

// The machine's bf16 tiles inside the ring (STRAND_ATTENTION_ISA=auto: the AVX512-BF16 tiles
// where the CPU has them, which bf16 q, k, v now reach as they are) against one rank's tiles.
// Both round P and dS to bf16, but relative to different running maxima (a ring segment's key
// blocks against one rank's), so they differ by bf16 roundings of the terms rather than of the
// result, which element-wise bounds cannot follow where terms cancel. The check is norm-wise:
// each tensor within 2^-6 of its norm (a key block missed, counted twice or merged with the
// wrong lse moves a tensor by far more; measured errors are below 2^-8).
TEST(RingAttentionZigzag, Bfloat16TilesMatchOneRankTilesNormwise) {
  Group& sp = world();
  const int r = sp.rank();
  const int64_t n = 40;
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Zigzag, sp.size() * n, sp.size());
  for (const MaskSpec& mask : {MaskSpec::causal_mask(), MaskSpec::sliding(24, 0)}) {
    const testing::AttentionProblem problem({.batch = 2, .q_heads = 4, .kv_heads = 2, .seq = layout.seq_len(), .d = 64,
                                             .dtype = DType::BF16, .seed = 181, .bf16_isa = "auto"},
                                            mask);
    const testing::RankRows rows(problem, layout, r);
    const testing::Bf16IsaScope isa(DType::BF16, "auto");
    const ops::AttentionOutput got = ring_attention(rows.q, rows.k, rows.v, mask, 0.0, sp, layout);
    autograd::backward({got.o, got.lse}, {rows.mine(problem.d_o), rows.mine(problem.d_lse)});
    const std::pair<Tensor, Tensor> pairs[] = {{got.o, problem.ref.o},           {got.lse, problem.ref.lse},
                                               {rows.q.grad(), problem.q.grad()}, {rows.k.grad(), problem.k.grad()},
                                               {rows.v.grad(), problem.v.grad()}};
    const char* names[] = {"o", "lse", "dq", "dk", "dv"};
    for (size_t i = 0; i < 5; ++i) {
      const std::vector<double> g = pairs[i].first.to_vector(), ref = rows.mine(pairs[i].second).to_vector();
      ASSERT_EQ(g.size(), ref.size()) << names[i];
      double err = 0.0, norm = 0.0;
      for (size_t e = 0; e < g.size(); ++e) {
        err += (g[e] - ref[e]) * (g[e] - ref[e]);
        norm += ref[e] * ref[e];
      }
      EXPECT_LE(std::sqrt(err), std::ldexp(1.0, -6) * std::sqrt(norm))
          << names[i] << (mask.kind == MaskKind::None ? " causal" : " sliding") << ": relative error " << std::sqrt(err / norm);
    }
  }
}

TEST(RingAttentionZigzag, KeyPaddingAndPackedDocuments) {
  // Packed rows (documents end inside chunks) and key padding: pairs are skipped per segment.
  const int p = world().size();
  const int64_t total = 14 * p;
  RingCase c{.name = "zigzag causal, packed + padding", .n = 14, .mask = MaskSpec::causal_mask(), .seed = 171};
  c.mask.cu_seqlens = {{0, 5, total / 2 + 3, total}, {0, total}};
  c.mask.key_lengths = {total, total - 9};
  run_layout_case(c, LayoutKind::Zigzag);
}

TEST(RingAttentionZigzag, SegmentsLongerThanAKernelSlice) {
  // Chunks of 600 rows: the ring runs each pair in slices of at most 512 rows (query rows in the
  // forward, key rows in the backward) with progress polls between them.
  run_layout_case(RingCase{.name = "zigzag causal GQA, 600-row chunks", .batch = 1, .q_heads = 2, .kv_heads = 1,
                           .n = 1200, .mask = MaskSpec::causal_mask(), .seed = 175},
                  LayoutKind::Zigzag);
}

TEST(RingAttentionSchedule, WindowOverLongSegmentsSkipsUnreachedSlices) {
  // Rows of 1100 per rank and a window of 5 (and one looking 3 ahead): the previous rank's
  // first two 512-key slices reach no query of this rank, so their dK, dV rows are zero-filled
  // rather than computed; every other slice reads only the few query rows that reach it.
  run_layout_case(RingCase{.name = "sliding (5, 3), 1100 rows per rank", .batch = 1, .q_heads = 2, .kv_heads = 1,
                           .n = 1100, .mask = MaskSpec::sliding(5, 3), .seed = 231},
                  LayoutKind::Contiguous);
}

TEST(RingAttentionLayout, OutOfOrderSegmentsOverTheWorldRing) {
  // Zigzag over 2P ranks gathered in pairs: 4 segments per rank (3 on the last, where two
  // meet), not in position order.
  Group& sp = world();
  const int64_t total = 28 * sp.size();  // 4P chunks of 7
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Zigzag, total, 2 * sp.size()).gathered(2);
  ASSERT_EQ(layout.segments(sp.rank()).size(), sp.rank() + 1 == sp.size() ? 3u : 4u);
  for (const MaskSpec& mask : {MaskSpec::causal_mask(), MaskSpec{}, MaskSpec::sliding(10, 3)}) {
    RingCase c{.name = "out-of-order segments", .q_heads = 4, .kv_heads = 2, .mask = mask, .seed = 181};
    SCOPED_TRACE(mask_pattern_name(mask));
    check_ring(c, sp, layout, true);
  }
}

TEST(RingAttentionLayout, SingleRankRingOverManySegments) {
  // A ring of one with the rows in a permuted order (how Ulysses and hybrid use the ring):
  // plain local attention over the rows in segment order, no messages.
  std::unique_ptr<Group> local = make_local_group();
  const std::vector<SequenceLayout> layouts = {SequenceLayout::make(LayoutKind::Zigzag, 56, 4).gathered(4),
                                               SequenceLayout::hybrid(LayoutKind::Zigzag, 56, 2, 2).gathered(4),
                                               SequenceLayout::make(LayoutKind::Zigzag, 14, 1)};
  for (const SequenceLayout& layout : layouts) {
    SCOPED_TRACE(layout.describe());
    ASSERT_EQ(layout.parts(), 1);
    for (const MaskSpec& mask : {MaskSpec::causal_mask(), MaskSpec{}, MaskSpec::sliding(5, 1)}) {
      SCOPED_TRACE(mask_pattern_name(mask));
      check_ring(RingCase{.name = "one-rank ring", .q_heads = 4, .kv_heads = 2, .mask = mask, .seed = 191}, *local,
                 layout, true);
      check_ring(RingCase{.name = "one-rank ring float64", .d = 64, .mask = mask, .dtype = DType::F64, .seed = 193},
                 *local, layout, true);
    }
  }
}

TEST(RingAttentionSchedule, ZigzagCausalStepsAreBalanced) {
  // Note [Ring schedule]: with zigzag and a causal mask every rank computes the same number of
  // attending pairs at every step: 2c^2 + c at step 0 (two diagonal chunks and one full pair),
  // 2c^2 after it (two full chunk pairs), per batch row, c = chunk length.
  for (int p : {1, 2, 3, 4, 8}) {
    const int64_t c = 7, batch = 2;
    const SequenceLayout layout = SequenceLayout::make(LayoutKind::Zigzag, 2 * p * c, p);
    EXPECT_EQ(ring_steps(MaskSpec::causal_mask(), layout, batch), p);
    const std::vector<std::vector<int64_t>> pairs = ring_step_pairs(MaskSpec::causal_mask(), layout, batch);
    ASSERT_EQ(static_cast<int>(pairs.size()), p);
    int64_t sum = 0;
    for (int r = 0; r < p; ++r) {
      ASSERT_EQ(static_cast<int>(pairs[static_cast<size_t>(r)].size()), p);
      for (int s = 0; s < p; ++s) {
        const int64_t want = p == 1 ? batch * (2 * c) * (2 * c + 1) / 2  // one merged segment of 2c rows
                                    : batch * (s == 0 ? 2 * c * c + c : 2 * c * c);
        const int64_t got = pairs[static_cast<size_t>(r)][static_cast<size_t>(s)];
        EXPECT_EQ(got, want) << "P " << p << " rank " << r << " step " << s;
        sum += got;
      }
    }
    EXPECT_EQ(sum, ops::attended_pairs(MaskSpec::causal_mask(), batch, 2 * p * c, 2 * p * c)) << "P " << p;
  }
  // The contiguous layout is not balanced: rank 0 computes nothing after step 0.
  const SequenceLayout contiguous = SequenceLayout::make(LayoutKind::Contiguous, 56, 4);
  const auto pairs = ring_step_pairs(MaskSpec::causal_mask(), contiguous, 1);
  EXPECT_EQ(pairs[0][1], 0);
  EXPECT_EQ(pairs[3][1], 14 * 14);
}

TEST(RingAttentionSchedule, WindowStopsTheRingEarly) {
  const int p = world().size();
  const int64_t n = 13;
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Contiguous, p * n, p);
  // A causal window of 5 < n reaches only the previous rank: 2 steps; 20 reaches two back: 3.
  EXPECT_EQ(ring_steps(MaskSpec::sliding(5), layout, 2), std::min(p, 2));
  EXPECT_EQ(ring_steps(MaskSpec::sliding(20), layout, 2), std::min(p, 3));
  // A window that looks ahead needs the next rank's keys, which arrive at the last step.
  EXPECT_EQ(ring_steps(MaskSpec::sliding(5, 3), layout, 2), p);
  EXPECT_EQ(ring_steps(MaskSpec::causal_mask(), layout, 2), p);
  EXPECT_EQ(ring_steps(MaskSpec::sliding(5), SequenceLayout::make(LayoutKind::Contiguous, 4 * n, 4), 2), 2);
  EXPECT_EQ(ring_steps(MaskSpec::sliding(20), SequenceLayout::make(LayoutKind::Contiguous, 8 * n, 8), 2), 3);
  // The stopped ring is still exact (the accumulators then travel home steps-1 hops at once).
  run_layout_case(RingCase{.name = "sliding (5, 0) GQA, early stop", .q_heads = 4, .kv_heads = 2, .n = n,
                           .mask = MaskSpec::sliding(5), .seed = 201},
                  LayoutKind::Contiguous);
  run_layout_case(RingCase{.name = "sliding (20, 0), early stop", .n = n, .mask = MaskSpec::sliding(20),
                           .dtype = DType::F64, .seed = 211},
                  LayoutKind::Contiguous);
}

TEST(RingAttentionLayout, ComputeOnlyRunsTheSameBlocksWithoutMessages) {
  // Benchmarks only: the result is not attention, but forward and backward run on every rank
  // without a message, and with P = 1 (where every block is the rank's own) it is attention.
  Group& sp = world();
  const int64_t n = 14;
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Zigzag, sp.size() * n, sp.size());
  Tensor q = Tensor::randn({1, 2, n, 8}, 221), k = Tensor::randn({1, 2, n, 8}, 222);
  Tensor v = Tensor::randn({1, 2, n, 8}, 223);
  for (Tensor* t : {&q, &k, &v}) t->set_requires_grad(true);
  const ops::AttentionOutput out =
      ring_attention(q, k, v, MaskSpec::causal_mask(), 0.0, sp, layout, RingOptions{.compute_only = true});
  out.o.backward(Tensor::ones(out.o.shape()));
  for (const Tensor& t : {out.o, out.lse, q.grad(), k.grad(), v.grad()})
    for (double x : t.to_vector()) ASSERT_TRUE(std::isfinite(x));
  if (sp.size() == 1) {
    const ops::AttentionOutput want = ops::attention(q.detach(), k.detach(), v.detach(), MaskSpec::causal_mask());
    expect_close(out.o, want.o, n, "compute-only o at P = 1");
  }
}

TEST(RingAttentionLayout, LayoutMustMatchTheRing) {
  Group& sp = world();
  const SequenceLayout wrong = SequenceLayout::make(LayoutKind::Zigzag, 16 * (sp.size() + 1), sp.size() + 1);
  const Tensor q = Tensor::randn({1, 2, 16, 8}, 1);
  try {
    ring_attention(q, q, q, MaskSpec::causal_mask(), 0.0, sp, wrong);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("ring_attention"), std::string::npos) << e.what();
  }
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Zigzag, 16 * sp.size(), sp.size());
  const Tensor short_q = Tensor::randn({1, 2, 15, 8}, 2);
  EXPECT_THROW(ring_attention(short_q, short_q, short_q, MaskSpec::causal_mask(), 0.0, sp, layout), ShapeError);
  MaskSpec other_len = MaskSpec::causal_mask();
  other_len.seq_len = 16 * sp.size() + 2;
  EXPECT_THROW(ring_attention(q, q, q, other_len, 0.0, sp, layout), ValueError);
}

}  // namespace
}  // namespace strand::parallel
