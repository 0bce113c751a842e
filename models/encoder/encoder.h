// Encoder: a bidirectional (BERT-like) stack of the GPT blocks trained with a masked-token
// objective, with tied embeddings as the output head.
#pragma once
#include <memory>

#include "models/model.h"
#include "models/transformer.h"

namespace strand::models {

// The masked-token rule (docs/models.md): in row b, the token at global position p is masked when
// u(b, p) < kMaskFraction, with u uniform from Philox under derive_seed(run.seed, {"mask", step}),
// stream b, counter p: the same on every run and resume. A row that draws no position gets its
// position of smallest u, so every row scores at least one token. Masked inputs become the mask
// token id vocab_size - 1 (reserve it: a data token of that id is indistinguishable from the mask);
// only masked positions are scored, against the original token at that position.
inline constexpr double kMaskFraction = 0.15;

struct MaskedTokens {
  Tensor inputs;   // [B, T] int32: the batch inputs with the mask token at masked positions
  Tensor targets;  // [B, T] int32: the original token at masked positions, -100 elsewhere
};

// Parameters (names as GPT's, under "encoder." instead of "transformer."):
//   encoder.wte.weight [V, C], encoder.wpe.weight [T, C] (learned positions),
//   encoder.h.{i}.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}.*, encoder.ln_f.*,
//   lm_head.weight [V, C] only with tie_embeddings: false.
// The attention pattern is applied in its bidirectional form (full, sliding window on both sides,
// dilated, longformer, bigbird, non-causal linear); causal is refused by build_model.
class Encoder : public Model {
 public:
  Encoder(const config::ModelConfig& config, uint64_t run_seed, DType dtype = DType::F32);

  // Masked-token cross-entropy summed over the masked positions; tokens = masked positions.
  // predictions are left undefined: the encoder predicts the token at a position, not the next
  // one, so next-token task accuracy does not apply.
  // shard: global positions of the rows and the groups attention runs over; masking follows the
  // global positions, so a shard masks what one process masks in its rows.
  using Model::forward;
  LossOutput forward(const data::Batch& batch, const parallel::SequenceShard& shard) override;

  // The masking of `inputs` [B, T] at `step` (positions: the tokens' global positions, int32 [T],
  // in a row of seq_len positions; 0 means T).
  MaskedTokens mask_tokens(const Tensor& inputs, int64_t step, const Tensor& positions, int64_t seq_len = 0) const;
  // Logits [B, T, V] of (already masked) inputs.
  Tensor logits(const Tensor& inputs, const parallel::SequenceShard& shard = {}, int64_t step = 0);
  // memory.loss_chunk, as Gpt::set_loss_chunk: 0 keeps the unchunked head up to 256 MiB of logits.
  void set_loss_chunk(int64_t rows) { loss_chunk_ = rows; }

  int32_t mask_token() const { return static_cast<int32_t>(config_.vocab_size - 1); }
  const Stack& encoder() const { return *encoder_; }
  const Tensor& output_embedding() const;

 private:
  config::ModelConfig config_;
  uint64_t run_seed_;
  std::shared_ptr<Stack> encoder_;
  Tensor lm_head_;
  int64_t loss_chunk_ = 0;
  Tensor hidden(const Tensor& inputs, const parallel::SequenceShard& shard, int64_t step);
};

}  // namespace strand::models
