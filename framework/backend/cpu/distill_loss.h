// CPU kernels of the logit-distillation loss (backend/distill_loss.h): per row two log-sum-exps
// of the temperature-scaled logits, then one pass for the KL or its gradient.
#pragma once
#include "framework/backend/distill_loss.h"

namespace strand::cpu {

// The family entry registered with the device seam.
void distill_loss(const backend::DistillLossParams& p);

}  // namespace strand::cpu
