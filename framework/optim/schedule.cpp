// Learning-rate schedule arithmetic and validation.
#include "framework/optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "framework/core/error.h"

namespace strand::optim {

const char* decay_kind_name(DecayKind kind) {
  switch (kind) {
    case DecayKind::Cosine: return "cosine";
    case DecayKind::Linear: return "linear";
    case DecayKind::Constant: return "constant";
  }
  return "unknown";
}

LrSchedule LrSchedule::make(double lr, double min_lr, int64_t warmup_steps, int64_t total_steps,
                            DecayKind kind) {
  LrSchedule s{lr, min_lr, warmup_steps, total_steps, kind};
  s.validate();
  return s;
}

void LrSchedule::validate() const {
  STRAND_CHECK(std::isfinite(lr) && lr >= 0, ValueError, "schedule: lr must be finite and >= 0, got ", lr);
  STRAND_CHECK(std::isfinite(min_lr) && min_lr >= 0, ValueError, "schedule: min_lr must be finite and >= 0, got ",
               min_lr);
  STRAND_CHECK(min_lr <= lr, ValueError, "schedule: min_lr ", min_lr, " is greater than lr ", lr);
  STRAND_CHECK(warmup_steps >= 0, ValueError, "schedule: warmup_steps must be >= 0, got ", warmup_steps);
  STRAND_CHECK(total_steps >= 0, ValueError, "schedule: total_steps must be >= 0, got ", total_steps);
}

double LrSchedule::lr_at(int64_t step) const {
  validate();
  STRAND_CHECK(step >= 0, ValueError, "schedule: step must be >= 0, got ", step);
  if (step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == DecayKind::Constant) return lr;
  const int64_t decay_steps = total_steps - warmup_steps;
  const double progress =
      decay_steps <= 0 ? 1.0
                       : std::clamp(static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps), 0.0, 1.0);
  if (kind == DecayKind::Linear) return lr - (lr - min_lr) * progress;
  return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace strand::optim
