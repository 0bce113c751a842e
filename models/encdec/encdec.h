// Encoder-decoder: a bidirectional encoder over the first half of each row and a causal decoder
// with cross-attention to the encoder output, trained on the second half by teacher forcing.
#pragma once
#include <memory>

#include "models/model.h"
#include "models/transformer.h"

namespace strand::models {

// The row convention (docs/models.md): a batch row of T tokens splits at S = T / 2 (rounded
// down). The source inputs[:, 0:S] goes through the encoder (positions 0..S-1); the decoder
// reads inputs[:, S:T] (positions 0..T-S-1, causal self-attention, cross-attention to the whole
// encoder output) and is scored on targets[:, S:T], the next token of each decoder position
// (teacher forcing). On the synthetic copy task the answer tokens all lie in the second half,
// so the decoder learns to copy the source. predictions [B, T] hold the decoder's argmax at
// positions S..T-1 and -1 (never a token) at the source positions.
//
// Parameters (C, V, T, F, H, Hkv, D as in gpt.h):
//   encoder.wte.weight [V, C]: the token embedding of encoder and decoder, and the tied output
//   encoder.wpe.weight, decoder.wpe.weight [T, C]           (learned positions only)
//   encoder.h.{i}.{ln_1, attn, ln_2, mlp}.*, encoder.ln_f.*  (as gpt's transformer.h.{i})
//   decoder.h.{i}.ln_1, .attn (causal self-attention), .ln_2,
//   decoder.h.{i}.crossattention.q_attn.weight [C, C], .bias      queries from the decoder
//   decoder.h.{i}.crossattention.c_attn.weight [C, 2 Hkv D], .bias  k | v from the encoder
//   decoder.h.{i}.crossattention.c_proj.weight [C, C], .bias
//   decoder.h.{i}.ln_cross_attn.*, decoder.h.{i}.mlp.*, decoder.ln_f.*
//   lm_head.weight [V, C] only with tie_embeddings: false
// (the Hugging Face GPT-2 cross-attention names). Both stacks have n_layer blocks. The pattern
// is read as the decoder's (like gpt: causal, sliding, dilated, longformer, bigbird, linear); the encoder
// uses its bidirectional form (causal -> full).
class EncDec : public Model {
 public:
  EncDec(const config::ModelConfig& config, uint64_t run_seed, DType dtype = DType::F32);

  // Whole rows only: the row is split in halves by local column, so a sequence shard (positions
  // or sequence-parallel groups) is refused with a ValueError naming model.arch.
  using Model::forward;
  LossOutput forward(const data::Batch& batch, const parallel::SequenceShard& shard) override;

  // Decoder logits [B, Td, V] for source [B, S] and decoder inputs [B, Td] at `step`.
  Tensor logits(const Tensor& source, const Tensor& decoder_inputs, int64_t step = 0);

  const Stack& encoder() const { return *encoder_; }
  const Stack& decoder() const { return *decoder_; }
  const Tensor& output_embedding() const;

 private:
  config::ModelConfig config_;
  uint64_t run_seed_;
  std::shared_ptr<Stack> encoder_, decoder_;
  Tensor lm_head_;
};

}  // namespace strand::models
