// The mixed-precision policy of a training run: the compute dtype of precision.compute and the
// fp16 loss scaler (its state lives in LoopState and so in every checkpoint).
//
// Note [Loss scaling]
// Under fp16 compute each micro-batch's summed loss back-propagates with the gradient S / T,
// with S the loss scale and T the largest power of two <= data.batch_size * data.seq_len (the
// micro-batch's tokens): S scales the *mean* token loss, as PyTorch's GradScaler does, so one
// starting scale suits every batch size. The gradients are divided by S / T again where they
// are normalised by the token count (one multiply by 1/(N S/T); S / T is a power of two under
// dynamic scaling, so this unscaling is exact). A step whose gradient norm is not finite is
// skipped.
// Dynamic scaling (precision.loss_scale: dynamic) starts at 2^16, halves on such a step and
// doubles after precision.scale_window clean steps in a row. Overflows are then the scaler's
// normal probing and do not count toward train.max_skipped_steps, except those at the floor
// scale 1, where halving has nothing left to give: those are divergence. Under a fixed scale,
// and in fp32 and bf16 (scale 1, no scaler), every skipped step counts.
#pragma once
#include <cstdint>
#include <string>

#include "framework/train/train_state.h"

namespace strand::train {

// The dtype matmuls and attention read under precision.compute: F32, BF16 or F16.
DType compute_dtype(const Config& config);

constexpr double kInitialLossScale = 65536.0;  // 2^16
constexpr double kMinLossScale = 1.0;

// The scale a fresh run starts at: 2^16 (dynamic fp16), the fixed value (fp16), else 1.
double initial_loss_scale(const Config& config);

// The gradient the summed loss of a micro-batch back-propagates with: S / T under fp16, 1 else.
double backward_scale(const Config& config, double loss_scale);

// What the scaler did after one step.
struct ScaleUpdate {
  bool counts_as_divergence = false;  // a skipped step that counts toward train.max_skipped_steps
  std::string note;                   // for the warning line of a skipped step
};

// Advances the scaler in `state` after a step whose gradients were finite or not.
ScaleUpdate update_loss_scale(const Config& config, LoopState& state, bool finite);

}  // namespace strand::train
