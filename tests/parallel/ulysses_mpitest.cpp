// Ulysses sequence parallelism under mpiexec (1, 2, 3 and 4 ranks): the all-to-all exchanges
// (values, round trip, adjoint), repeat_kv_heads, and ulysses_attention's o, lse, dq, dk, dv of
// this rank's shard against one-rank ops::attention over the whole sequence.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "framework/autograd/engine.h"
#include "framework/autograd/grad_mode.h"
#include "framework/core/error.h"
#include "framework/ops/attention.h"
#include "framework/ops/view.h"
#include "parallel/attention.h"
#include "parallel/comm/group.h"
#include "parallel/layout.h"
#include "parallel/ring.h"
#include "parallel/ulysses.h"
#include "support/gradcheck.h"
#include "tests/parallel/attention_check.h"
#include "support/tolerance.h"

namespace strand::parallel {
namespace {

using strand::testing::dtype_eps;

// ---------------------------------------------------------------------------------------------
// The exchanges alone.

// Rows [r*n, (r+1)*n) and heads [h0, h1) of a global [B, H, N(, D)] tensor, as a contiguous copy.
Tensor block(const Tensor& t, int64_t h0, int64_t h1, int64_t r0, int64_t r1) {
  return ops::slice(ops::slice(t.detach(), 1, h0, h1), 2, r0, r1).copy_as(t.dtype(), t.device());
}

void check_exchange_values(const Shape& global_shape, DType dtype, bool strided_input) {
  SCOPED_TRACE(shape_str(global_shape) + " " + dtype_name(dtype) + (strided_input ? " strided" : ""));
  Group& g = world();
  const int64_t p = g.size(), r = g.rank();
  const int64_t heads = global_shape[1], n = global_shape[2] / p, hl = heads / p;
  const Tensor global = Tensor::randn(global_shape, 5, dtype);
  Tensor x = block(global, 0, heads, r * n, (r + 1) * n);
  if (strided_input && x.dim() == 4) {
    // The same values held as [B, n, H, D] and viewed back: heads and rows not unit-stride-ordered.
    const Tensor bnhd = ops::transpose(x, 1, 2).copy_as(dtype, x.device());
    x = ops::transpose(bnhd, 1, 2);
    ASSERT_FALSE(x.is_contiguous());
  }
  const Tensor y = seq_to_heads(x, g);
  // This rank's heads of the whole sequence, exactly (the exchange only moves bytes).
  EXPECT_EQ(y.to_vector(), block(global, r * hl, (r + 1) * hl, 0, p * n).to_vector());
  Shape want = global_shape;
  want[1] = hl;
  EXPECT_EQ(y.shape(), want);
  const Tensor back = heads_to_seq(y, g);
  EXPECT_EQ(back.shape(), x.shape());
  EXPECT_EQ(back.to_vector(), x.to_vector());
}

TEST(UlyssesExchange, SeqToHeadsGathersThisRanksHeadsAndRoundTrips) {
  const int64_t p = world().size();
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    check_exchange_values({2, 2 * p, 3 * p, 5}, dt, false);
    check_exchange_values({2, 2 * p, 3 * p, 5}, dt, true);
    check_exchange_values({2, 2 * p, 3 * p}, dt, false);  // lse-shaped
  }
}

// Sum over every rank of <a, b> on this rank's elements, in float64.
double global_dot(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  world().all_reduce(std::span<double>(&s, 1));
  return s;
}

// A linear map's backward must be its adjoint: <A x, y> == <x, A^T y> with A^T y computed by the
// autograd backward. Both sides sum the same products, in other orders: a few eps per term.
template <class Forward>
void check_adjoint(const Shape& x_shape, const Shape& y_shape, Forward forward, const std::string& what) {
  SCOPED_TRACE(what);
  const int r = world().rank();
  Tensor x = Tensor::randn(x_shape, 100 + r, DType::F64);
  x.set_requires_grad(true);
  const Tensor y = Tensor::randn(y_shape, 200 + r, DType::F64);
  const Tensor ax = forward(x);
  ASSERT_EQ(ax.shape(), y_shape);
  autograd::backward({ax}, {y});
  const double lhs = global_dot(ax, y), rhs = global_dot(x, x.grad());
  const double terms = static_cast<double>(numel_of(x_shape) * world().size());
  double magnitude = 0;  // sum of |products|, the scale the rounding works on
  {
    const std::vector<double> a = ax.to_vector(), b = y.to_vector();
    for (size_t i = 0; i < a.size(); ++i) magnitude += std::abs(a[i] * b[i]);
    world().all_reduce(std::span<double>(&magnitude, 1));
  }
  EXPECT_NEAR(lhs, rhs, 4.0 * terms * dtype_eps(DType::F64) * magnitude);
  EXPECT_NE(lhs, 0.0);
}

TEST(UlyssesExchange, BackwardIsTheAdjoint) {
  Group& g = world();
  const int64_t p = g.size();
  check_adjoint({2, 2 * p, 3, 4}, {2, 2, 3 * p, 4}, [&](const Tensor& x) { return seq_to_heads(x, g); },
                "seq_to_heads");
  check_adjoint({2, 2, 3 * p, 4}, {2, 2 * p, 3, 4}, [&](const Tensor& x) { return heads_to_seq(x, g); },
                "heads_to_seq");
  check_adjoint({1, 2 * p, 5}, {1, 2, 5 * p}, [&](const Tensor& x) { return seq_to_heads(x, g); },
                "seq_to_heads lse-shaped");
}

TEST(UlyssesExchange, BadInputsNameTheOpAndShapes) {
  Group& g = world();
  const int64_t p = g.size();
  if (p > 1) {
    const Tensor x = Tensor::randn({1, p + 1, 3, 4}, 1);  // p + 1 heads: never a multiple of p > 1
    try {
      seq_to_heads(x, g);
      FAIL() << "expected ShapeError";
    } catch (const ShapeError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("seq_to_heads"), std::string::npos) << msg;
      EXPECT_NE(msg.find(shape_str(x.shape())), std::string::npos) << msg;
    }
    const Tensor rows = Tensor::randn({1, 2, p + 1, 4}, 2);
    EXPECT_THROW(heads_to_seq(rows, g), ShapeError);
  }
  try {
    seq_to_heads(Tensor::randn({2, 3}, 3), g);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 3]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(seq_to_heads(Tensor::zeros({1, p, 2, 2}, DType::I32), g), DTypeError);
}

