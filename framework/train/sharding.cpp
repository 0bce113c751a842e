// The cut of a batch into one sequence-parallel rank's rows.
#include "framework/train/sharding.h"

#include <utility>

#include "framework/core/error.h"

namespace strand::train {

BatchSharder::BatchSharder(std::unique_ptr<parallel::ProcessGrid> grid, std::optional<parallel::SequenceLayout> layout)
    : grid_(std::move(grid)) {
  if (!layout) return;
  STRAND_CHECK(grid_ != nullptr && layout->parts() == grid_->sp(), ValueError, "sequence sharding: the layout (",
               layout->describe(), ") is not over the grid's ", grid_ != nullptr ? grid_->sp() : 1, " sp ranks");
  layout_ = std::make_shared<const parallel::SequenceLayout>(std::move(*layout));
  sp_rank_ = grid_->sp_rank();
  sp_group_ = &grid_->sp_group();
  sequence_shard_.ring = &grid_->ring_group();
  sequence_shard_.ulysses = &grid_->ulysses_group();
  sequence_shard_.layout = layout_;
  sequence_shard_.positions = layout_->positions(sp_rank_);
  sequence_shard_.seq_len = layout_->seq_len();
}

const parallel::ProcessGrid& BatchSharder::grid() const {
  STRAND_CHECK(grid_ != nullptr, ValueError, "batch sharder: a one-process job has no process grid");
  return *grid_;
}

namespace {

Tensor on_device(const Tensor& t, Device device) {
  return !t.defined() || t.device() == device ? t : t.copy_as(t.dtype(), device);
}

}  // namespace

data::Batch BatchSharder::shard(const data::Batch& batch) const {
  data::Batch out = batch;
  if (active()) {
    out.inputs = layout_->shard(batch.inputs, sp_rank_, 1);
    out.targets = layout_->shard(batch.targets, sp_rank_, 1);
    if (batch.answer_targets.defined()) out.answer_targets = layout_->shard(batch.answer_targets, sp_rank_, 1);
  }
  out.inputs = on_device(out.inputs, device_);
  out.targets = on_device(out.targets, device_);
  out.answer_targets = on_device(out.answer_targets, device_);
  return out;
}

}  // namespace strand::train
