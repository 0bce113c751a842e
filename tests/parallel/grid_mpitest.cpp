// The process grid under mpiexec: which world ranks land in each group, asserted against the
// layouts written out by hand, for every (dp, sp, ulysses) that fits the job's size.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "framework/core/error.h"
#include "parallel/comm/group.h"
#include "parallel/grid.h"

namespace strand::parallel {
namespace {

using Groups = std::vector<std::vector<int>>;

struct GridCase {
  int dp, sp, ulysses;
  Groups dp_groups, sp_groups, ulysses_groups, ring_groups;
};

// The expected layouts (Note [Grid layout]): sp contiguous, dp strided, Ulysses contiguous inside
// an sp group, ring strided by the Ulysses degree.
const std::vector<GridCase>& cases() {
  static const std::vector<GridCase> all = {
      {1, 1, 1, {{0}}, {{0}}, {{0}}, {{0}}},
      {1, 2, 1, {{0}, {1}}, {{0, 1}}, {{0}, {1}}, {{0, 1}}},
      {1, 2, 2, {{0}, {1}}, {{0, 1}}, {{0, 1}}, {{0}, {1}}},
      {2, 1, 1, {{0, 1}}, {{0}, {1}}, {{0}, {1}}, {{0}, {1}}},
      {2, 2, 1, {{0, 2}, {1, 3}}, {{0, 1}, {2, 3}}, {{0}, {1}, {2}, {3}}, {{0, 1}, {2, 3}}},
      {1, 4, 1, {{0}, {1}, {2}, {3}}, {{0, 1, 2, 3}}, {{0}, {1}, {2}, {3}}, {{0, 1, 2, 3}}},
      {4, 1, 1, {{0, 1, 2, 3}}, {{0}, {1}, {2}, {3}}, {{0}, {1}, {2}, {3}}, {{0}, {1}, {2}, {3}}},
      // Hybrid: 2 Ulysses x 2 ring.
      {1, 4, 2, {{0}, {1}, {2}, {3}}, {{0, 1, 2, 3}}, {{0, 1}, {2, 3}}, {{0, 2}, {1, 3}}},
      {1, 4, 4, {{0}, {1}, {2}, {3}}, {{0, 1, 2, 3}}, {{0, 1, 2, 3}}, {{0}, {1}, {2}, {3}}},
  };
  return all;
}

// The world ranks of g's members in g's rank order, gathered through g itself.
std::vector<int> members(Group& g) {
  Tensor mine = Tensor::full({1}, world().rank(), DType::I32);
  Tensor all = Tensor::zeros({g.size()}, DType::I32);
  g.all_gather(mine, all);
  std::vector<int> out;
  for (double v : all.to_vector()) out.push_back(static_cast<int>(v));
  return out;
}

const std::vector<int>& group_of(const Groups& groups, int rank) {
  for (const auto& g : groups)
    for (int r : g)
      if (r == rank) return g;
  static const std::vector<int> none;
  return none;
}

TEST(Grid, GroupsMatchTheLayout) {
  Group& w = world();
  int tried = 0;
  for (const GridCase& c : cases()) {
    if (c.dp * c.sp != w.size()) continue;
    ++tried;
    SCOPED_TRACE("dp " + std::to_string(c.dp) + " sp " + std::to_string(c.sp) + " ulysses " +
                 std::to_string(c.ulysses));
    ProcessGrid grid(w, c.dp, c.sp, c.ulysses);
    const int me = w.rank();
    EXPECT_EQ(members(grid.dp_group()), group_of(c.dp_groups, me));
    EXPECT_EQ(members(grid.sp_group()), group_of(c.sp_groups, me));
    EXPECT_EQ(members(grid.ulysses_group()), group_of(c.ulysses_groups, me));
    EXPECT_EQ(members(grid.ring_group()), group_of(c.ring_groups, me));
    EXPECT_EQ(grid.ring_degree(), c.sp / c.ulysses);
    EXPECT_EQ(grid.dp_rank(), me / c.sp);
    EXPECT_EQ(grid.sp_rank(), me % c.sp);
    // The layout the grid reports is the one its groups have.
    EXPECT_EQ(grid.layout().sp_groups, c.sp_groups);
    EXPECT_EQ(grid.layout().dp_groups, c.dp_groups);
    EXPECT_EQ(grid.layout().ulysses_groups, c.ulysses_groups);
    EXPECT_EQ(grid.layout().ring_groups, c.ring_groups);
    // The groups carry collectives: a sum over the sp group adds exactly its members' ranks.
    std::vector<int64_t> sum{me};
    grid.sp_group().all_reduce(std::span<int64_t>(sum));
    int64_t want = 0;
    for (int r : group_of(c.sp_groups, me)) want += r;
    EXPECT_EQ(sum[0], want);
  }
  EXPECT_GT(tried, 0) << "no layout case for " << w.size() << " ranks";
}

TEST(Grid, WorldSizeMismatchIsAClearError) {
  Group& w = world();
  const int dp = 2, sp = w.size() == 4 ? 3 : 2;  // never the job's size
  try {
    ProcessGrid grid(w, dp, sp);
    ADD_FAILURE() << "a grid of " << dp * sp << " ranks was built on " << w.size();
  } catch (const ValueError& e) {
    const std::string want = "parallel.dp (2) x parallel.sp (" + std::to_string(sp) + ") = " + std::to_string(dp * sp) +
                             " ranks, but the job has " + std::to_string(w.size());
    EXPECT_EQ(std::string(e.what()), want);
  }
}

}  // namespace
}  // namespace strand::parallel
