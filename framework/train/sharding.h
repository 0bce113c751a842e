// How one sequence-parallel rank cuts each batch into its rows (the layout and grid come from
// the config through components.h).
#pragma once
#include <cstdint>
#include <memory>

#include "data/loader.h"
#include "models/model.h"
#include "parallel/grid.h"
#include "parallel/layout.h"

namespace strand::train {

// How one sequence-parallel rank cuts a batch: every row [B, N] is cut by the layout into this
// rank's rows [B, N / sp], which run with their global positions over the grid's ring and
// Ulysses groups. The default (sp = 1) leaves batches whole and attention local.
class SequenceSharding {
 public:
  SequenceSharding() = default;
  // sp rank grid.sp_rank() of `layout` (layout.parts() == grid.sp()); grid must outlive this.
  SequenceSharding(const parallel::ProcessGrid& grid, parallel::SequenceLayout layout);

  bool active() const { return layout_ != nullptr; }
  // This rank's rows of inputs, targets and answer_targets (the batch itself when inactive).
  data::Batch shard(const data::Batch& batch) const;
  // Positions and attention context for Model::forward (empty when inactive).
  const models::SequenceShard& model_shard() const { return model_shard_; }
  // The replica's sequence ranks (null when inactive) and this rank's place among them.
  parallel::Group* sp_group() const { return sp_group_; }
  int sp_rank() const { return sp_rank_; }

 private:
  std::shared_ptr<const parallel::SequenceLayout> layout_;
  int sp_rank_ = 0;
  parallel::Group* sp_group_ = nullptr;
  models::SequenceShard model_shard_;
};

}  // namespace strand::train
