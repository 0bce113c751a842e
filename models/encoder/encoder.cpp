// Encoder: masked-token selection, the bidirectional stack, and the masked-token loss.
#include "models/encoder/encoder.h"

#include <limits>

#include "framework/core/error.h"
#include "framework/core/random.h"
#include "framework/ops/chunked_loss.h"
#include "framework/ops/loss.h"
#include "framework/ops/view.h"

namespace strand::models {

// The largest logits the unchunked head forms when memory.loss_chunk is 0 (as the GPT's).
constexpr int64_t kUnchunkedLogitsBytes = int64_t{256} << 20;

namespace {

StackOptions encoder_stack(const config::ModelConfig& c, uint64_t run_seed, DType dtype) {
  return stack_options(c, run_seed, dtype);
}

}  // namespace

Encoder::Encoder(const config::ModelConfig& config, uint64_t run_seed, DType dtype)
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

// Note [Masking a shard]: a position is masked when its own draw u(seed, row, global position)
// is below kMaskFraction; a row with no such position masks the one with the lowest draw. The
// draws depend on the global position only, and the fallback is decided over every position of
// the row (seq_len draws, cheap next to the model), so each sequence-parallel rank masks exactly
// the positions one process masks in its rows, without exchanging a message.
MaskedTokens Encoder::mask_tokens(const Tensor& inputs, int64_t step, const Tensor& positions, int64_t seq_len) const {
  STRAND_CHECK(inputs.defined() && inputs.dtype() == DType::I32 && inputs.dim() == 2, ShapeError,
               "encoder: inputs must be int32 [B, T], got ", inputs.defined() ? describe(inputs) : "undefined");
  const int64_t batch = inputs.size(0), seq = inputs.size(1);
  if (seq_len <= 0) seq_len = seq;
  const Tensor in = inputs.copy_as(DType::I32, Device::cpu());
  const std::vector<double> pos = positions.to_vector();
  MaskedTokens m{in.copy_as(DType::I32, Device::cpu()), Tensor::full({batch, seq}, data::kIgnoreIndex, DType::I32)};
  const int32_t* src = in.data<int32_t>();
  int32_t* masked = m.inputs.data<int32_t>();
  int32_t* target = m.targets.data<int32_t>();
  const uint64_t seed = derive_seed(run_seed_, {kMaskedTokensSalt, static_cast<uint64_t>(step)});
  auto draw = [&](int64_t b, int64_t position) {
    return random::uniform01(seed, static_cast<uint64_t>(b), static_cast<uint64_t>(position));
  };
  for (int64_t b = 0; b < batch; ++b) {
    // The whole row's fallback position (Note [Masking a shard]).
    bool any_chosen = false;
    int64_t lowest = -1;
    double lowest_u = std::numeric_limits<double>::infinity();
    for (int64_t g = 0; g < seq_len && !any_chosen; ++g) {
      const double u = draw(b, g);
      if (u < lowest_u) lowest_u = u, lowest = g;
      any_chosen = u < kMaskFraction;
    }
    for (int64_t t = 0; t < seq; ++t) {
      const auto g = static_cast<int64_t>(pos[static_cast<size_t>(t)]);
      if (draw(b, g) < kMaskFraction || (!any_chosen && g == lowest)) {
        masked[b * seq + t] = mask_token();
        target[b * seq + t] = src[b * seq + t];
      }
    }
  }
  return m;
}

Tensor Encoder::hidden(const Tensor& inputs, const parallel::SequenceShard& shard, int64_t step) {
  STRAND_CHECK(inputs.defined() && inputs.dim() == 2, ShapeError, "encoder: inputs must be int32 [B, T], got ",
               inputs.defined() ? describe(inputs) : "undefined");
  const Tensor positions = shard_positions(shard, inputs.size(1), "encoder");
  const DropoutPlan dropout = DropoutPlan::make(is_training() ? config_.dropout : 0.0, run_seed_, step, shard, positions);
  Tensor x = encoder_->embed(inputs, positions, encoder_->wte(), dropout);
  return encoder_->run(x, positions, Tensor(), dropout, shard);
}

Tensor Encoder::logits(const Tensor& inputs, const parallel::SequenceShard& shard, int64_t step) {
  return lm_logits(hidden(inputs, shard, step), output_embedding());
}

LossOutput Encoder::forward(const data::Batch& batch, const parallel::SequenceShard& shard) {
  STRAND_CHECK(batch.inputs.defined() && batch.inputs.dim() == 2, ShapeError,
               "encoder: inputs must be int32 [B, T], got ", batch.inputs.defined() ? describe(batch.inputs) : "undefined");
  const Tensor positions = shard_positions(shard, batch.inputs.size(1), "encoder");
  const MaskedTokens m =
      mask_tokens(batch.inputs, batch.step, positions, global_seq_len(shard, batch.inputs.size(1)));
  const Tensor x = hidden(m.inputs, shard, batch.step);
  const Tensor& w = output_embedding();
  const int64_t rows = m.inputs.numel(), V = config_.vocab_size;
  const Tensor targets = ops::reshape(m.targets, {rows});
  LossOutput out;
  out.tokens = count_scored(m.targets, data::kIgnoreIndex);
  // As the GPT's head (models/gpt/gpt.cpp): unchunked while the logits are small.
  const int64_t logits_bytes = rows * V * static_cast<int64_t>(dtype_size(w.dtype()));
  if (loss_chunk_ > 0 || logits_bytes > kUnchunkedLogitsBytes) {
    const int64_t chunk = loss_chunk_ > 0 ? loss_chunk_ : ops::auto_chunk_rows(V, w.dtype());
    out.loss_sum = ops::chunked_cross_entropy(ops::reshape(x, {rows, x.size(-1)}), w, targets, chunk,
                                              data::kIgnoreIndex, ops::Reduction::Sum).loss;
    return out;
  }
  out.loss_sum = ops::cross_entropy(ops::reshape(lm_logits(x, w), {rows, V}), targets, data::kIgnoreIndex,
                                    ops::Reduction::Sum);
  return out;
}

}  // namespace strand::models
