// The factories that turn a config into the parts of a training run.
#include "framework/train/components.h"

#include <optional>
#include <utility>
#include <vector>

#include "framework/core/error.h"
#include "parallel/comm/backends.h"
#include "parallel/comm/group.h"
#include "parallel/grad_sync.h"

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

BatchSharder build_batch_sharder(const Config& config, parallel::Group& world, int64_t dp) {
  const int64_t sp = config.parallel.sp;
  std::optional<parallel::SequenceLayout> layout;
  if (sp > 1) layout = sequence_layout_of(config);
  auto grid = std::make_unique<parallel::ProcessGrid>(world, static_cast<int>(dp), static_cast<int>(sp),
                                                      ulysses_degree_of(config));
  return BatchSharder(std::move(grid), std::move(layout));
}

data::DataSpec data_spec_of(const Config& config, int64_t dp_rank, int64_t dp_size, const std::string& val_override) {
  data::DataSpec spec;
  spec.format = config.data.format;
  if (!config.data.train.empty()) spec.train = {config.data.train};
  if (!val_override.empty()) {
    spec.val = {val_override};
  } else if (!config.data.val.empty()) {
    spec.val = {config.data.val};
  }
  spec.task = config.data.task;
  spec.seq_len = config.data.seq_len;
  spec.batch_size = config.data.batch_size;
  spec.vocab_size = config.model.vocab_size;
  spec.seed = static_cast<uint64_t>(config.run.seed);
  spec.dp_rank = dp_rank;
  spec.dp_size = dp_size;
  return spec;
}

TrainingRanks build_training_ranks(const Config& config, parallel::Group* group) {
  TrainingRanks ranks;
  ranks.group = group;
  if (group != nullptr) {
    ranks.rank = group->rank();
    ranks.world = group->size();
  }
  const int world = ranks.world;
  const ParallelConfig& par = config.parallel;
  STRAND_CHECK(par.dp * par.sp == world, train::ConfigError, "key 'parallel.dp': dp x sp = ", par.dp, " x ", par.sp,
               " = ", par.dp * par.sp, " ranks, but the job has ", world, " (run with mpirun -np ", par.dp * par.sp,
               world % par.sp == 0 ? detail::concat(", or --set parallel.dp=", world / par.sp) : std::string(), ")");
  // NCCL moves device buffers; until the ops run on CUDA a model lives on the cpu, so the
  // backend would only add two copies per message. Refused rather than silently ignored.
  STRAND_CHECK(par.backend == CommBackend::Mpi, train::ConfigError,
               "key 'parallel.backend': nccl needs GPU ranks, and models run on the cpu in this version",
               parallel::built_with_nccl() ? "" : " (this build has no NCCL either)", "; use mpi");
  if (group != nullptr) {
    ranks.sharder = build_batch_sharder(config, *group, par.dp);
    ranks.dp_rank = ranks.sharder.grid().dp_rank();
  } else {
    ranks.local_group = parallel::make_local_group();
  }
  return ranks;
}

std::unique_ptr<optim::AdamW> build_optimizer(const Config& config, const models::Model& model) {
  std::vector<optim::AdamWParam> params;
  for (const auto& [name, param] : model.named_parameters()) params.push_back({name, param, model.decays(name)});
  optim::AdamWOptions adam;
  adam.lr = config.train.lr;
  adam.beta1 = config.train.betas[0];
  adam.beta2 = config.train.betas[1];
  adam.weight_decay = config.train.weight_decay;
  return std::make_unique<optim::AdamW>(std::move(params), adam);
}

optim::LrSchedule build_schedule(const Config& config) {
  const TrainConfig& tc = config.train;
  return optim::LrSchedule::make(tc.lr, tc.min_lr, tc.warmup_steps, tc.steps, tc.schedule);
}

std::unique_ptr<parallel::GradSync> build_grad_sync(const Config& config, const models::Model& model,
                                                    parallel::Group& group) {
  std::vector<Tensor> params;
  for (const auto& named : model.named_parameters()) params.push_back(named.second);
  return std::make_unique<parallel::GradSync>(std::move(params), group, config.parallel.bucket_mb << 20);
}

TrainerParts::TrainerParts() = default;
TrainerParts::TrainerParts(TrainerParts&&) noexcept = default;
TrainerParts& TrainerParts::operator=(TrainerParts&&) noexcept = default;
TrainerParts::~TrainerParts() = default;

TrainerParts build_trainer_parts(Config config, std::shared_ptr<models::Model> model, parallel::Group* group) {
  STRAND_CHECK(model != nullptr, ValueError, "Trainer: no model");
  TrainerParts parts;
  parts.ranks = build_training_ranks(config, group);
  STRAND_CHECK(config.precision.compute == ComputePrecision::Fp32, train::ConfigError,
               "key 'precision.compute': only fp32 training is available yet, got ", name_of(config.precision.compute));
  // Gradients are summed over every rank (dp x sp: each holds the whole model). Collective.
  parts.grad_sync = build_grad_sync(config, *model, parts.ranks.sum_group());
  parts.optimizer = build_optimizer(config, *model);
  parts.schedule = build_schedule(config);
  parts.data = data_spec_of(config, parts.ranks.dp_rank, config.parallel.dp);
  parts.train_loader = data::make_loader(parts.data, data::Split::train);
  parts.model = std::move(model);
  parts.config = std::move(config);
  return parts;
}

}  // namespace strand::train
