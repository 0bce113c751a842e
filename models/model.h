// What the trainer sees of a model: a Module that turns a batch (or one sequence-parallel rank's
// shard of it) into a summed loss and counts, so that losses normalise by the global token count
// whatever the data/sequence split.
#pragma once
#include <cstdint>
#include <memory>

#include "data/batch.h"
#include "framework/config/config.h"
#include "framework/nn/module.h"
#include "parallel/attention.h"

namespace strand::models {

struct LossOutput {
  Tensor loss_sum;            // scalar: summed cross-entropy over the scored tokens (differentiable)
  int64_t tokens = 0;         // scored tokens (targets not ignored)
  Tensor predictions;         // [B, T] int32 argmax of the logits, for task accuracy (may be undefined)
};

class Model : public nn::Module {
 public:
  // Forward pass over whole rows; loss_sum / tokens is the mean loss.
  LossOutput forward(const data::Batch& batch) { return forward(batch, parallel::SequenceShard{}); }
  // Forward pass over one rank's shard: batch.inputs / targets / answer_targets [B, T] hold the
  // rows shard.positions of each sequence; attention runs over the shard's groups. Sums and counts
  // are this rank's: the caller reduces them over the sp (and dp) ranks. Architectures that
  // cannot run sharded throw ValueError naming model.arch for a non-local shard.
  virtual LossOutput forward(const data::Batch& batch, const parallel::SequenceShard& shard) = 0;
  // Parameters that get weight decay (matrices; not biases, norm weights).
  virtual bool decays(const std::string& parameter_name) const;
};

// Builds the model the config describes (model.arch: gpt | encoder | encdec), initialised from
// run.seed. The config is one parse_config has checked (framework/config/rules.cpp holds the
// rules of what each architecture can honour); a config built in code that breaks them gets a
// ValueError or a wrong-shape error from the layer that cannot run it.
std::shared_ptr<Model> build_model(const config::Config& config);

}  // namespace strand::models
