// The pretraining loop of `strand train` over parts built from the config (components.h):
// data- and sequence-parallel steps (architecture.md §2), gradient accumulation, gradient sums
// over every rank, clipping, warmup + decay, AdamW, periodic evaluation, metrics, checkpoints,
// exact resume, and a clean stop on SIGINT / SIGTERM. Note [Exact resume] in trainer.cpp says
// what makes a resumed run bit-identical to an uninterrupted one; Note [Trainer seams] below
// says where distillation and pruning plug in.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/io/run_dir.h"
#include "framework/optim/adamw.h"
#include "framework/optim/schedule.h"
#include "framework/train/components.h"
#include "framework/train/eval.h"
#include "framework/train/metrics.h"
#include "framework/train/run_log.h"
#include "framework/train/train_state.h"

namespace strand::parallel { class Group; class GradSync; }

namespace strand::train {
class DiskOffload;

// A run that cannot go on: gradients non-finite train.max_skipped_steps steps in a row, or
// weights or optimizer moments non-finite at a save.
struct DivergedError : Error { using Error::Error; };

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
  // Where rank 0's lines go (console and RUN_DIR/train.log, Note [train.log]); null: the trainer
  // makes its own on `out`. The CLI passes one so that its own lines land in train.log too.
  std::shared_ptr<RunLog> log;
  // Called on every rank after each step (tests use it to raise signals, bench to time steps).
  std::function<void(const StepReport&)> on_step;
};

struct TrainResult {
  int64_t start_step = 0;            // steps already done when run() began (resumed)
  int64_t end_step = 0;              // completed steps when run() returned
  int stop_signal = 0;               // SIGINT / SIGTERM that stopped the run early, or 0
  bool already_finished = false;     // resumed at or past train.steps: nothing to do
  std::string resumed_from;          // checkpoint file resumed from, or empty
  std::string checkpoint;            // last checkpoint written, or empty
  std::vector<StepReport> steps;     // every step this run() made
  std::optional<EvalResult> eval;    // the last evaluation
  int64_t eval_step = 0;             // the step it was made at
};

// One forward and backward over some micro-batches, summed over every rank.
struct GradientPass {
  double loss_sum = 0.0;      // summed token losses of every micro-batch and rank
  int64_t scored_tokens = 0;  // N, the tokens they score: the gradients hold sum / N
};

// What run() carries from one logged step to the next: the tok/s and eta of the next line.
struct LogInterval {
  double seconds = 0.0;
  int64_t steps = 0;
  int64_t tokens = 0;
  void add(const StepReport& report);
};

// Note [Trainer seams]
// run() is a short loop over named pieces: train_step (forward_backward, then the optimizer
// step), checkpoint_due / save_checkpoint (before the evaluation, so that a stop or failure in
// a long evaluation never costs the step), evaluate_if_due, log_due / log_step, and
// stop_requested_anywhere; each piece is a member a later job reuses instead of copying the loop.
// - Knowledge distillation (a frozen teacher, extra loss terms) derives from Trainer and
//   overrides micro_batch_loss: the teacher (built by models::build_model beside the parts,
//   in neither the optimizer nor the gradient sum) runs the same batch and shard under
//   autograd::NoGradGuard, and its terms are added to loss_sum, keeping the student's token
//   count (Note [Loss normalisation] in trainer.cpp then holds unchanged). Extra logged numbers
//   go in step_metrics; per-term sums are reset and reduced over ranks in begin_gradient_pass /
//   end_gradient_pass; state of its own (a learned projection) goes in add_checkpoint_groups
//   (framework/train/distill.h is that job).
// - Head pruning (a gate-gradient pass) calls forward_backward on its own loader, reads the
//   gates' gradients (summed over every rank, like every gradient), and zeroes them; a mask it
//   applies between steps goes in TrainerOptions::on_step.
class Trainer {
 public:
  // Runs the built parts (components.h; build_trainer_parts makes all of them from a config).
  // Resumes per checkpoint.resume when options.allow_resume (a checkpoint of another (dp, sp)
  // with the same global batch resumes).
  explicit Trainer(TrainerParts parts, TrainerOptions options = {});
  virtual ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Steps until train.steps (or a stop signal), with logging, evaluation and checkpoints.
  TrainResult run();

  // One optimizer step (grad_accum micro-batches); no logging or checkpoints.
  StepReport train_step();
  // Forward and backward over `micro_batches` batches of `loader`, each cut to this rank's
  // shard, with gradients summed over every rank and scaled by 1 / N (N: the tokens scored on
  // all ranks); no optimizer step, and the gradients stay for the caller.
  GradientPass forward_backward(data::Loader& loader, int64_t micro_batches);
  // Evaluation over train.eval_batches batches of the val split (every rank calls it); a stop
  // signal on any rank ends it between batches (`interrupted`).
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
  bool is_root() const { return ranks_.rank == 0; }
  int dp_rank() const { return ranks_.dp_rank; }
  const BatchSharder& sharder() const { return ranks_.sharder; }
  parallel::Group* group() const { return ranks_.group; }  // every rank of the job; null: one process

