// `strand eval CONFIG --checkpoint CKPT [--data PATH] [--attention-precision int8]`: mean loss
// (and task accuracy) of a checkpoint over train.eval_batches batches of the validation data, as
// one JSON line; under mpirun with parallel.sp > 1 each sequence is split over sp ranks as in
// training. With int8, attention takes its scores in INT8 (ops::Int8AttentionScope).
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/core/json.h"
#include "framework/core/progress.h"
#include "framework/io/checkpoint.h"
#include "framework/ops/attention_contract.h"
#include "framework/train/components.h"
#include "framework/train/eval.h"
#include "framework/train/pruned_heads.h"
#include "launch/commands.h"
#include "models/model.h"
#include "parallel/comm/group.h"
#include "parallel/comm/launcher.h"
#include "parallel/grid.h"

namespace strand::launch {

namespace {

struct EvalArgs {
  std::string config;
  std::string checkpoint;
  std::string data;
  std::vector<std::string> overrides;
  std::string attention_precision = "fp32";  // or int8: inference attention with INT8 scores
  int64_t batches = 0;
};

void run_eval(const EvalArgs& args, parallel::Group& world) {
  // Checks every rank makes alike, with no message between ranks: one error line for the job
  // (Note [One error line per job], parallel/comm/launcher.h).
  train::Config config;
  io::CheckpointData ckpt;
  std::shared_ptr<models::Model> model;
  // Collective, so outside the checks below: the ranks on this machine share its memory.
  const int ranks_here = parallel::ranks_on_this_machine(world);
  parallel::agree_on_errors(world, [&] {
    config = train::load_config(args.config, args.overrides);
    if (args.batches > 0) config.train.eval_batches = args.batches;
    STRAND_CHECK(!args.data.empty() || train::has_val_split(config), ValueError, args.config,
                 ": key 'data.val': no validation data; set it or pass --data PATH");
    // A synthetic task makes its own rows: a data file would be silently unused.
    STRAND_CHECK(args.data.empty() || config.data.format != train::DataFormat::Synthetic, ValueError,
                 "--data ", args.data, ": ", args.config, " has data.format synthetic, which reads no files (drop "
                 "--data, or set data.format to bin or hdf5)");
    // The ranks form world / sp replicas of parallel.sp sequence ranks (parallel.dp is not
    // needed: any number of replicas evaluates).
    STRAND_CHECK(world.size() % config.parallel.sp == 0, train::ConfigError, args.config, ": key 'parallel.sp': ",
                 config.parallel.sp, " sequence ranks do not divide the job's ", world.size(),
                 " ranks (run with mpirun -np ", config.parallel.sp, ", or --set parallel.sp=", world.size(), ")");

    train::check_memory_fits(config, false, train::machine_memory_bytes(), ranks_here);  // before allocating
    ckpt = io::read_checkpoint(args.checkpoint);
    train::adopt_pruned_heads(config, ckpt);  // a pruned checkpoint's heads per layer
    model = models::build_model(config);
    io::load_into(model->named_parameters(), ckpt);
  });

  // Each replica reads its own rows (the data-parallel row rule), each sp rank its shard of
  // them; sums are all-reduced.
  const int64_t sp = config.parallel.sp;
  const int64_t dp = world.size() / sp;
  train::BatchSharder sharder;
  try {
    sharder = train::build_batch_sharder(config, world, dp);
  } catch (const train::ConfigError& e) {
    throw train::ConfigError(args.config + ": " + e.what());
  }
  const parallel::ProcessGrid& grid = sharder.grid();
  const data::DataSpec spec = train::data_spec_of(config, grid.dp_rank(), dp, args.data);
  const std::unique_ptr<data::Loader> loader = data::make_loader(spec, data::Split::val);
  // Rank 0 shows how far the batches are (every rank runs as many).
  ProgressOptions shown;
  shown.label = "eval";
  shown.unit = "batches";
  if (world.rank() != 0) shown.mode = ProgressMode::Off;
  std::optional<Progress> progress;
  const ops::Int8AttentionScope attention_precision(args.attention_precision == "int8");
  const train::EvalResult result =
      train::evaluate(*model, *loader, config.train.eval_batches, &world, sharder, {}, [&](int64_t done, int64_t all) {
        if (!progress) {
          shown.total = all;
          progress.emplace(shown);
        }
        progress->update(done);
      });
  if (progress) progress->finish();

  if (world.rank() == 0) {
    const auto step = ckpt.trainer.int64s.find("step");
    std::printf("{\"checkpoint\": %s, \"step\": %lld, \"data\": %s, %s}\n", json_string(args.checkpoint).c_str(),
                static_cast<long long>(step != ckpt.trainer.int64s.end() && !step->second.empty() ? step->second[0] : -1),
                json_string(loader->describe()).c_str(), train::eval_json_fields(result).c_str());
    std::fflush(stdout);
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate a checkpoint: one JSON line with loss (and task accuracy)");
  cmd->add_option("config", args->config, "YAML config of the model and data")->required();
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint file (.h5)")->required();
  cmd->add_option("--data", args->data, "Validation data (path or glob; format from data.format) instead of data.val");
  cmd->add_option("--batches", args->batches, "Batches per rank (default: train.eval_batches)")
      ->check(positive());
  cmd->add_option("--attention-precision", args->attention_precision,
                  "fp32, or int8: attention scores in INT8 (smoothed keys, per-block scales; docs/attention.md)")
      ->check(CLI::IsMember({"fp32", "int8"}))
      ->capture_default_str();
  cmd->add_option("--set", args->overrides, "Override a config key (repeatable)")->allow_extra_args(false)->take_all();
  // Errors propagate to main, whose guarded runner prints the one line and ends every rank.
  cmd->callback([args]() { run_eval(*args, parallel::world()); });
}

}  // namespace strand::launch
