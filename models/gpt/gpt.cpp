// GPT: embeddings, the causal block stack, the (tied) output projection and the summed loss.
#include "models/gpt/gpt.h"

#include "framework/core/error.h"
#include "framework/ops/chunked_loss.h"
#include "framework/ops/loss.h"
#include "framework/ops/view.h"

namespace strand::models {

namespace {

StackOptions gpt_stack(const config::ModelConfig& c, uint64_t run_seed, DType dtype) {
  StackOptions o = stack_options(c, run_seed, dtype);
  o.causal = true;
  return o;
}

}  // namespace

Gpt::Gpt(const config::ModelConfig& config, uint64_t run_seed, DType dtype) : config_(config), run_seed_(run_seed) {
  ParameterSeeds seeds(run_seed);  // GPT-2 init, drawn as the modules are built
  transformer_ = register_module("transformer", std::make_shared<Stack>(gpt_stack(config, run_seed, dtype), seeds));
  if (!config.tie_embeddings)
    lm_head_ = untied_lm_head(*register_module("lm_head", std::make_shared<Container>()), config.vocab_size,
                              config.d_model, seeds, dtype);
}

const Tensor& Gpt::output_embedding() const {
  return lm_head_.defined() ? lm_head_ : transformer_->wte().weight();
}

Tensor Gpt::hidden(const Tensor& inputs, const parallel::SequenceShard& shard, int64_t step,
                   std::vector<Tensor>* layer_outputs) {
  STRAND_CHECK(inputs.defined() && inputs.dim() == 2, ShapeError, "gpt: inputs must be int32 [B, T], got ",
               inputs.defined() ? describe(inputs) : "undefined");
  const Tensor positions = shard_positions(shard, inputs.size(1), "gpt");
  const DropoutPlan dropout = DropoutPlan::make(is_training() ? config_.dropout : 0.0, run_seed_, step, shard, positions);
  Tensor x = transformer_->embed(inputs, positions, transformer_->wte(), dropout);
  return transformer_->run(x, positions, Tensor(), dropout, shard, layer_outputs);
}

Tensor Gpt::logits(const Tensor& inputs, const parallel::SequenceShard& shard, int64_t step) {
  return lm_logits(hidden(inputs, shard, step), output_embedding());
}

LossOutput Gpt::forward(const data::Batch& batch, const parallel::SequenceShard& shard) {
  STRAND_CHECK(batch.targets.defined() && batch.targets.shape() == batch.inputs.shape(), ShapeError,
               "gpt: targets ", batch.targets.defined() ? describe(batch.targets) : "undefined",
               " must match inputs ", describe(batch.inputs));
  const Tensor x = hidden(batch.inputs, shard, batch.step);
  const Tensor& w = output_embedding();
  const int64_t rows = batch.inputs.numel(), V = config_.vocab_size;
  const Tensor targets = ops::reshape(batch.targets, {rows});
  LossOutput out;
  out.tokens = count_scored(batch.targets, data::kIgnoreIndex);
  // The unchunked head by default while its logits are small (its results are today's bits);
  // chunks when asked or when [rows, V] would be large (the weight gradient then sums by chunk).
  const int64_t logits_bytes = rows * V * static_cast<int64_t>(dtype_size(w.dtype()));
  if (loss_chunk_ > 0 || logits_bytes > kUnchunkedLogitsBytes) {
    const int64_t chunk = loss_chunk_ > 0 ? loss_chunk_ : ops::auto_chunk_rows(V, w.dtype());
    ops::ChunkedLoss head = ops::chunked_cross_entropy(ops::reshape(x, {rows, x.size(-1)}), w, targets, chunk,
                                                       data::kIgnoreIndex, ops::Reduction::Sum);
    out.loss_sum = head.loss;
    out.predictions = ops::reshape(head.predictions, batch.inputs.shape());
    return out;
  }
  const Tensor flat = ops::reshape(lm_logits(x, w), {rows, V});
  out.loss_sum = ops::cross_entropy(flat, targets, data::kIgnoreIndex, ops::Reduction::Sum);
  out.predictions = argmax_last(flat, batch.inputs.shape());
  return out;
}

}  // namespace strand::models
