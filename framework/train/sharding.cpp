// The config's sequence layout, the cut of a batch into one sequence-parallel rank's rows, and
// the grid set up from the config.
#include "framework/train/sharding.h"

#include <optional>

#include "framework/core/error.h"

namespace strand::train {

int ulysses_degree_of(const Config& config) {
  const ParallelConfig& par = config.parallel;
  switch (par.sp_mode) {
    case SpMode::Ring: return 1;
    case SpMode::Ulysses: return static_cast<int>(par.sp);
    case SpMode::Hybrid: return static_cast<int>(par.ulysses_degree);
  }
  return 1;
}

parallel::SequenceLayout sequence_layout_of(const Config& config) {
  const ParallelConfig& par = config.parallel;
  const SeqLayout resolved = resolved_layout(config);
  const parallel::LayoutKind kind =
      resolved == SeqLayout::Zigzag ? parallel::LayoutKind::Zigzag : parallel::LayoutKind::Contiguous;
  const int sp = static_cast<int>(par.sp), u = ulysses_degree_of(config);
  try {
    if (par.sp_mode == SpMode::Hybrid) return parallel::SequenceLayout::hybrid(kind, config.data.seq_len, sp / u, u);
    return parallel::SequenceLayout::make(kind, config.data.seq_len, sp);
  } catch (const ValueError& e) {
    throw ConfigError(detail::concat("key 'data.seq_len': ", config.data.seq_len, " does not split under parallel.layout ",
                                     name_of(resolved), ", sp_mode ", name_of(par.sp_mode), ", sp ", sp,
                                     par.sp_mode == SpMode::Hybrid ? detail::concat(", ulysses_degree ", u) : "",
                                     ": ", e.what()));
  }
}

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

SequenceParallelSetup setup_sequence_parallel(const Config& config, parallel::Group& world, int64_t dp) {
  const int64_t sp = config.parallel.sp;
  std::optional<parallel::SequenceLayout> layout;
  if (sp > 1) layout = sequence_layout_of(config);
  SequenceParallelSetup setup;
  setup.grid = std::make_unique<parallel::ProcessGrid>(world, static_cast<int>(dp), static_cast<int>(sp),
                                                       ulysses_degree_of(config));
  if (layout) setup.sharding = SequenceSharding(*setup.grid, std::move(*layout));
  return setup;
}

}  // namespace strand::train
