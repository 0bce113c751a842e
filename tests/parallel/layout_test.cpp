// SequenceLayout (parallel/layout.h): coverage of every position, the zigzag chunk order, the
// hybrid split and its gathered view, shard/unshard round trips and the error messages.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "parallel/layout.h"

namespace strand::parallel {
namespace {

// Every global position of the layout appears in exactly one rank's segments, each rank holds
// local_len rows, and positions(rank) lists the segments' positions in row order.
void expect_partition(const SequenceLayout& layout) {
  SCOPED_TRACE(layout.describe());
  std::vector<int> seen(static_cast<size_t>(layout.seq_len()), 0);
  for (int r = 0; r < layout.parts(); ++r) {
    std::vector<int64_t> want;
    for (const Segment& s : layout.segments(r)) {
      ASSERT_GT(s.length, 0);
      ASSERT_GE(s.start, 0);
      ASSERT_LE(s.start + s.length, layout.seq_len());
      for (int64_t i = 0; i < s.length; ++i) {
        ++seen[static_cast<size_t>(s.start + i)];
        want.push_back(s.start + i);
      }
    }
    EXPECT_EQ(static_cast<int64_t>(want.size()), layout.local_len()) << "rank " << r;
    const Tensor pos = layout.positions(r);
    ASSERT_EQ(pos.dtype(), DType::I32);
    ASSERT_EQ(pos.shape(), (Shape{layout.local_len()}));
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(pos.data<int32_t>()[i], want[i]) << "rank " << r;
  }
  for (size_t p = 0; p < seen.size(); ++p) EXPECT_EQ(seen[p], 1) << "position " << p;
}

std::vector<int32_t> positions_of(const SequenceLayout& layout, int rank) {
  const Tensor t = layout.positions(rank);
  return {t.data<int32_t>(), t.data<int32_t>() + t.numel()};
}

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const ValueError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected ValueError";
  return {};
}

TEST(SequenceLayout, EveryPositionOnceForEveryKind) {
  for (LayoutKind kind : {LayoutKind::Contiguous, LayoutKind::Zigzag})
    for (int p : {1, 2, 3, 4, 8}) expect_partition(SequenceLayout::make(kind, 2 * p * 7, p));
  for (LayoutKind kind : {LayoutKind::Contiguous, LayoutKind::Zigzag})
    for (int ring : {1, 2, 3})
      for (int u : {1, 2, 4}) {
        const SequenceLayout h = SequenceLayout::hybrid(kind, 2 * ring * u * 5, ring, u);
        EXPECT_EQ(h.parts(), ring * u);
        expect_partition(h);
        expect_partition(h.gathered(u));
        EXPECT_EQ(h.gathered(u).parts(), ring);
      }
}

TEST(SequenceLayout, ContiguousRanksHoldConsecutiveBlocks) {
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Contiguous, 12, 3);
  EXPECT_EQ(layout.kind(), LayoutKind::Contiguous);
  EXPECT_EQ(layout.seq_len(), 12);
  EXPECT_EQ(layout.local_len(), 4);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(layout.segments(r), (std::vector<Segment>{{4 * r, 4}}));
  EXPECT_EQ(layout.describe(), "contiguous over 3 ranks, 12 positions (4 per rank)");
}

TEST(SequenceLayout, ZigzagRankHoldsChunksRAndTwoPMinusOneMinusR) {
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Zigzag, 32, 4);  // 8 chunks of 4
  EXPECT_EQ(layout.local_len(), 8);
  for (int r = 0; r < 3; ++r)
    EXPECT_EQ(layout.segments(r), (std::vector<Segment>{{4 * r, 4}, {4 * (7 - r), 4}})) << "rank " << r;
  // Rank P-1 holds chunks P-1 and P, which are adjacent: one segment.
  EXPECT_EQ(layout.segments(3), (std::vector<Segment>{{12, 8}}));
  EXPECT_EQ(positions_of(layout, 1), (std::vector<int32_t>{4, 5, 6, 7, 24, 25, 26, 27}));
  EXPECT_EQ(layout.describe(), "zigzag over 4 ranks, 32 positions (2 x 4 per rank)");
  // Over one rank the two chunks are adjacent and merge into the whole sequence.
  EXPECT_EQ(SequenceLayout::make(LayoutKind::Zigzag, 10, 1).segments(0), (std::vector<Segment>{{0, 10}}));
}