// ---------------------------------------------------------------------------------------------
// repeat_kv_heads.

TEST(RepeatKvHeads, CopiesEachHeadAndSumsTheGradients) {
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor kv = Tensor::randn({2, 2, 3, 4}, 7, dt);
    kv.set_requires_grad(true);
    const Tensor y = repeat_kv_heads(kv, 3);
    ASSERT_EQ(y.shape(), (Shape{2, 6, 3, 4}));
    for (int64_t h = 0; h < 6; ++h)
      EXPECT_EQ(block(y, h, h + 1, 0, 3).to_vector(), block(kv, h / 3, h / 3 + 1, 0, 3).to_vector()) << h;
    const Tensor gy = Tensor::randn(y.shape(), 8, dt);
    autograd::backward({y}, {gy});
    ASSERT_EQ(kv.grad().dtype(), dt);
    // Direct: gradient of head i = sum of the gradients of heads 3i, 3i+1, 3i+2 (in float, as
    // the op sums bfloat16 in float32 and rounds once).
    const std::vector<double> g = gy.to_vector(), got = kv.grad().to_vector();
    const int64_t inner = 3 * 4;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t e = 0; e < inner; ++e) {
          double want = 0, magnitude = 0;
          for (int64_t c = 0; c < 3; ++c) {
            const double term = g[static_cast<size_t>(((b * 6) + i * 3 + c) * inner + e)];
            want += term;
            magnitude += std::abs(term);
          }
          // Two roundings of the sum in its compute dtype, and bfloat16's final rounding.
          const double tol = 2 * dtype_eps(dt) * magnitude + (dt == DType::BF16 ? std::ldexp(std::abs(want), -8) : 0);
          EXPECT_NEAR(got[static_cast<size_t>((b * 2 + i) * inner + e)], want, tol);
        }
  }
}

TEST(RepeatKvHeads, GradientCheck) {
  testing::run_op_case(testing::OpCase{
      .name = "repeat_kv_heads x2",
      .shapes = {{1, 2, 3, 4}},
      .fn = [](const std::vector<Tensor>& in) { return repeat_kv_heads(in[0], 2); }});
  EXPECT_THROW(repeat_kv_heads(Tensor::randn({1, 2, 3}, 1), 2), ShapeError);
  EXPECT_THROW(repeat_kv_heads(Tensor::randn({1, 2, 3, 4}, 1), 0), ValueError);
}

