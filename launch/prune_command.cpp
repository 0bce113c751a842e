// `strand prune CONFIG --checkpoint BASE.h5 [--set key=value ...]`: attention-head pruning
// (framework/train/prune.h) of a trained checkpoint, under mpirun like `strand train`: rounds of
// scoring, physical removal and fine-tuning, each round's checkpoint in RUN_DIR/round_R, and
// RUN_DIR/prune_report.{json,md} after every round. An error is one line "strand: error: ...".
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/io/checkpoint.h"
#include "framework/train/components.h"
#include "framework/train/prune.h"
#include "framework/train/pruned_heads.h"
#include "framework/train/run_log.h"
#include "launch/commands.h"
#include "models/model.h"
#include "parallel/comm/group.h"
#include "parallel/comm/launcher.h"

namespace strand::launch {

namespace {

struct PruneArgs {
  std::string config;
  std::string checkpoint;
  std::vector<std::string> overrides;
};

void run_prune_command(const PruneArgs& args, parallel::Group& world) {
  train::Config config;
  io::CheckpointData base;
  const int ranks_here = parallel::ranks_on_this_machine(world);
  parallel::agree_on_errors(world, [&] {
    config = train::load_config(args.config, args.overrides);
    try {
      train::check_memory_fits(config, true, train::machine_memory_bytes(), ranks_here);
      train::check_job_size(config, world.size());
      if (config.parallel.sp > 1) (void)train::sequence_layout_of(config);
      STRAND_CHECK(config.model.arch == train::Arch::Gpt, train::ConfigError, "key 'model.arch': ",
                   train::name_of(config.model.arch), " cannot be pruned yet (strand prune prunes gpt)");
      STRAND_CHECK(config.precision.compute == train::ComputePrecision::Fp32, train::ConfigError,
                   "key 'precision.compute': strand prune scores heads in fp32 only, got ",
                   train::name_of(config.precision.compute));
    } catch (const train::ConfigError& e) {
      throw train::ConfigError(args.config + ": " + e.what());
    }
    base = io::read_checkpoint(args.checkpoint);
    train::Config with_heads = config;
    train::adopt_pruned_heads(with_heads, base);  // its heads fit the config's model and layout
    io::load_into(models::build_model(with_heads)->named_parameters(), base);  // names and shapes
  });
  const bool root = world.rank() == 0;
  auto log = std::make_shared<train::RunLog>(root ? stdout : nullptr);
  log->line(detail::concat("strand prune ", args.config, " --checkpoint ", args.checkpoint, " (", world.size(),
                           world.size() == 1 ? " rank)" : " ranks)"));
  log->line("run dir: " + config.run.dir + " (round_R/ per round, prune_report.json, prune_report.md)");
  const std::vector<train::PruneRound> rounds = train::run_prune(config, base, &world, {log, true});
  if (root) {
    const train::PruneRound& first = rounds.front();
    const train::PruneRound& last = rounds.back();
    std::printf("final: %lld -> %lld parameters, val loss %.4f -> %.4f; report %s\n",
                static_cast<long long>(first.parameters), static_cast<long long>(last.parameters), first.val_loss,
                last.val_loss, (std::filesystem::path(config.run.dir) / "prune_report.md").c_str());
    std::fflush(stdout);
  }
}

}  // namespace

void add_prune_command(CLI::App& app) {
  auto args = std::make_shared<PruneArgs>();
  CLI::App* cmd = app.add_subcommand("prune", "Prune attention heads of a checkpoint (prune.*), fine-tuning per round");
  cmd->add_option("config", args->config, "YAML config (model, data, train.* for fine-tuning, prune.*)")->required();
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint to prune (.h5; a pruned one prunes further)")
      ->required();
  cmd->add_option("--set", args->overrides, "Override a key: --set prune.heads_fraction=0.3 (repeatable)")
      ->allow_extra_args(false)
      ->take_all();
  // Errors propagate to main, whose guarded runner prints the one line and ends every rank.
  cmd->callback([args]() { run_prune_command(*args, parallel::world()); });
}

}  // namespace strand::launch
