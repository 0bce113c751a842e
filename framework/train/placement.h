// Where a rank trains (run.device): the rank's device, and the moves of a model's parameters there.
// Batches follow through BatchSharder::shard (sharding.h); the optimizer's moments are made where
// the parameters live; checkpoints are written from host copies (train_state.cpp).
#pragma once
#include <vector>

#include "framework/config/config.h"
#include "framework/core/device.h"
#include "framework/core/tensor.h"

namespace strand::train {

// cpu, or cuda:(local rank mod the GPUs visible). A ConfigError naming run.device when it is
// cuda and this build has no CUDA or this machine no GPU. No collective: every rank checks alike.
Device training_device(const config::Config& config);
void check_device(const config::Config& config);  // training_device's checks alone

// Moves each tensor's storage to `device` in place, so every handle of it (the module's, the
// optimizer's, the gradient sync's) sees the moved data; tensors already there are left alone.
// A parameter must own its storage (a view of a shared buffer would be split apart).
void place_tensors(const std::vector<Tensor>& tensors, Device device);

}  // namespace strand::train