// ---------------------------------------------------------------------------------------------
// ulysses_attention against one rank.

struct UlyssesCase {
  std::string name;
  int64_t batch = 2, q_heads = 4, kv_heads = 4, n = 13, d = 16;  // n: rows per rank
  MaskSpec mask;
  DType dtype = DType::F32;
  LayoutKind layout = LayoutKind::Contiguous;
  uint64_t seed = 1;
};

void run_case(const UlyssesCase& c) {
  SCOPED_TRACE(c.name);
  Group& g = world();
  const int p = g.size(), r = g.rank();
  const SequenceLayout layout = SequenceLayout::make(c.layout, p * c.n, p);
  // The table's head counts are chosen for P = 1, 2, 4; at P = 3 they are tripled so that they
  // split over the ranks (an MQA case keeps its one KV head, which is then repeated x3).
  const int64_t times = p % 3 == 0 ? 3 : 1;
  const int64_t q_heads = c.q_heads * times, kv_heads = c.kv_heads == 1 ? 1 : c.kv_heads * times;
  const testing::AttentionProblem problem(
      {.batch = c.batch, .q_heads = q_heads, .kv_heads = kv_heads, .seq = p * c.n, .d = c.d, .dtype = c.dtype,
       .seed = c.seed, .bf16_isa = kv_heads % p == 0 ? "auto" : "generic"},
      c.mask);
  const testing::RankRows rows(problem, layout, r);
  const testing::Bf16IsaScope isa(c.dtype, problem.shape.bf16_isa);
  rows.backward_and_check(ulysses_attention(rows.q, rows.k, rows.v, c.mask, 0.0, g, layout));
}

TEST(UlyssesAttention, CausalMha) {
  run_case({.name = "causal MHA D=16", .mask = MaskSpec::causal_mask(), .seed = 11});
}

TEST(UlyssesAttention, BidirectionalMhaD64) {
  run_case({.name = "non-causal MHA D=64", .d = 64, .mask = MaskSpec{}, .seed = 21});
}

TEST(UlyssesAttention, CausalGqaKvHeadsSplit) {
  // Hkv = 4: a multiple of every P here, so the KV heads split as they are.
  run_case({.name = "causal GQA 8/4", .q_heads = 8, .kv_heads = 4, .mask = MaskSpec::causal_mask(), .seed = 31});
}

TEST(UlyssesAttention, GqaFewerKvHeadsThanRanks) {
  // At P = 4 both repeat the KV heads (x2, x4); at P = 2 Hkv = 2 splits and Hkv = 1 repeats; at
  // P = 3 (heads tripled) 12/6 splits and 12/1 repeats x3.
  run_case({.name = "causal GQA 4/2", .q_heads = 4, .kv_heads = 2, .mask = MaskSpec::causal_mask(), .seed = 41});
  run_case({.name = "non-causal MQA 4/1 D=64", .q_heads = 4, .kv_heads = 1, .d = 64, .mask = MaskSpec{},
            .seed = 42});
}

TEST(UlyssesAttention, SlidingWindow) {
  run_case({.name = "sliding (16, 2) GQA 4/2", .q_heads = 4, .kv_heads = 2, .mask = MaskSpec::sliding(16, 2),
            .seed = 51});
}

TEST(UlyssesAttention, Float64Causal) {
  run_case({.name = "causal MHA float64", .mask = MaskSpec::causal_mask(), .dtype = DType::F64, .seed = 61});
}

TEST(UlyssesAttention, Bfloat16CausalGqa) {
  run_case({.name = "causal GQA 4/1 bfloat16", .q_heads = 4, .kv_heads = 1, .mask = MaskSpec::causal_mask(),
            .dtype = DType::BF16, .seed = 71});
}

TEST(UlyssesAttention, ZigzagLayout) {
  // n = 14: two zigzag chunks of 7 rows per rank.
  run_case({.name = "zigzag causal GQA 4/2", .q_heads = 4, .kv_heads = 2, .n = 14, .mask = MaskSpec::causal_mask(),
            .layout = LayoutKind::Zigzag, .seed = 81});
  run_case({.name = "zigzag sliding (9, 0) MHA", .n = 14, .mask = MaskSpec::sliding(9), .layout = LayoutKind::Zigzag,
            .seed = 82});
}

