// Hybrid sequence parallelism (Ulysses inside groups, ring across them) under mpiexec: at 4 ranks
// a 2 x 2 grid, at 2 ranks 1 x 2 and 2 x 1; o, lse, dq, dk, dv of this rank's shard against
// one-rank ops::attention, directly and through parallel::attention for every mode.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "parallel/attention.h"
#include "parallel/comm/group.h"
#include "parallel/grid.h"
#include "parallel/hybrid.h"
#include "parallel/layout.h"
#include "tests/parallel/attention_check.h"

namespace strand::parallel {
namespace {

struct HybridCase {
  std::string name;
  int64_t batch = 2, q_heads = 4, kv_heads = 4, n = 13, d = 16;  // n: rows per sp rank
  MaskSpec mask;
  DType dtype = DType::F32;
  LayoutKind layout = LayoutKind::Contiguous;
  uint64_t seed = 1;
};

// Runs c on `grid`'s sequence group: hybrid_attention itself, or parallel::attention with the
// grid's groups (which picks ring, Ulysses or hybrid by their sizes).
void run_case(const HybridCase& c, const ProcessGrid& grid, bool through_dispatch) {
  const int ring_degree = grid.ring_degree(), u = grid.ulysses_degree(), sp = grid.sp(), s = grid.sp_rank();
  SCOPED_TRACE(c.name + " on " + std::to_string(ring_degree) + " ring x " + std::to_string(u) + " ulysses, dp " +
               std::to_string(grid.dp()) + (through_dispatch ? ", through parallel::attention" : ""));
  ASSERT_EQ(s, grid.ring_group().rank() * u + grid.ulysses_group().rank());
  auto layout = std::make_shared<const SequenceLayout>(SequenceLayout::hybrid(c.layout, sp * c.n, ring_degree, u));
  const testing::AttentionProblem problem(
      {.batch = c.batch, .q_heads = c.q_heads, .kv_heads = c.kv_heads, .seq = sp * c.n, .d = c.d, .dtype = c.dtype,
       .seed = c.seed},
      c.mask);
  const testing::RankRows rows(problem, *layout, s);
  const testing::Bf16IsaScope isa(c.dtype, problem.shape.bf16_isa);
  const SequenceShard shard{.ring = &grid.ring_group(),
                            .ulysses = &grid.ulysses_group(),
                            .layout = layout,
                            .positions = layout->positions(s),
                            .seq_len = layout->seq_len()};
  rows.backward_and_check(
      through_dispatch ? parallel::attention(rows.q, rows.k, rows.v, c.mask, 0.0, shard)
                       : hybrid_attention(rows.q, rows.k, rows.v, c.mask, 0.0, grid.ulysses_group(), grid.ring_group(),
                                          *layout));
}

// The hybrid splits of the world: 2 x 2 at 4 ranks; 1 x 2 and 2 x 1 (ring x Ulysses) at 2.
std::vector<int> ulysses_degrees() {
  const int p = world().size();
  if (p == 4) return {2};
  if (p == 2) return {2, 1};
  return {};
}

void run_on_hybrid_grids(const HybridCase& c) {
  for (int u : ulysses_degrees()) {
    const ProcessGrid grid(world(), 1, world().size(), u);
    run_case(c, grid, false);
  }
}

// The grids above are for 2 and 4 ranks; one rank has nothing to split.
#define SKIP_ON_ONE_RANK()                              \
  if (world().size() != 2 && world().size() != 4) \
  GTEST_SKIP() << "hybrid attention splits the sequence over 2 or 4 ranks; run under mpiexec -np 2 or 4"

TEST(HybridAttention, ContiguousCausalMha) {
  SKIP_ON_ONE_RANK();
  run_on_hybrid_grids({.name = "contiguous causal MHA", .mask = MaskSpec::causal_mask(), .seed = 11});
}

TEST(HybridAttention, ContiguousBidirectionalGqaD64) {
  SKIP_ON_ONE_RANK();
  run_on_hybrid_grids({.name = "contiguous non-causal GQA 4/2 D=64", .kv_heads = 2, .d = 64, .mask = MaskSpec{},
                       .seed = 21});
}

TEST(HybridAttention, FewerKvHeadsThanUlyssesRanks) {
  SKIP_ON_ONE_RANK();
  // Hkv = 1 < u = 2: the KV head is repeated and its copies' gradients summed.
  run_on_hybrid_grids({.name = "contiguous causal MQA 4/1", .kv_heads = 1, .mask = MaskSpec::causal_mask(), .seed = 31});
  run_on_hybrid_grids({.name = "zigzag causal MQA 4/1 bfloat16", .kv_heads = 1, .n = 14, .mask = MaskSpec::causal_mask(),
                       .dtype = DType::BF16, .layout = LayoutKind::Zigzag, .seed = 32});
}

TEST(HybridAttention, ZigzagCausalGqa) {
  SKIP_ON_ONE_RANK();
  // n = 14: each zigzag chunk of a ring rank is 14 rows, cut in two for u = 2.
  run_on_hybrid_grids({.name = "zigzag causal GQA 4/2", .kv_heads = 2, .n = 14, .mask = MaskSpec::causal_mask(),
                       .layout = LayoutKind::Zigzag, .seed = 41});
}

TEST(HybridAttention, SlidingWindow) {
  SKIP_ON_ONE_RANK();
  run_on_hybrid_grids({.name = "contiguous sliding (20, 3) GQA 4/2", .kv_heads = 2, .mask = MaskSpec::sliding(20, 3),
                       .seed = 51});
  run_on_hybrid_grids({.name = "zigzag sliding (9, 0) MHA", .n = 14, .mask = MaskSpec::sliding(9),
                       .layout = LayoutKind::Zigzag, .seed = 52});
}

TEST(HybridAttention, Float64Causal) {
  SKIP_ON_ONE_RANK();
  run_on_hybrid_grids({.name = "contiguous causal MHA float64", .mask = MaskSpec::causal_mask(), .dtype = DType::F64,
                       .seed = 61});
}

TEST(HybridAttention, ParallelAttentionDispatchesEveryMode) {
  SKIP_ON_ONE_RANK();
  const int p = world().size();
  // (dp, Ulysses degree): ring, Ulysses and hybrid over the whole world, and at 4 ranks two
  // replicas of a 2-rank sequence group (Ulysses 2, ring 2).
  std::vector<std::pair<int, int>> grids = {{1, 1}, {1, p}};
  if (p == 4) grids.insert(grids.end(), {{1, 2}, {2, 2}, {2, 1}});
  for (const auto& [dp, u] : grids) {
    const ProcessGrid grid(world(), dp, p / dp, u);
    run_case({.name = "zigzag causal GQA 4/2", .kv_heads = 2, .n = 14, .mask = MaskSpec::causal_mask(),
              .layout = LayoutKind::Zigzag, .seed = 71},
             grid, true);
    run_case({.name = "contiguous non-causal MQA 4/1", .kv_heads = 1, .mask = MaskSpec{}, .seed = 72}, grid, true);
  }
}

TEST(HybridAttention, BadInputsNameTheShapes) {
  SKIP_ON_ONE_RANK();
  const int p = world().size();
  const ProcessGrid grid(world(), 1, p, 2);
  const SequenceLayout layout = SequenceLayout::hybrid(LayoutKind::Contiguous, 4 * p, p / 2, 2);
  const Tensor q = Tensor::randn({1, 3, 4, 8}, 1), kv = Tensor::randn({1, 1, 4, 8}, 2);
  try {
    hybrid_attention(q, kv, kv, MaskSpec{}, 0.0, grid.ulysses_group(), grid.ring_group(), layout);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("hybrid_attention"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[1, 3, 4, 8]"), std::string::npos) << msg;
  }
  // A layout over another number of ranks than ring x Ulysses.
  const SequenceLayout wrong = SequenceLayout::make(LayoutKind::Contiguous, 8 * p, 2 * p);
  const Tensor q4 = Tensor::randn({1, 4, 4, 8}, 3);
  EXPECT_THROW(hybrid_attention(q4, q4, q4, MaskSpec{}, 0.0, grid.ulysses_group(), grid.ring_group(), wrong),
               ValueError);
}

}  // namespace
}  // namespace strand::parallel
