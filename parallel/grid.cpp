// The process grid's layout (Note [Grid layout] in grid.h) and its groups, split from the world.
#include "parallel/grid.h"

#include "framework/core/error.h"

namespace strand::parallel {
namespace {

using RankGroups = std::vector<std::vector<int>>;

// Which group of `groups` holds world rank r, and r's place in it: the split's color and key.
std::pair<int, int> color_and_key(const RankGroups& groups, int r) {
  for (size_t g = 0; g < groups.size(); ++g)
    for (size_t i = 0; i < groups[g].size(); ++i)
      if (groups[g][i] == r) return {static_cast<int>(g), static_cast<int>(i)};
  throw ValueError(detail::concat("process grid: rank ", r, " is in no group of the layout"));
}

std::unique_ptr<Group> split_into(Group& world, const RankGroups& groups) {
  const auto [color, key] = color_and_key(groups, world.rank());
  return world.split(color, key);
}

}  // namespace

GridLayout grid_layout(int world_size, int dp, int sp, int ulysses_degree) {
  STRAND_CHECK(dp >= 1, ValueError, "parallel.dp must be at least 1, got ", dp);
  STRAND_CHECK(sp >= 1, ValueError, "parallel.sp must be at least 1, got ", sp);
  STRAND_CHECK(ulysses_degree >= 1 && sp % ulysses_degree == 0, ValueError, "parallel.ulysses_degree (",
               ulysses_degree, ") must be at least 1 and divide parallel.sp (", sp, ")");
  STRAND_CHECK(static_cast<int64_t>(dp) * sp == world_size, ValueError, "parallel.dp (", dp, ") x parallel.sp (",
               sp, ") = ", static_cast<int64_t>(dp) * sp, " ranks, but the job has ", world_size);

  GridLayout layout;
  layout.dp = dp;
  layout.sp = sp;
  layout.ulysses_degree = ulysses_degree;
  layout.ring_degree = sp / ulysses_degree;
  const int ring_degree = layout.ring_degree;

  layout.dp_groups.assign(sp, {});
  for (int s = 0; s < sp; ++s)
    for (int d = 0; d < dp; ++d) layout.dp_groups[s].push_back(d * sp + s);

  layout.sp_groups.assign(dp, {});
  for (int d = 0; d < dp; ++d)
    for (int s = 0; s < sp; ++s) layout.sp_groups[d].push_back(d * sp + s);

  // Inside replica d: place s = g * ulysses_degree + u.
  for (int d = 0; d < dp; ++d) {
    for (int g = 0; g < ring_degree; ++g) {
      std::vector<int> ulysses;
      for (int u = 0; u < ulysses_degree; ++u) ulysses.push_back(d * sp + g * ulysses_degree + u);
      layout.ulysses_groups.push_back(std::move(ulysses));
    }
    for (int u = 0; u < ulysses_degree; ++u) {
      std::vector<int> ring;
      for (int g = 0; g < ring_degree; ++g) ring.push_back(d * sp + g * ulysses_degree + u);
      layout.ring_groups.push_back(std::move(ring));
    }
  }
  return layout;
}

ProcessGrid::ProcessGrid(Group& world, int dp, int sp, int ulysses_degree)
    : world_(&world), layout_(grid_layout(world.size(), dp, sp, ulysses_degree)) {
  // Every rank makes the four splits in the same order: each is collective over world.
  dp_group_ = split_into(world, layout_.dp_groups);
  sp_group_ = split_into(world, layout_.sp_groups);
  ulysses_group_ = split_into(world, layout_.ulysses_groups);
  ring_group_ = split_into(world, layout_.ring_groups);
}

}  // namespace strand::parallel