TEST(SequenceLayout, HybridWithOneUlyssesRankIsMake) {
  for (LayoutKind kind : {LayoutKind::Contiguous, LayoutKind::Zigzag})
    for (int p : {1, 2, 4}) {
      const SequenceLayout made = SequenceLayout::make(kind, 8 * p, p);
      const SequenceLayout hybrid = SequenceLayout::hybrid(kind, 8 * p, p, 1);
      ASSERT_EQ(hybrid.parts(), made.parts());
      for (int r = 0; r < p; ++r) EXPECT_EQ(hybrid.segments(r), made.segments(r));
      EXPECT_EQ(made.gathered(1).segments(0), made.segments(0));
    }
}

TEST(SequenceLayout, HybridCutsEachRingRanksRowsIntoUlyssesRuns) {
  // Note [Layouts]: zigzag, 2 ring ranks x 2 Ulysses ranks, chunks of 8; ring rank 0 holds
  // chunks 0 and 3, ring rank 1 chunks 1 and 2, each cut into two runs of 8 rows.
  const SequenceLayout h = SequenceLayout::hybrid(LayoutKind::Zigzag, 32, 2, 2);
  EXPECT_EQ(h.segments(0), (std::vector<Segment>{{0, 8}}));
  EXPECT_EQ(h.segments(1), (std::vector<Segment>{{24, 8}}));
  EXPECT_EQ(h.segments(2), (std::vector<Segment>{{8, 8}}));
  EXPECT_EQ(h.segments(3), (std::vector<Segment>{{16, 8}}));
  // Four Ulysses ranks cut each chunk in two: a run never straddles here, but with three ranks
  // the middle run holds the end of one chunk and the start of the other.
  const SequenceLayout four = SequenceLayout::hybrid(LayoutKind::Zigzag, 32, 2, 4);
  EXPECT_EQ(four.segments(0), (std::vector<Segment>{{0, 4}}));
  EXPECT_EQ(four.segments(1), (std::vector<Segment>{{4, 4}}));
  EXPECT_EQ(four.segments(2), (std::vector<Segment>{{24, 4}}));
  const SequenceLayout three = SequenceLayout::hybrid(LayoutKind::Zigzag, 24, 2, 3);
  EXPECT_EQ(three.segments(1), (std::vector<Segment>{{4, 2}, {18, 2}}));
  // The ring rank's rows after the all-to-all: sp rank 0's rows, then sp rank 1's.
  const SequenceLayout g = h.gathered(2);
  EXPECT_EQ(g.segments(0), (std::vector<Segment>{{0, 8}, {24, 8}}));
  for (int ring = 0; ring < 2; ++ring) {
    std::vector<int32_t> want = positions_of(h, 2 * ring);
    const std::vector<int32_t> second = positions_of(h, 2 * ring + 1);
    want.insert(want.end(), second.begin(), second.end());
    EXPECT_EQ(positions_of(g, ring), want) << "ring rank " << ring;
  }
}

TEST(SequenceLayout, GatheredHybridIsThePlainLayoutOverRingRanks) {
  for (LayoutKind kind : {LayoutKind::Contiguous, LayoutKind::Zigzag})
    for (int ring : {1, 2, 3})
      for (int u : {1, 2, 3, 4}) {
        const int64_t n = 12 * ring * u;
        const SequenceLayout g = SequenceLayout::hybrid(kind, n, ring, u).gathered(u);
        const SequenceLayout made = SequenceLayout::make(kind, n, ring);
        ASSERT_EQ(g.parts(), ring);
        for (int r = 0; r < ring; ++r) EXPECT_EQ(g.segments(r), made.segments(r)) << ring << " x " << u;
      }
}

