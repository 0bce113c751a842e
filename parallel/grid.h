// The process grid: the world's ranks arranged as dp data-parallel replicas of sp sequence-parallel
// ranks, with the sp ranks further arranged as ulysses_degree x ring_degree for hybrid attention.
#pragma once
#include <memory>
#include <vector>

#include "parallel/comm/group.h"

namespace strand::parallel {

// Note [Grid layout]: world rank r = d * sp + s, with d its replica and s its place in the
// sequence group.
// - sp groups are contiguous ({0..sp-1}, {sp..2sp-1}, ...): the ranks that talk most (ring and
//   all-to-all attention every layer) sit next to each other, on one machine when possible.
// - dp groups are strided by sp ({s, s+sp, s+2sp, ...}): they all-reduce gradients once a step.
// - Inside an sp group (hybrid, as in USP): s = g * ulysses_degree + u. Ulysses groups are the
//   contiguous runs of ulysses_degree ranks (all-to-all, the heavier traffic); ring groups take
//   one rank of each run, strided by ulysses_degree, so ring_degree = sp / ulysses_degree.
// Every group lists its world ranks in increasing order, which is also their rank order in it.
struct GridLayout {
  int dp = 1;
  int sp = 1;
  int ulysses_degree = 1;
  int ring_degree = 1;
  std::vector<std::vector<int>> dp_groups;       // sp groups of dp ranks
  std::vector<std::vector<int>> sp_groups;       // dp groups of sp ranks
  std::vector<std::vector<int>> ulysses_groups;  // dp * ring_degree groups of ulysses_degree ranks
  std::vector<std::vector<int>> ring_groups;     // dp * ulysses_degree groups of ring_degree ranks
};

// The layout for a job of world_size ranks. Throws ValueError when world_size != dp * sp
// ("parallel.dp (2) x parallel.sp (2) = 4 ranks, but the job has 3"), a degree is below 1, or
// ulysses_degree does not divide sp.
GridLayout grid_layout(int world_size, int dp, int sp, int ulysses_degree = 1);

class ProcessGrid {
 public:
  // Collective over world (every rank calls it with the same arguments): checks the sizes, then
  // splits world into this rank's dp, sp, Ulysses and ring groups. world must outlive the grid.
  // Sequence modes: ring is ulysses_degree 1, Ulysses is ulysses_degree = sp, hybrid in between.
  ProcessGrid(Group& world, int dp, int sp, int ulysses_degree = 1);

  Group& world() const { return *world_; }
  Group& dp_group() const { return *dp_group_; }            // same s, all replicas: gradient sync
  Group& sp_group() const { return *sp_group_; }            // one replica's sequence ranks
  Group& ulysses_group() const { return *ulysses_group_; }  // all-to-all part of the sp group
  Group& ring_group() const { return *ring_group_; }        // ring part of the sp group

  int dp() const { return layout_.dp; }
  int sp() const { return layout_.sp; }
  int ulysses_degree() const { return layout_.ulysses_degree; }
  int ring_degree() const { return layout_.ring_degree; }
  int dp_rank() const { return dp_group_->rank(); }  // this rank's replica d
  int sp_rank() const { return sp_group_->rank(); }  // this rank's place s in the sequence group

  const GridLayout& layout() const { return layout_; }

 private:
  Group* world_;
  GridLayout layout_;
  std::unique_ptr<Group> dp_group_, sp_group_, ulysses_group_, ring_group_;
};

}  // namespace strand::parallel
