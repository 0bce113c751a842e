// What the trainer sees of a model: a Module that turns a batch into a summed loss and counts,
// so that losses normalise by the global token count whatever the data/sequence split.
#pragma once
#include <cstdint>
#include <memory>

#include "data/loader.h"
#include "framework/nn/module.h"
#include "framework/train/config.h"

namespace strand::models {

struct LossOutput {
  Tensor loss_sum;            // scalar: summed cross-entropy over the scored tokens (differentiable)
  int64_t tokens = 0;         // scored tokens (targets not ignored)
  Tensor predictions;         // [B, T] int32 argmax of the logits, for task accuracy (may be undefined)
};

class Model : public nn::Module {
 public:
  // Forward pass over a batch; loss_sum / tokens is the mean loss.
  virtual LossOutput forward(const data::Batch& batch) = 0;
  // Parameters that get weight decay (matrices; not biases, norm weights).
  virtual bool decays(const std::string& parameter_name) const;
};

// Builds the model the config describes (model.arch: gpt | encoder | encdec), initialised from
// run.seed. Throws train::ConfigError-style errors naming the key for unsupported combinations.
std::shared_ptr<Model> build_model(const train::Config& config);

}  // namespace strand::models
