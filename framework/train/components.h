// The parts a training run is made of, and the one place that builds each from the config
// (torchtitan's shape): the ranks (dp x sp grid and sequence layout), the data spec, the
// optimizer, the LR schedule and the gradient sum. The model's factory is models::build_model.
// The CLI builds the parts here and hands them to a Trainer (trainer.h); a later job that needs
// one more part (the frozen teacher of distillation) builds it beside these.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/optim/adamw.h"
#include "framework/optim/schedule.h"
#include "framework/train/sharding.h"
#include "models/model.h"
#include "parallel/grid.h"
#include "parallel/layout.h"

namespace strand::parallel {
class GradSync;
class Watchdog;
}  // namespace strand::parallel

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

// Checks that data.seq_len splits under the config's layout (a ConfigError, before any message
// is sent), then arranges `world` as dp x parallel.sp ranks (collective over world) and returns
// this rank's cut of the batches over that grid (inactive at sp = 1).
BatchSharder build_batch_sharder(const Config& config, parallel::Group& world, int64_t dp);

// The loader spec of a config for one data-parallel replica (data.*, model.vocab_size,
// run.seed). `val_override`, when set, replaces data.val (the --data of `strand eval`).
data::DataSpec data_spec_of(const Config& config, int64_t dp_rank, int64_t dp_size,
                            const std::string& val_override = "");

// The ranks of a training job and where this one sits among them.
struct TrainingRanks {
  parallel::Group* group = nullptr;  // every rank of the job; nullptr: one process
  int rank = 0;
  int world = 1;
  int dp_rank = 0;                   // the replica whose loader rows this rank reads
  BatchSharder sharder;              // grid with a group only; inactive at sp = 1
  // Without a group: the one-rank group the gradient sum runs over.
  std::unique_ptr<parallel::Group> local_group;

  // parallel.backend nccl (run.device cuda): the NCCL group over the same ranks.
  std::unique_ptr<parallel::Group> nccl_group;

  // Every rank of the job, or the one-rank group.
  parallel::Group& bootstrap_group() const { return group != nullptr ? *group : *local_group; }
  // The group gradients are summed over: the NCCL group when there is one, else bootstrap_group().
  parallel::Group& sum_group() const { return nccl_group != nullptr ? *nccl_group : bootstrap_group(); }
};

// A ConfigError unless parallel.dp x parallel.sp equals `world` ranks (naming the mpirun -np and
// the --set that fix it) and parallel.backend can run. No collective: every rank checks alike.
void check_job_size(const Config& config, int world);

// Checks that parallel.dp x parallel.sp equals the job's ranks and that the backend can run
// (check_job_size), then arranges `group` (nullptr: one process) as a ProcessGrid: replica d reads loader rows d
// of dp, and each of its sp ranks runs the rows of its layout (sequence_layout_of). Collective.
TrainingRanks build_training_ranks(const Config& config, parallel::Group* group);

// AdamW over the model's parameters in the model's order (train.lr, betas, weight_decay; the
// model says which decay). The clipping and the gradient sum use the same order.
std::unique_ptr<optim::AdamW> build_optimizer(const Config& config, const models::Model& model);

// Warmup then decay per train.schedule, from train.lr to train.min_lr over train.steps.
optim::LrSchedule build_schedule(const Config& config);

// Sums the model's gradients over `group` (every rank holds the whole model) in buckets of
// parallel.bucket_mb that start during the backward. Collective over group, which must
// outlive it.
std::unique_ptr<parallel::GradSync> build_grad_sync(const Config& config, const models::Model& model,
                                                    parallel::Group& group);

// Everything a Trainer runs. Members are declared so that each is destroyed before what it
// points into (the gradient sum before the ranks' groups).
struct TrainerParts {
  // Started first, so that it also watches the collectives that build the other parts.
  std::unique_ptr<parallel::Watchdog> watchdog;  // parallel.timeout_s; idle on one rank
  Config config;
  std::shared_ptr<models::Model> model;
  TrainingRanks ranks;
  std::unique_ptr<parallel::GradSync> grad_sync;  // over ranks.sum_group()
  std::unique_ptr<optim::AdamW> optimizer;
  optim::LrSchedule schedule;
  data::DataSpec data;                            // this replica's rows of train and val
  std::unique_ptr<data::Loader> train_loader;     // the val loader is made from `data` when first used

  TrainerParts();
  TrainerParts(TrainerParts&&) noexcept;
  TrainerParts& operator=(TrainerParts&&) noexcept;
  ~TrainerParts();
};

// Lower bounds of what one rank holds for a config: no rank can run it in less, so a config
// above the machine's memory is refused before anything is allocated (a bad_alloc, or the
// kernel's OOM killer, would say much less).
struct MemoryEstimate {
  double parameters = 0;        // the attention and MLP matrices and the embeddings
  double state_bytes = 0;       // parameters in fp32, with gradients and AdamW moments when training
  double activation_bytes = 0;  // per layer at least its input and its MLP hidden, for this rank's rows
  double total() const { return state_bytes + activation_bytes; }
};
MemoryEstimate estimate_memory(const Config& config, bool training);
// The machine's physical memory in bytes.
double machine_memory_bytes();
// A ConfigError naming the keys that dominate when `ranks_here` ranks on this machine, each
// holding estimate_memory(config, training).total(), exceed its `available` bytes.
void check_memory_fits(const Config& config, bool training, double available = machine_memory_bytes(),
                       int ranks_here = 1);

// This process's launch environment as YAML lines under "launch:": the subcommand, the working
// directory (relative paths in the config resolve against it) and every STRAND_* variable.
std::string launch_environment();

// Every rank of `group` holds the same resolved config and launch environment, or a
// ConfigError on each rank that differs names the first differing key and both values
// (collective; compares a hash first).
void check_ranks_agree(const Config& config, parallel::Group& group);

// Builds every part for `model` with the factories above, in the order the ranks must agree
// on (the grid, then the gradient sum: both collective). Refuses what training cannot run yet
// (precision.compute other than fp32) with a ConfigError naming the key.
TrainerParts build_trainer_parts(Config config, std::shared_ptr<models::Model> model,
                                 parallel::Group* group = nullptr);

}  // namespace strand::train
