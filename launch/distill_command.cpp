// `strand distill CONFIG [--set key=value ...]`: knowledge distillation (framework/train/distill.h).
// The student is the config's model; distill.teacher names the teacher's checkpoint, which
// carries its own config. The job runs as `strand train` does (mpirun, dp x sp, the same log
// line with the loss terms beside the loss, metrics.jsonl, checkpoints of the student only,
// exact resume, exit statuses): only the Trainer differs.
#include <memory>

#include "framework/train/distill.h"
#include "launch/commands.h"

namespace strand::launch {

void add_distill_command(CLI::App& app) {
  TrainingJob job;
  job.check = [](const config::Config& config) { train::check_distill_config(config); };
  job.make = [](train::TrainerParts parts, const train::TrainerOptions& options) -> std::unique_ptr<train::Trainer> {
    return train::make_distill_trainer(std::move(parts), options);
  };
  add_training_command(app, "distill",
                       "Distil a student (the config's model) from the teacher checkpoint distill.teacher "
                       "(resumes per checkpoint.resume)",
                       std::move(job));
}

}  // namespace strand::launch
