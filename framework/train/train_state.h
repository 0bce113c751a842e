// The mapping between a training run's state and a checkpoint (architecture.md §6,
// docs/checkpoint-format.md): model parameters, AdamW moments, the schedule, and the trainer
// group (step, tokens seen, loader position, RNG seed, loss scaler).
#pragma once
#include <cstdint>
#include <string>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/io/checkpoint.h"
#include "framework/nn/module.h"
#include "framework/optim/adamw.h"
#include "framework/optim/schedule.h"

namespace strand::train {

// The run configuration's types (framework/config) read as train's own: train is the layer above.
using namespace strand::config;

// Everything of the loop that is not a tensor. Random streams (initialisation, dropout,
// synthetic rows) are Philox counters keyed by run.seed and indexed by the loader step, so
// the seed and the step are the whole RNG state.
struct LoopState {
  int64_t step = 0;          // completed optimizer steps
  int64_t tokens_seen = 0;   // input tokens of every rank so far
  data::LoaderPosition loader;
  uint64_t seed = 0;         // run.seed
  double loss_scale = 1.0;   // fp32 training: always 1
  int64_t loss_scale_good_steps = 0;
  int64_t skipped_steps = 0;
};

// Builds the checkpoint of a run at `state.step`: fp32 parameters, moments, the schedule and
// the loop state, with the resolved config as the `config` attribute.
io::CheckpointData make_checkpoint(const Config& config, const nn::Module& model, const optim::AdamW& optimizer,
                                   const optim::LrSchedule& schedule, const LoopState& state);

// Restores parameters and moments in place and returns the loop state. A checkpoint of another
// model shape is refused before anything is copied (the message names the file, parameter
// and both shapes); a missing moment or trainer entry is a CheckpointError naming it.
LoopState restore_checkpoint(const io::CheckpointData& data, nn::Module& model, optim::AdamW& optimizer);

}  // namespace strand::train
