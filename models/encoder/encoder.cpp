// Encoder: masked-token selection, the bidirectional stack, and the masked-token loss.
#include "models/encoder/encoder.h"

#include <limits>

#include "framework/core/error.h"
#include "framework/core/random.h"
#include "framework/ops/loss.h"
#include "framework/ops/view.h"

namespace strand::models {

namespace {

StackOptions encoder_stack(const train::ModelConfig& c, uint64_t run_seed, DType dtype) {
  return stack_options(c, run_seed, dtype);
}

}  // namespace

Encoder::Encoder(const train::ModelConfig& config, uint64_t run_seed, DType dtype)
    : config_(config), run_seed_(run_seed) {
  STRAND_CHECK(config.vocab_size >= 2, ValueError, "encoder: vocab_size must be >= 2 (the last id is the mask token), got ",
               config.vocab_size);
  ParameterSeeds seeds(run_seed);  // GPT-2 init, drawn as the modules are built
  encoder_ = register_module("encoder", std::make_shared<Stack>(encoder_stack(config, run_seed, dtype), seeds));
  if (!config.tie_embeddings)
    lm_head_ = untied_lm_head(*register_module("lm_head", std::make_shared<Container>()), config.vocab_size,
                              config.d_model, seeds, dtype);
}

const Tensor& Encoder::output_embedding() const { return lm_head_.defined() ? lm_head_ : encoder_->wte().weight(); }

MaskedTokens Encoder::mask_tokens(const Tensor& inputs, int64_t step, const Tensor& positions) const {
  STRAND_CHECK(inputs.defined() && inputs.dtype() == DType::I32 && inputs.dim() == 2, ShapeError,
               "encoder: inputs must be int32 [B, T], got ", inputs.defined() ? describe(inputs) : "undefined");
  const int64_t batch = inputs.size(0), seq = inputs.size(1);
  const Tensor in = inputs.copy_as(DType::I32, Device::cpu());
  const std::vector<double> pos = positions.to_vector();
  MaskedTokens m{in.copy_as(DType::I32, Device::cpu()), Tensor::full({batch, seq}, data::kIgnoreIndex, DType::I32)};
  const int32_t* src = in.data<int32_t>();
  int32_t* masked = m.inputs.data<int32_t>();
  int32_t* target = m.targets.data<int32_t>();
  const uint64_t seed = derive_seed(run_seed_, {kMaskedTokensSalt, static_cast<uint64_t>(step)});
  for (int64_t b = 0; b < batch; ++b) {
    int64_t chosen = 0, lowest = -1;
    double lowest_u = std::numeric_limits<double>::infinity();
    for (int64_t t = 0; t < seq; ++t) {
      const double u = random::uniform01(seed, static_cast<uint64_t>(b), static_cast<uint64_t>(pos[static_cast<size_t>(t)]));
      if (u < lowest_u) lowest_u = u, lowest = t;
      if (u < kMaskFraction) {
        masked[b * seq + t] = mask_token();
        target[b * seq + t] = src[b * seq + t];
        ++chosen;
      }
    }
    if (chosen == 0 && lowest >= 0) {
      masked[b * seq + lowest] = mask_token();
      target[b * seq + lowest] = src[b * seq + lowest];
    }
  }
  return m;
}

Tensor Encoder::logits(const Tensor& inputs, const SequenceShard& shard, int64_t step) {
  STRAND_CHECK(inputs.defined() && inputs.dim() == 2, ShapeError, "encoder: inputs must be int32 [B, T], got ",
               inputs.defined() ? describe(inputs) : "undefined");
  const Tensor positions = shard_positions(shard, inputs.size(1), "encoder");
  const DropoutPlan dropout = DropoutPlan::make(is_training() ? config_.dropout : 0.0, run_seed_, step, shard, positions);
  Tensor x = encoder_->embed(inputs, positions, encoder_->wte(), dropout);
  x = encoder_->run(x, positions, Tensor(), dropout, shard.context);
  return lm_logits(x, output_embedding());
}

LossOutput Encoder::forward(const data::Batch& batch, const SequenceShard& shard) {
  STRAND_CHECK(shard.context.local(), ValueError, "encoder: model.arch encoder cannot run sequence-parallel (",
               shard.context.size(), " ranks): a row's masked positions are chosen over the whole row; use parallel.sp 1");
  STRAND_CHECK(batch.inputs.defined() && batch.inputs.dim() == 2, ShapeError,
               "encoder: inputs must be int32 [B, T], got ", batch.inputs.defined() ? describe(batch.inputs) : "undefined");
  const Tensor positions = shard_positions(shard, batch.inputs.size(1), "encoder");
  const MaskedTokens m = mask_tokens(batch.inputs, batch.step, positions);
  const Tensor logits3 = logits(m.inputs, shard, batch.step);
  const int64_t rows = m.inputs.numel();
  LossOutput out;
  out.loss_sum = ops::cross_entropy(ops::reshape(logits3, {rows, config_.vocab_size}), ops::reshape(m.targets, {rows}),
                                    data::kIgnoreIndex, ops::Reduction::Sum);
  out.tokens = count_scored(m.targets, data::kIgnoreIndex);
  return out;
}

}  // namespace strand::models
