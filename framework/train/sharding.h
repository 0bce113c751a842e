// How the ranks of a job share each sequence: the config's layout and Ulysses degree, the cut of
// a batch into one sequence-parallel rank's rows, and the grid that training and evaluation both
// set up from the config.
#pragma once
#include <cstdint>
#include <memory>

#include "data/loader.h"
#include "framework/config/config.h"
#include "models/model.h"
#include "parallel/grid.h"
#include "parallel/layout.h"

namespace strand::train {

// The run configuration's types (framework/config) read as train's own: train is the layer above.
using namespace strand::config;

// The sequence layout of a config (parallel.sp, sp_mode, ulysses_degree, resolved layout,
// data.seq_len): make(kind, N, sp) for ring and Ulysses, hybrid(kind, N, sp / u, u) for hybrid.
// A seq_len that does not split is a ConfigError naming data.seq_len, the layout and the
// lengths that do.
parallel::SequenceLayout sequence_layout_of(const Config& config);

// The Ulysses group size of the config's sp_mode: 1 (ring), sp (ulysses) or ulysses_degree.
int ulysses_degree_of(const Config& config);

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

// What training and evaluation set up over the job's ranks: the dp x sp grid and this rank's
// cut of the batches.
struct SequenceParallelSetup {
  std::unique_ptr<parallel::ProcessGrid> grid;
  SequenceSharding sharding;  // inactive at sp = 1; points into *grid
};

// Checks that data.seq_len splits under the config's layout (a ConfigError, before any message
// is sent), then arranges `world` as dp x parallel.sp ranks (collective over world).
SequenceParallelSetup setup_sequence_parallel(const Config& config, parallel::Group& world, int64_t dp);

}  // namespace strand::train