 protected:
  // The summed loss (and scored tokens) of one micro-batch, already cut to this rank's shard;
  // its backward gives the micro-batch's gradients. The default is the model's own objective.
  virtual models::LossOutput micro_batch_loss(const data::Batch& batch);
  // Called by forward_backward before its first micro-batch, and after the loss sums are
  // reduced over every rank (every rank calls both): a job with extra loss terms resets and
  // reduces its own sums here. The defaults do nothing.
  virtual void begin_gradient_pass() {}
  virtual void end_gradient_pass(const GradientPass& pass) { (void)pass; }
  const TrainingRanks& ranks() const { return ranks_; }
  // Rank 0 adds a job's own state (distillation's projection) to each checkpoint as extra
  // groups (io::CheckpointData::extra); the default adds none. The checkpoint resumed from, if
  // any, is resumed_from() (a job reads its groups back after the Trainer is built).
  virtual void add_checkpoint_groups(io::CheckpointData& data) const { (void)data; }
  const std::string& resumed_from() const { return resumed_from_; }

  // The pieces of run(), in the order it calls them.
  void log_run_start() const;                                // the model and data line; "resumed from"
  bool checkpoint_due(int64_t step) const;                   // every checkpoint.every steps
  std::optional<EvalResult> evaluate_if_due();               // every train.eval_every steps, and the last;
                                                             // none when a stop interrupted it
  bool log_due(int64_t step, bool evaluated) const;          // every train.log_every steps, the last, evals
  virtual StepMetrics step_metrics(const StepReport& report, const LogInterval& interval,
                                   const std::optional<EvalResult>& eval) const;
  void log_step(const StepReport& report, const std::optional<EvalResult>& eval, LogInterval& interval,
                MetricsLog& metrics) const;                  // metrics.jsonl line and console line
  bool stop_requested_anywhere() const;                      // a stop signal on any rank
  void finish_run(TrainResult& result, bool saved_this_step);  // last checkpoint, final line
  // Rank 0's hold on run.dir and checkpoint.dir for the run: locks, a writability probe, stale
  // temp files removed.
  std::vector<io::DirectoryLock> hold_run_dirs() const;
  // The keys whose values differ from the resumed checkpoint's config (old -> new), with a
  // warning when the run continues on other data or another seed.
  void report_config_changes(const std::string& path, const std::string& saved_yaml) const;
  void print_line(const std::string& line) const;            // rank 0: console and train.log
  // Rank 0's start of the files of the run: train.log opened, config.yaml written.
  void open_run_files();

 private:
  uint64_t parameter_fingerprint() const;
  DiskOffload* activation_offload();  // null unless memory.offload is disk

  std::unique_ptr<parallel::Watchdog> watchdog_;  // first: it outlives every part it watches
  Config config_;
  std::shared_ptr<models::Model> model_;
  TrainingRanks ranks_;
  std::unique_ptr<parallel::GradSync> grad_sync_;  // over ranks_.sum_group()
  std::unique_ptr<optim::AdamW> optimizer_;
  optim::LrSchedule schedule_;
  data::DataSpec data_spec_;
  std::unique_ptr<data::Loader> train_loader_;
  std::unique_ptr<data::Loader> val_loader_;  // made from data_spec_ on first use
  TrainerOptions options_;
  std::vector<Tensor> params_;  // the model's order: clipping and the fingerprint use it
  LoopState state_;
  std::string resumed_from_;
  int64_t skipped_in_a_row_ = 0;  // optimizer steps skipped for non-finite gradients, in a row
  std::shared_ptr<RunLog> log_;   // options_.log, or the trainer's own
  std::chrono::steady_clock::time_point run_started_;  // when run() began: elapsed time, eta
  int64_t run_start_step_ = 0;
  std::unique_ptr<DiskOffload> offload_;  // memory.offload: disk, made at the first step
};

// A Trainer of `model` with every other part built from the config (build_trainer_parts):
// what the CLI and the tests that have only a config and a model call. Collective over group.
Trainer make_trainer(Config config, std::shared_ptr<models::Model> model, parallel::Group* group = nullptr,
                     TrainerOptions options = {});

// The input tokens one optimizer step consumes over all ranks: batch_size * seq_len *
// grad_accum * dp (the sp ranks of a replica share its rows).
int64_t tokens_per_step(const Config& config);

}  // namespace strand::train
