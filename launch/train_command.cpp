// `strand train CONFIG [--set key=value ...]`: language-model pretraining (framework/train).
// Rank 0's lines go to the console and to RUN_DIR/train.log (Note [train.log] in
// framework/train/run_log.h); the first ones name the run dir, the metrics file and the
// checkpoint dir, then comes the resolved config (printed once every rank validated it).
// Exit status: 0 when the run reaches train.steps, also when it had reached them before (the
// rerun says so and trains nothing: a script may rerun until done), and after SIGINT / SIGTERM /
// SIGHUP once the checkpoint of the current step is saved (running the same command resumes it; under
// mpirun, mpirun itself still exits non-zero after forwarding a signal, as Open MPI does); 141
// (128 + SIGPIPE, as a shell reports a process the signal ended) after a closed stdout, also
// once the checkpoint is saved; non-zero after an error, which is one line
// "strand: error: ..." on stderr.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/train/components.h"
#include "framework/train/metrics.h"
#include "framework/train/placement.h"
#include "framework/train/pruned_heads.h"
#include "framework/train/run_log.h"
#include "framework/train/trainer.h"
#include "launch/commands.h"
#include "models/model.h"
#include "parallel/comm/group.h"
#include "parallel/comm/launcher.h"

namespace strand::launch {

namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  double peak_tflops = 0.0;
  bool quiet_config = false;
  std::string command = "train";  // the subcommand: train, or a job built on the trainer (distill)
  TrainingJob job;                // how that job makes its Trainer; empty for train
};

int g_exit_status = 0;

// The run itself, once the config is validated and its header printed.
void train_with_log(const TrainArgs& args, train::Config config, std::shared_ptr<models::Model> model,
                    double peak_flops, parallel::Group& world, const std::shared_ptr<train::RunLog>& log) {
  train::TrainerOptions options;
  options.peak_flops = peak_flops;
  options.log = log;
  std::unique_ptr<train::Trainer> trainer;
  try {
    // The parts built from the config (framework/train/components.h).
    train::TrainerParts parts = train::build_trainer_parts(config, std::move(model), &world);
    trainer = args.job.make ? args.job.make(std::move(parts), options)
                            : std::make_unique<train::Trainer>(std::move(parts), options);
  } catch (const train::ConfigError& e) {
    throw train::ConfigError(args.config + ": " + e.what());
  }
  const train::TrainResult result = trainer->run();
  // Whoever read stdout is gone: the run is saved, but the pipeline failed.
  if (result.stop_signal == SIGPIPE) g_exit_status = 128 + SIGPIPE;
  // The final line reads the evaluation of the last step (a stopped run has none).
  if (world.rank() == 0 && result.eval && result.eval_step == result.end_step) {
    const train::EvalResult& e = *result.eval;
    char line[256];
    if (e.score) {
      std::snprintf(line, sizeof line,
                    "final: step %lld, val loss %.4f, task accuracy %.1f%% of answer tokens (chance %.1f%%), "
                    "%.1f%% of rows exact",
                    static_cast<long long>(result.end_step), e.loss(), 100.0 * e.score->token_accuracy(),
                    100.0 * train::chance_accuracy(config).value_or(0.0), 100.0 * e.score->row_accuracy());
    } else {
      std::snprintf(line, sizeof line, "final: step %lld, val loss %.4f", static_cast<long long>(result.end_step),
                    e.loss());
    }
    log->line(line);
  }
}

void run_train(const TrainArgs& args, parallel::Group& world) {
  // Checks every rank makes alike, with no message between ranks, agreed on before anything is
  // printed: one error line for the job (Note [One error line per job], parallel/comm/launcher.h).
  train::Config config;
  std::shared_ptr<models::Model> model;
  double peak_flops = 0.0;
  // Collective, so outside the checks below: the ranks on this machine share its memory.
  const int ranks_here = parallel::ranks_on_this_machine(world);
  parallel::agree_on_errors(world, [&] {
    config = train::load_config(args.config, args.overrides);
    peak_flops = train::peak_flops_per_rank(args.peak_tflops);
    try {
      train::check_memory_fits(config, true, train::machine_memory_bytes(), ranks_here);  // before allocating
      train::check_job_size(config, world.size());
      train::check_device(config);  // run.device: cuda without a GPU is one error line of the job
      if (config.parallel.sp > 1) (void)train::sequence_layout_of(config);
      train::adopt_resumed_heads(config);  // resuming a pruned checkpoint: its heads per layer
      if (args.job.check) args.job.check(config);
      model = models::build_model(config);
    } catch (const train::ConfigError& e) {
      // Cross-section rules checked by the model and trainer: name the file they came from.
      throw train::ConfigError(args.config + ": " + e.what());
    }
  });
  const bool root = world.rank() == 0;
  // A closed stdout must not end the process before the trainer saves: with SIGPIPE ignored a
  // write fails with EPIPE, which the log takes as a stop request (Note [train.log]).
  std::signal(SIGPIPE, SIG_IGN);
  auto log = std::make_shared<train::RunLog>(root ? stdout : nullptr);
  const std::string run_dir = config.run.dir;
  log->line(detail::concat("strand ", args.command, " ", args.config, " (", world.size(), world.size() == 1 ? " rank)" : " ranks)"));
  log->line("run dir:     " + run_dir + " (train.log, config.yaml)");
  log->line("metrics:     " + (std::filesystem::path(run_dir) / "metrics.jsonl").string());
  log->line("checkpoints: " + config.checkpoint.dir);
  if (!args.quiet_config) log->line("--- resolved config\n" + train::to_yaml(config) + "---");
  try {
    train_with_log(args, std::move(config), std::move(model), peak_flops, world, log);
  } catch (const std::exception& e) {
    // main prints the error; train.log keeps it too.
    if (root) log->file_line(parallel::error_line(e.what(), world.rank(), world.size()));
    throw;
  }
}

}  // namespace

int train_exit_status() { return g_exit_status; }

void add_train_command(CLI::App& app) {
  TrainingJob train;
  // distill.* configures `strand distill`; train would ignore it silently.
  train.check = [](const train::Config& config) {
    if (!config.distill.teacher.empty())
      throw train::ConfigError("key 'distill.teacher': is read by strand distill only; run `strand distill` or "
                               "remove the key");
  };
  add_training_command(app, "train", "Pretrain a model as the config describes (resumes per checkpoint.resume)",
                       std::move(train));
}

void add_training_command(CLI::App& app, const std::string& name, const std::string& help, TrainingJob job) {
  auto args = std::make_shared<TrainArgs>();
  args->command = name;
  args->job = std::move(job);
  CLI::App* cmd = app.add_subcommand(name, help);
  cmd->add_option("config", args->config, "YAML config (docs/config.md)")->required();
  cmd->add_option("--set", args->overrides, "Override a key: --set train.lr=1e-3 (repeatable)")
      ->allow_extra_args(false)
      ->take_all();
  cmd->add_option("--peak-tflops", args->peak_tflops,
                  "Peak TFLOP/s of one rank, for MFU (default: $STRAND_PEAK_FLOPS in FLOP/s, else no MFU)")
      ->check(positive());
  cmd->add_flag("--quiet-config", args->quiet_config, "Do not print the resolved config at start");
  // Errors propagate to main, whose guarded runner prints the one line and ends every rank.
  cmd->callback([args]() { run_train(*args, parallel::world()); });
}

}  // namespace strand::launch