TEST(SequenceLayout, ShardAndUnshardRoundTripFloatAndInt) {
  const int64_t b = 2, n = 24, c = 3;
  const SequenceLayout hybrid = SequenceLayout::hybrid(LayoutKind::Zigzag, n, 2, 2);
  for (const SequenceLayout& layout : {SequenceLayout::make(LayoutKind::Contiguous, n, 4),
                                       SequenceLayout::make(LayoutKind::Zigzag, n, 3), hybrid, hybrid.gathered(2)}) {
    SCOPED_TRACE(layout.describe());
    const Tensor x = Tensor::randn({b, n, c}, 5);  // [B, N, C]: hidden states
    Tensor tokens = Tensor::empty({b, n}, DType::I32);  // [B, N] int32: token ids
    for (int64_t i = 0; i < b * n; ++i) tokens.data<int32_t>()[i] = static_cast<int32_t>(1000 * (i / n) + i % n);
    std::vector<Tensor> xs, ts;
    for (int r = 0; r < layout.parts(); ++r) {
      xs.push_back(layout.shard(x, r));
      ts.push_back(layout.shard(tokens, r));
      ASSERT_EQ(xs.back().shape(), (Shape{b, layout.local_len(), c}));
      ASSERT_EQ(ts.back().dtype(), DType::I32);
      // Row i of the shard is position positions(r)[i] of every batch row.
      const std::vector<int32_t> pos = positions_of(layout, r);
      for (int64_t bi = 0; bi < b; ++bi)
        for (size_t i = 0; i < pos.size(); ++i) {
          EXPECT_EQ(ts.back().data<int32_t>()[bi * layout.local_len() + static_cast<int64_t>(i)],
                    1000 * bi + pos[i]);
          for (int64_t e = 0; e < c; ++e)
            EXPECT_EQ(xs.back().data<float>()[(bi * layout.local_len() + static_cast<int64_t>(i)) * c + e],
                      x.data<float>()[(bi * n + pos[i]) * c + e]);
        }
    }
    EXPECT_EQ(layout.unshard(xs).to_vector(), x.to_vector());
    EXPECT_EQ(layout.unshard(ts).to_vector(), tokens.to_vector());
  }
}

TEST(SequenceLayout, ShardsAlongAnyAxis) {
  // [B, H, N, D] attention inputs are cut along axis 2.
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Zigzag, 8, 2);
  const Tensor q = Tensor::randn({2, 3, 8, 4}, 9);
  std::vector<Tensor> parts = {layout.shard(q, 0, 2), layout.shard(q, 1, -2)};
  EXPECT_EQ(parts[0].shape(), (Shape{2, 3, 4, 4}));
  EXPECT_EQ(layout.unshard(parts, 2).to_vector(), q.to_vector());
}

TEST(SequenceLayout, ErrorsSayWhichLengthsWork) {
  const std::string zigzag = error_of([] { SequenceLayout::make(LayoutKind::Zigzag, 1004, 4); });
  EXPECT_NE(zigzag.find("seq_len 1004 does not split into 2 x 4 = 8 equal zigzag chunks"), std::string::npos)
      << zigzag;
  EXPECT_NE(zigzag.find("1000 or 1008"), std::string::npos) << zigzag;
  const std::string contiguous = error_of([] { SequenceLayout::make(LayoutKind::Contiguous, 1000, 3); });
  EXPECT_NE(contiguous.find("999 or 1002"), std::string::npos) << contiguous;
  const std::string small = error_of([] { SequenceLayout::make(LayoutKind::Zigzag, 5, 4); });
  EXPECT_NE(small.find("8 do"), std::string::npos) << small;
  const std::string hybrid = error_of([] { SequenceLayout::hybrid(LayoutKind::Zigzag, 100, 2, 4); });
  EXPECT_NE(hybrid.find("SequenceLayout::hybrid"), std::string::npos) << hybrid;
  EXPECT_NE(hybrid.find("96 or 112"), std::string::npos) << hybrid;
  EXPECT_NE(error_of([] { SequenceLayout::make(LayoutKind::Contiguous, 8, 0); }).find("parts"), std::string::npos);
  EXPECT_NE(error_of([] { SequenceLayout::make(LayoutKind::Contiguous, 8, 4).gathered(3); }).find("ulysses_degree 3"),
            std::string::npos);
  EXPECT_NE(error_of([] { SequenceLayout::make(LayoutKind::Contiguous, 8, 4).segments(4); }).find("rank 4"),
            std::string::npos);
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Contiguous, 8, 2);
  try {
    layout.shard(Tensor::zeros({2, 9, 3}), 0);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("SequenceLayout::shard"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 9, 3]"), std::string::npos) << msg;
  }
  EXPECT_THROW(layout.unshard({Tensor::zeros({2, 4})}), ValueError);
  EXPECT_THROW(layout.unshard({Tensor::zeros({2, 4}), Tensor::zeros({2, 5})}), ShapeError);
  EXPECT_THROW(layout.unshard({Tensor::zeros({2, 3}), Tensor::zeros({2, 3})}), ShapeError);
}

}  // namespace
}  // namespace strand::parallel
