// The cut of a batch into one sequence-parallel rank's rows.
#include "framework/train/sharding.h"

#include "framework/core/error.h"

namespace strand::train {

SequenceSharding::SequenceSharding(const parallel::ProcessGrid& grid, parallel::SequenceLayout layout)
    : layout_(std::make_shared<const parallel::SequenceLayout>(std::move(layout))),
      sp_rank_(grid.sp_rank()),
      sp_group_(&grid.sp_group()) {
  STRAND_CHECK(layout_->parts() == grid.sp(), ValueError, "sequence sharding: the layout (", layout_->describe(),
               ") is not over the grid's ", grid.sp(), " sp ranks");
  model_shard_.positions = layout_->positions(sp_rank_);
  model_shard_.context = parallel::SequenceContext{&grid.ring_group(), &grid.ulysses_group(), layout_};
  model_shard_.seq_len = layout_->seq_len();
}

data::Batch SequenceSharding::shard(const data::Batch& batch) const {
  if (!active()) return batch;
  data::Batch out;
  out.inputs = layout_->shard(batch.inputs, sp_rank_, 1);
  out.targets = layout_->shard(batch.targets, sp_rank_, 1);
  if (batch.answer_targets.defined()) out.answer_targets = layout_->shard(batch.answer_targets, sp_rank_, 1);
  out.step = batch.step;
  out.epoch = batch.epoch;
  return out;
}

}  // namespace strand::train
