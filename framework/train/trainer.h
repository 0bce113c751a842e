// The pretraining loop of `strand train`: data- and sequence-parallel steps (architecture.md §2),
// gradient accumulation, gradient sums over every rank, clipping, warmup + decay, AdamW,
// periodic evaluation, metrics, checkpoints, exact resume, and a clean stop on SIGINT / SIGTERM. Note [Exact resume] in trainer.cpp says what makes a
// resumed run bit-identical to an uninterrupted one.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/optim/adamw.h"
#include "framework/optim/schedule.h"
#include "framework/train/eval.h"
#include "framework/train/metrics.h"
#include "framework/train/train_state.h"

namespace strand::models { class Model; }
namespace strand::parallel { class Group; class GradSync; class ProcessGrid; }

namespace strand::train {

// The run configuration's types (framework/config) read as train's own: train is the layer above.
using namespace strand::config;

// One completed optimizer step, as every rank sees it.
struct StepReport {
  int64_t step = 0;        // completed steps after this one (1 for the first)
  double loss = 0.0;       // mean over the scored tokens of all micro-batches and ranks
  double lr = 0.0;
  double grad_norm = 0.0;  // global L2 norm before clipping
  int64_t tokens = 0;      // input tokens of all ranks in this step
  int64_t scored_tokens = 0;
  double seconds = 0.0;    // wall time of the step
  bool skipped = false;    // non-finite gradients: the optimizer step was skipped
};

struct TrainerOptions {
  double peak_flops = 0.0;   // peak FLOP/s of one rank for MFU; 0: MFU not reported
  bool write_files = true;   // metrics.jsonl and checkpoints (rank 0 only); bench: false
  bool allow_resume = true;  // honour checkpoint.resume; bench: false (always a fresh start)
  bool print = true;         // rank 0 prints the log lines
  bool final_eval = true;    // evaluate once more after the last step when there is a val split
  std::FILE* out = stdout;
  // Called on every rank after each step (tests use it to raise signals, bench to time steps).
  std::function<void(const StepReport&)> on_step;
};

struct TrainResult {
  int64_t start_step = 0;            // steps already done when run() began (resumed)
  int64_t end_step = 0;              // completed steps when run() returned
  int stop_signal = 0;               // SIGINT / SIGTERM that stopped the run early, or 0
  std::string resumed_from;          // checkpoint file resumed from, or empty
  std::string checkpoint;            // last checkpoint written, or empty
  std::vector<StepReport> steps;     // every step this run() made
  std::optional<EvalResult> eval;    // the last evaluation
  int64_t eval_step = 0;             // the step it was made at
};

class Trainer {
 public:
  // `group` is every rank of the job (nullptr: one process); parallel.dp x parallel.sp must
  // equal its size. It is arranged as a ProcessGrid (parallel/grid.h): replica d reads loader
  // rows d of dp, and each of its sp ranks runs the rows of its layout (sequence_layout_of).
  // Collective over the group. Builds the optimizer, schedule and loaders, and resumes per
  // checkpoint.resume (a checkpoint of another (dp, sp) with the same global batch resumes).
  Trainer(Config config, std::shared_ptr<models::Model> model, parallel::Group* group = nullptr,
          TrainerOptions options = {});
  ~Trainer();

  // Steps until train.steps (or a stop signal), with logging, evaluation and checkpoints.
  TrainResult run();

  // One optimizer step (grad_accum micro-batches); no logging or checkpoints.
  StepReport train_step();
  // Evaluation over train.eval_batches batches of the val split (every rank calls it).
  EvalResult evaluate_val();
  // Writes the checkpoint of the current step (rank 0 writes; others return the same path).
  std::string save_checkpoint();
  // Loads a checkpoint written by a run of the same model and data geometry.
  void restore(const std::string& path);

  int64_t step() const { return state_.step; }
  const LoopState& state() const { return state_; }
  const Config& config() const { return config_; }
  models::Model& model() { return *model_; }
  const optim::AdamW& optimizer() const { return *optimizer_; }
  bool is_root() const { return rank_ == 0; }
  int dp_rank() const { return dp_rank_; }
  const SequenceSharding& sharding() const { return sharding_; }

 private:
  void print_line(const std::string& line) const;
  bool stop_requested_anywhere() const;
  uint64_t parameter_fingerprint() const;

  Config config_;
  std::shared_ptr<models::Model> model_;
  parallel::Group* group_ = nullptr;
  TrainerOptions options_;
  int rank_ = 0, world_ = 1;
  std::unique_ptr<parallel::ProcessGrid> grid_;  // with a group only
  int dp_rank_ = 0;
  SequenceSharding sharding_;                    // inactive at sp = 1
  std::vector<Tensor> params_;
  std::unique_ptr<parallel::Group> local_group_;  // without a group: the one-rank group GradSync runs over
  std::unique_ptr<parallel::GradSync> grad_sync_;
  std::unique_ptr<optim::AdamW> optimizer_;
  optim::LrSchedule schedule_;
  std::unique_ptr<data::Loader> train_loader_;
  std::unique_ptr<data::Loader> val_loader_;  // built on first use
  LoopState state_;
  std::string resumed_from_;
};

// The input tokens one optimizer step consumes over all ranks: batch_size * seq_len *
// grad_accum * dp (the sp ranks of a replica share its rows).
int64_t tokens_per_step(const Config& config);

}  // namespace strand::train