TEST(UlyssesAttention, ParallelAttentionDispatchesToUlysses) {
  Group& g = world();
  const int p = g.size(), r = g.rank();
  const int64_t n = 6, times = p % 3 == 0 ? 3 : 1;  // heads that split over P = 1, 2, 3, 4
  auto layout = std::make_shared<const SequenceLayout>(SequenceLayout::make(LayoutKind::Zigzag, p * n, p));
  const Tensor q = layout->shard(Tensor::randn({1, 4 * times, p * n, 8}, 91), r, 2);
  const Tensor k = layout->shard(Tensor::randn({1, 2 * times, p * n, 8}, 92), r, 2);
  const Tensor v = layout->shard(Tensor::randn({1, 2 * times, p * n, 8}, 93), r, 2);
  const MaskSpec causal = MaskSpec::causal_mask();
  // Ulysses over the whole sp group (null ring).
  const ops::AttentionOutput want = ulysses_attention(q, k, v, causal, 0.0, g, *layout);
  SequenceShard over_ulysses;
  over_ulysses.ulysses = &g;
  over_ulysses.layout = layout;
  const ops::AttentionOutput got = parallel::attention(q, k, v, causal, 0.0, over_ulysses);
  EXPECT_EQ(got.o.to_vector(), want.o.to_vector());
  EXPECT_EQ(got.lse.to_vector(), want.lse.to_vector());
  // A ring over the same group with the same layout (null Ulysses group), and the default
  // contiguous layout when none is given.
  SequenceShard over_ring;
  over_ring.ring = &g;
  over_ring.layout = layout;
  const ops::AttentionOutput ring = parallel::attention(q, k, v, causal, 0.0, over_ring);
  const ops::AttentionOutput ring_want = p > 1 ? ring_attention(q, k, v, causal, 0.0, g, *layout)
                                               : ops::attention(q, k, v, causal);
  EXPECT_EQ(ring.o.to_vector(), ring_want.o.to_vector());
  over_ulysses.layout = nullptr;
  const ops::AttentionOutput contiguous = parallel::attention(q, k, v, causal, 0.0, over_ulysses);
  const SequenceLayout plain = SequenceLayout::make(LayoutKind::Contiguous, p * n, p);
  EXPECT_EQ(contiguous.o.to_vector(), ulysses_attention(q, k, v, causal, 0.0, g, plain).o.to_vector());
}

TEST(UlyssesAttention, BadInputsNameTheShapes) {
  Group& g = world();
  const int p = g.size();
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Contiguous, 4 * p, p);
  if (p > 1) {
    const Tensor q = Tensor::randn({1, p + 1, 4, 8}, 1), kv = Tensor::randn({1, 1, 4, 8}, 2);
    try {
      ulysses_attention(q, kv, kv, MaskSpec{}, 0.0, g, layout);
      FAIL() << "expected ShapeError";
    } catch (const ShapeError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("ulysses_attention"), std::string::npos) << msg;
      EXPECT_NE(msg.find(shape_str(q.shape())), std::string::npos) << msg;
    }
  }
  if (p == 4) {
    // Hkv = 3 neither splits over 4 ranks nor divides 4: the message names Hq, Hkv and u.
    const Tensor q = Tensor::randn({1, 12, 4, 8}, 3), kv = Tensor::randn({1, 3, 4, 8}, 4);
    try {
      ulysses_attention(q, kv, kv, MaskSpec{}, 0.0, g, layout);
      FAIL() << "expected ShapeError";
    } catch (const ShapeError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("Hkv = 3"), std::string::npos) << msg;
      EXPECT_NE(msg.find("Hq = 12"), std::string::npos) << msg;
      EXPECT_NE(msg.find("u = 4"), std::string::npos) << msg;
    }
  }
  // The layout must cover the group's ranks, and hold q's rows.
  const Tensor q = Tensor::randn({1, 4, 5, 8}, 5);
  EXPECT_THROW(ulysses_attention(q, q, q, MaskSpec{}, 0.0, g, layout), ShapeError);
  const Tensor ints = Tensor::zeros({1, 4, 4, 8}, DType::I32);
  EXPECT_THROW(ulysses_attention(ints, ints, ints, MaskSpec{}, 0.0, g, layout), DTypeError);
}

}  // namespace
}  // namespace strand::parallel
