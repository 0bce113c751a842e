// `strand train CONFIG [--set key=value ...]`: language-model pretraining (framework/train).
// Exit status: 0 when the run reaches train.steps, and also after SIGINT / SIGTERM / SIGHUP once
// the checkpoint of the current step is saved (running the same command resumes it; under
// mpirun, mpirun itself still exits non-zero after forwarding a signal, as Open MPI does); 141
// (128 + SIGPIPE, as a shell reports a process the signal ended) after a closed stdout, also
// once the checkpoint is saved; non-zero after an error, which is one line
// "strand: error: ..." on stderr.
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/train/components.h"
#include "framework/train/metrics.h"
#include "framework/train/trainer.h"
#include "launch/commands.h"
#include "models/model.h"
#include "parallel/comm/group.h"

namespace strand::launch {

namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  double peak_tflops = 0.0;
  bool quiet_config = false;
};

int g_exit_status = 0;

void run_train(const TrainArgs& args, parallel::Group& world) {
  const train::Config config = train::load_config(args.config, args.overrides);
  try {
    // Before the first allocation; the ranks on this machine share its memory.
    train::check_memory_fits(config, true, train::machine_memory_bytes(), parallel::ranks_on_this_machine(world));
  } catch (const train::ConfigError& e) {
    throw train::ConfigError(args.config + ": " + e.what());
  }
  const bool root = world.rank() == 0;
  if (root && !args.quiet_config) {
    std::printf("strand train %s (%d %s)\n--- resolved config\n%s---\n", args.config.c_str(), world.size(),
                world.size() == 1 ? "rank" : "ranks", train::to_yaml(config).c_str());
    std::fflush(stdout);
  }
  train::TrainerOptions options;
  options.peak_flops = train::peak_flops_per_rank(args.peak_tflops);
  std::unique_ptr<train::Trainer> trainer;
  try {
    // The model and the parts built from the config (framework/train/components.h).
    trainer = std::make_unique<train::Trainer>(train::build_trainer_parts(config, models::build_model(config), &world),
                                               options);
  } catch (const train::ConfigError& e) {
    // Cross-section rules checked by the model and trainer: name the file they came from.
    throw train::ConfigError(args.config + ": " + e.what());
  }
  const train::TrainResult result = trainer->run();
  // Whoever read stdout is gone: the run is saved, but the pipeline failed.
  if (result.stop_signal == SIGPIPE) g_exit_status = 128 + SIGPIPE;
  // The final line reads the evaluation of the last step (a stopped run has none).
  if (root && result.eval && result.eval_step == result.end_step) {
    const train::EvalResult& e = *result.eval;
    if (e.score) {
      std::printf("final: step %lld, val loss %.4f, task accuracy %.1f%% of answer tokens (chance %.1f%%), "
                  "%.1f%% of rows exact\n",
                  static_cast<long long>(result.end_step), e.loss(), 100.0 * e.score->token_accuracy(),
                  100.0 * train::chance_accuracy(config).value_or(0.0), 100.0 * e.score->row_accuracy());
    } else {
      std::printf("final: step %lld, val loss %.4f\n", static_cast<long long>(result.end_step), e.loss());
    }
    std::fflush(stdout);
  }
}

}  // namespace

int train_exit_status() { return g_exit_status; }

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Pretrain a model as the config describes (resumes per checkpoint.resume)");
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
