// The trainer's gradient pass as the distributed tests run it: a model built from the config,
// a trainer over `group` that prints, writes and resumes nothing, and one forward_backward over
// this rank's rows (losses summed and gradients summed over every rank, before any step).
#pragma once
#include <cstdint>
#include <memory>

#include "data/loader.h"
#include "framework/train/components.h"
#include "framework/train/trainer.h"
#include "models/model.h"
#include "parallel/comm/group.h"

namespace strand::testing {

struct TrainerPass {
  std::shared_ptr<models::Model> model;  // its gradients are the pass's
  train::GradientPass pass;
};

inline TrainerPass trainer_gradient_pass(const train::Config& config, parallel::Group& group,
                                         int64_t micro_batches = 1) {
  std::shared_ptr<models::Model> model = models::build_model(config);
  train::TrainerOptions options;
  options.print = false;
  options.write_files = false;
  options.allow_resume = false;
  train::Trainer trainer = train::make_trainer(config, model, &group, options);
  const std::unique_ptr<data::Loader> rows =
      data::make_loader(train::data_spec_of(config, trainer.dp_rank(), config.parallel.dp), data::Split::train);
  const train::GradientPass pass = trainer.forward_backward(*rows, micro_batches);
  return {model, pass};
}

}  // namespace strand::testing
