// The process grid's layout rule (no MPI): hand-written layouts, partition properties for every
// fitting shape up to 16 ranks, the size errors, and a grid over the single-process world.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "framework/core/error.h"
#include "parallel/comm/backends.h"
#include "parallel/grid.h"

namespace strand::parallel {
namespace {

using Groups = std::vector<std::vector<int>>;

TEST(GridLayout, DataAndSequenceGroups) {
  const GridLayout l = grid_layout(4, 2, 2);
  EXPECT_EQ(l.sp_groups, (Groups{{0, 1}, {2, 3}}));
  EXPECT_EQ(l.dp_groups, (Groups{{0, 2}, {1, 3}}));
  EXPECT_EQ(l.ring_groups, (Groups{{0, 1}, {2, 3}}));  // ring mode: the ring is the sp group
  EXPECT_EQ(l.ulysses_groups, (Groups{{0}, {1}, {2}, {3}}));
  EXPECT_EQ(l.ring_degree, 2);
}

TEST(GridLayout, HybridUlyssesInsideRing) {
  // dp 2 x (2 Ulysses x 2 ring), 8 ranks: Ulysses runs are contiguous, rings strided by 2.
  const GridLayout l = grid_layout(8, 2, 4, 2);
  EXPECT_EQ(l.sp_groups, (Groups{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  EXPECT_EQ(l.dp_groups, (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(l.ulysses_groups, (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
  EXPECT_EQ(l.ring_groups, (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(l.ring_degree, 2);
  const GridLayout ulysses = grid_layout(4, 1, 4, 4);
  EXPECT_EQ(ulysses.ulysses_groups, (Groups{{0, 1, 2, 3}}));
  EXPECT_EQ(ulysses.ring_groups, (Groups{{0}, {1}, {2}, {3}}));
}

// Each family of groups partitions the ranks, with groups of the stated size.
void expect_partition(const Groups& groups, int world, size_t group_size, const char* what) {
  std::set<int> seen;
  for (const auto& g : groups) {
    EXPECT_EQ(g.size(), group_size) << what;
    for (int r : g) EXPECT_TRUE(seen.insert(r).second) << what << ": rank " << r << " twice";
  }
  EXPECT_EQ(static_cast<int>(seen.size()), world) << what;
}

TEST(GridLayout, EveryShapePartitionsTheWorld) {
  for (int world = 1; world <= 16; ++world)
    for (int dp = 1; dp <= world; ++dp) {
      if (world % dp != 0) continue;
      const int sp = world / dp;
      for (int u = 1; u <= sp; ++u) {
        if (sp % u != 0) continue;
        const GridLayout l = grid_layout(world, dp, sp, u);
        expect_partition(l.dp_groups, world, dp, "dp");
        expect_partition(l.sp_groups, world, sp, "sp");
        expect_partition(l.ulysses_groups, world, u, "ulysses");
        expect_partition(l.ring_groups, world, sp / u, "ring");
        // A Ulysses group and a ring group of the same sp group share exactly one rank.
        for (const auto& ug : l.ulysses_groups)
          for (const auto& rg : l.ring_groups) {
            if (ug.front() / sp != rg.front() / sp) continue;
            int shared = 0;
            for (int a : ug)
              for (int b : rg) shared += a == b;
            EXPECT_EQ(shared, 1);
          }
      }
    }
}

TEST(GridLayout, SizeErrorsSayWhatDoesNotFit) {
  try {
    grid_layout(3, 2, 2);
    ADD_FAILURE() << "4 ranks of grid on a job of 3";
  } catch (const ValueError& e) {
    EXPECT_EQ(std::string(e.what()), "parallel.dp (2) x parallel.sp (2) = 4 ranks, but the job has 3");
  }
  try {
    grid_layout(4, 1, 4, 3);
    ADD_FAILURE() << "ulysses_degree 3 with sp 4";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("parallel.ulysses_degree (3) must be at least 1 and divide parallel.sp (4)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(grid_layout(1, 0, 1), ValueError);
  EXPECT_THROW(grid_layout(1, 1, 0), ValueError);
}

TEST(ProcessGrid, OverTheSingleProcessWorld) {
  auto world = make_local_group();
  ProcessGrid grid(*world, 1, 1);
  EXPECT_EQ(&grid.world(), world.get());
  for (Group* g : {&grid.dp_group(), &grid.sp_group(), &grid.ulysses_group(), &grid.ring_group()}) {
    EXPECT_EQ(g->size(), 1);
    EXPECT_EQ(g->rank(), 0);
  }
  EXPECT_EQ(grid.dp_rank(), 0);
  EXPECT_EQ(grid.sp_rank(), 0);
  EXPECT_THROW(ProcessGrid(*world, 1, 2), ValueError);
}

}  // namespace
}  // namespace strand::parallel
