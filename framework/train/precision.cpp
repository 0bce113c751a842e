// The compute dtype of precision.compute and the fp16 loss scaler (Note [Loss scaling]).
#include "framework/train/precision.h"

#include <algorithm>
#include <bit>

#include "framework/core/error.h"

namespace strand::train {
namespace {

bool dynamic_scaling(const Config& config) {
  return config.precision.compute == ComputePrecision::Fp16 && config.precision.dynamic_loss_scale();
}

}  // namespace

DType compute_dtype(const Config& config) {
  switch (config.precision.compute) {
    case ComputePrecision::Bf16: return DType::BF16;
    case ComputePrecision::Fp16: return DType::F16;
    case ComputePrecision::Fp32: break;
  }
  return DType::F32;
}

double initial_loss_scale(const Config& config) {
  if (config.precision.compute != ComputePrecision::Fp16) return 1.0;
  return config.precision.dynamic_loss_scale() ? kInitialLossScale : config.precision.loss_scale;
}

double backward_scale(const Config& config, double loss_scale) {
  if (config.precision.compute != ComputePrecision::Fp16) return 1.0;
  const int64_t tokens = std::max<int64_t>(config.data.batch_size * config.data.seq_len, 1);
  return loss_scale / static_cast<double>(std::bit_floor(static_cast<uint64_t>(tokens)));
}

ScaleUpdate update_loss_scale(const Config& config, LoopState& state, bool finite) {
  ScaleUpdate u;
  if (!dynamic_scaling(config)) {
    u.counts_as_divergence = !finite;
    return u;
  }
  if (finite) {
    if (++state.loss_scale_good_steps >= config.precision.scale_window) {
      state.loss_scale *= 2.0;
      state.loss_scale_good_steps = 0;
    }
    return u;
  }
  const double was = state.loss_scale;
  u.counts_as_divergence = was <= kMinLossScale;
  state.loss_scale = std::max(was / 2.0, kMinLossScale);
  state.loss_scale_good_steps = 0;
  u.note = detail::concat("; loss scale ", was, " -> ", state.loss_scale);
  return u;
}

}  // namespace strand::train
