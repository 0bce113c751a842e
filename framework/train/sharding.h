// How one rank of a training or evaluation job cuts each batch into its sequence rows: the
// dp x sp grid it owns and the layout (both come from the config through components.h).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>

#include "data/loader.h"
#include "parallel/attention.h"
#include "parallel/grid.h"
#include "parallel/layout.h"

namespace strand::train {

// How one sequence-parallel rank cuts a batch: every row [B, N] is cut by the layout into this
// rank's rows [B, N / sp], which run with their global positions over the grid's ring and
// Ulysses groups. Owns the grid the job's ranks form. The default (one process, sp = 1) has no
// grid, leaves batches whole and attention local; so does a grid with sp = 1.
class BatchSharder {
 public:
  BatchSharder() = default;
  // Over `grid` (null: one process); `layout` is set when sp > 1 and is over the grid's sp ranks
  // (layout->parts() == grid->sp()).
  BatchSharder(std::unique_ptr<parallel::ProcessGrid> grid, std::optional<parallel::SequenceLayout> layout);

  bool active() const { return layout_ != nullptr; }
  bool has_grid() const { return grid_ != nullptr; }
  const parallel::ProcessGrid& grid() const;  // the job's grid (ValueError without one)
  // This rank's rows of inputs, targets and answer_targets (the batch itself when inactive).
  // On the device set_device named (run.device; the cpu by default).
  data::Batch shard(const data::Batch& batch) const;
  void set_device(Device device) { device_ = device; }
  // Positions, length and attention groups for Model::forward (the whole row when inactive).
  const parallel::SequenceShard& sequence_shard() const { return sequence_shard_; }
  // The replica's sequence ranks (null when inactive) and this rank's place among them.
  parallel::Group* sp_group() const { return sp_group_; }
  int sp_rank() const { return sp_rank_; }

 private:
  std::unique_ptr<parallel::ProcessGrid> grid_;  // sp_group_ and sequence_shard_ point into it
  std::shared_ptr<const parallel::SequenceLayout> layout_;
  int sp_rank_ = 0;
  parallel::Group* sp_group_ = nullptr;
  parallel::SequenceShard sequence_shard_;
  Device device_ = Device::cpu();
};

}  // namespace strand::train
