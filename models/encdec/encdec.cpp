// Encoder-decoder: the row split, both stacks, and the decoder's summed loss.
#include "models/encdec/encdec.h"

#include "framework/core/error.h"
#include "framework/ops/loss.h"
#include "framework/ops/view.h"

namespace strand::models {

namespace {

StackOptions encdec_stack(const config::ModelConfig& c, uint64_t run_seed, DType dtype, bool decoder) {
  StackOptions o = stack_options(c, run_seed, dtype);
  o.token_embedding = !decoder;
  o.causal = decoder;
  o.cross_attention = decoder;
  o.layer_base = decoder ? c.n_layer : 0;
  return o;
}

// Columns [start, end) of an int32 [B, T] tensor, contiguous.
Tensor columns(const Tensor& t, int64_t start, int64_t end) {
  return ops::slice(t, 1, start, end).copy_as(DType::I32, Device::cpu());
}

}  // namespace

EncDec::EncDec(const config::ModelConfig& config, uint64_t run_seed, DType dtype) : config_(config), run_seed_(run_seed) {
  ParameterSeeds seeds(run_seed);  // GPT-2 init, drawn as the modules are built
  encoder_ = register_module("encoder", std::make_shared<Stack>(encdec_stack(config, run_seed, dtype, false), seeds));
  decoder_ = register_module("decoder", std::make_shared<Stack>(encdec_stack(config, run_seed, dtype, true), seeds));
  if (!config.tie_embeddings)
    lm_head_ = untied_lm_head(*register_module("lm_head", std::make_shared<Container>()), config.vocab_size,
                              config.d_model, seeds, dtype);
}

const Tensor& EncDec::output_embedding() const { return lm_head_.defined() ? lm_head_ : encoder_->wte().weight(); }

Tensor EncDec::logits(const Tensor& source, const Tensor& decoder_inputs, int64_t step) {
  STRAND_CHECK(source.defined() && decoder_inputs.defined() && source.dim() == 2 && decoder_inputs.dim() == 2 &&
                   source.size(0) == decoder_inputs.size(0) && source.size(1) > 0 && decoder_inputs.size(1) > 0,
               ShapeError, "encdec: source and decoder inputs must be int32 [B, S] and [B, Td], got ",
               source.defined() ? describe(source) : "undefined", " and ",
               decoder_inputs.defined() ? describe(decoder_inputs) : "undefined");
  const DropoutPlan dropout = DropoutPlan::make(is_training() ? config_.dropout : 0.0, run_seed_, step, {}, {});
  const Tensor src_pos = Tensor::arange(source.size(1), DType::I32);
  const Tensor dec_pos = Tensor::arange(decoder_inputs.size(1), DType::I32);
  const nn::Embedding& wte = encoder_->wte();
  const Tensor memory = encoder_->run(encoder_->embed(source, src_pos, wte, dropout), src_pos, Tensor(), dropout, {});
  const Tensor x = decoder_->run(decoder_->embed(decoder_inputs, dec_pos, wte, dropout), dec_pos, memory, dropout, {});
  return lm_logits(x, output_embedding());
}

LossOutput EncDec::forward(const data::Batch& batch, const parallel::SequenceShard& shard) {
  STRAND_CHECK(shard.local() && !shard.positions.defined(), ValueError,
               "encdec: model.arch encdec cannot run on a sequence shard (", shard.size(),
               " sp ranks): it splits each whole row into source and target halves; use parallel.sp 1");
  STRAND_CHECK(batch.inputs.defined() && batch.inputs.dim() == 2 && batch.inputs.size(1) >= 2, ShapeError,
               "encdec: inputs must be int32 [B, T] with T >= 2 (source and target halves), got ",
               batch.inputs.defined() ? describe(batch.inputs) : "undefined");
  STRAND_CHECK(batch.targets.defined() && batch.targets.shape() == batch.inputs.shape(), ShapeError,
               "encdec: targets ", batch.targets.defined() ? describe(batch.targets) : "undefined",
               " must match inputs ", describe(batch.inputs));
  const int64_t b = batch.inputs.size(0), t = batch.inputs.size(1), s = t / 2;
  const Tensor targets = columns(batch.targets, s, t);
  const Tensor logits3 = logits(columns(batch.inputs, 0, s), columns(batch.inputs, s, t), batch.step);
  const int64_t rows = b * (t - s);
  const Tensor flat = ops::reshape(logits3, {rows, config_.vocab_size});
  LossOutput out;
  out.loss_sum = ops::cross_entropy(flat, ops::reshape(targets, {rows}), data::kIgnoreIndex, ops::Reduction::Sum);
  out.tokens = count_scored(targets, data::kIgnoreIndex);
  // The decoder's predictions sit at their row positions S..T-1; source positions hold -1.
  const Tensor decoded = argmax_last(flat, {b, t - s});
  out.predictions = Tensor::full({b, t}, -1, DType::I32);
  const int32_t* d = decoded.data<int32_t>();
  int32_t* p = out.predictions.data<int32_t>();
  for (int64_t r = 0; r < b; ++r)
    for (int64_t j = 0; j < t - s; ++j) p[r * t + s + j] = d[r * (t - s) + j];
  return out;
}

}  // namespace strand::models
