// Learning-rate schedule: linear warmup from 0, then cosine, linear or constant decay to min_lr.
#pragma once
#include <cstdint>

namespace strand::optim {

// The config's `train.schedule` is this type (framework/config), so the kind reaches the
// schedule as it was parsed, never as text.
enum class DecayKind { Cosine, Linear, Constant };

const char* decay_kind_name(DecayKind kind);  // "cosine" | "linear" | "constant"

// Step s (0-based) gets:
//   s < warmup_steps:        lr * (s + 1) / warmup_steps
//   then, with progress p = (s - warmup_steps) / (total_steps - warmup_steps) clamped to [0, 1]
//   (p = 1 when total_steps <= warmup_steps):
//     cosine:   min_lr + (lr - min_lr) * (1 + cos(pi p)) / 2
//     linear:   lr - (lr - min_lr) * p
//     constant: lr
struct LrSchedule {
  double lr = 3e-4;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  DecayKind kind = DecayKind::Cosine;

  // Builds and validates a schedule from config values.
  static LrSchedule make(double lr, double min_lr, int64_t warmup_steps, int64_t total_steps,
                         DecayKind kind);
  // ValueError naming the field and value: negative or non-finite lr / min_lr, min_lr > lr,
  // negative warmup_steps or total_steps.
  void validate() const;
  // The learning rate of step `step` (>= 0, else ValueError).
  double lr_at(int64_t step) const;
};

}  // namespace strand::optim
