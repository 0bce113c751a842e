// `strand prune`: rounds of head scoring (importance by gate gradients, or random), physical
// removal of the lowest-scoring heads and fine-tuning, built from the trainer's parts (the
// Trainer's gradient pass, evaluation, run loop and checkpoints), with a report per round.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/io/checkpoint.h"
#include "framework/train/head_importance.h"
#include "framework/train/run_log.h"

namespace strand::parallel { class Group; }

namespace strand::train {

// One round of a pruning run. Round 0 is the model before any head was removed.
struct PruneRound {
  int64_t round = 0;
  std::vector<std::vector<int64_t>> kept_heads;  // original query head indices per layer
  std::vector<int64_t> kv_heads;                 // key/value heads kept per layer
  int64_t parameters = 0;
  double val_loss_pruned = 0.0;  // right after the heads were removed (round >= 1)
  double val_loss = 0.0;         // after fine-tuning (round 0: the model as loaded)
  double tokens_per_s = 0.0;     // evaluation forward: input tokens over all ranks per second
  int64_t finetune_steps = 0;
  HeadTable scores;              // what this round removed by (normalised importance, or random)
  HeadTable entropy;             // mean attention entropy per head of the scored model (sp = 1)
  std::string checkpoint;        // the round's checkpoint (round >= 1)
};

struct PruneOptions {
  std::shared_ptr<RunLog> log;  // rank 0's console and train.log lines
  bool write_files = true;      // round checkpoints and the report files
};

// Loads `base` (a checkpoint of the config's model, pruned or not: its /pruning group sets the
// heads), then runs prune.iterations rounds. Round r removes round(heads_fraction x units x
// r / iterations) units in all (heads_to_keep), chosen by prune.method, then fine-tunes for
// prune.finetune_steps steps (a Trainer over RUN_DIR/round_r with train.steps =
// finetune_steps) and saves the round's checkpoint, with its /pruning group. Writes
// RUN_DIR/prune_report.json and prune_report.md after every round. A stop signal during
// fine-tuning ends the run after that round's checkpoint (there is no resume of a pruning run
// itself yet). Collective over `group`.
std::vector<PruneRound> run_prune(config::Config config, const io::CheckpointData& base, parallel::Group* group,
                                  const PruneOptions& options);

// The report of the rounds so far: JSON (one object) and a Markdown table.
std::string prune_report_json(const config::Config& config, const std::vector<PruneRound>& rounds);
std::string prune_report_markdown(const config::Config& config, const std::vector<PruneRound>& rounds);

}  // namespace strand::train
