// GPT: the GPT-2 decoder (learned positions, pre-LayerNorm, GELU, tied embeddings, biases) with
// parameter names exactly those of the Hugging Face GPT-2 state dict, plus the options RoPE,
// RMSNorm, SwiGLU, grouped-query attention and every causal attention pattern.
#pragma once
#include <memory>
#include <vector>

#include "models/model.h"
#include "models/transformer.h"

namespace strand::models {

// Parameters (C = d_model, V = vocab_size, T = max_seq_len, F = d_ff, H / Hkv heads, D = C / H):
//   transformer.wte.weight [V, C]
//   transformer.wpe.weight [T, C]                  (pos: learned; absent with rope)
//   transformer.h.{i}.ln_1.weight [C], .bias [C]   (rmsnorm: weight only)
//   transformer.h.{i}.attn.c_attn.weight [C, (H + 2 Hkv) D] ([C, 3C] for MHA), .bias
//   transformer.h.{i}.attn.c_proj.weight [C, C], .bias [C]
//   transformer.h.{i}.ln_2.weight, .bias
//   transformer.h.{i}.mlp.c_fc.weight [C, F] (swiglu: [C, 2F], gate | up), .bias
//   transformer.h.{i}.mlp.c_proj.weight [F, C], .bias [C]
//   transformer.ln_f.weight, .bias
//   lm_head.weight [V, C]                          (only with tie_embeddings: false; the
//                                                   Hugging Face nn.Linear layout, logits = x W^T)
// Weights are used as x @ W + b (GPT-2's Conv1D layout). The attention pattern is applied in its
// causal form (Note [Causal patterns], nn/attention.cpp); full is refused by
// build_model. Positions are global: a sequence shard passes its positions in parallel::SequenceShard.
class Gpt : public Model {
 public:
  // run_seed: initialisation (GPT-2: normal 0.02, residual projections 0.02 / sqrt(2 n_layer),
  // biases 0, norm weights 1, each tensor from its own seed) and dropout / attention draws.
  // dtype float32, or float64 for gradient checks.
  Gpt(const config::ModelConfig& config, uint64_t run_seed, DType dtype = DType::F32);

  // Next-token cross-entropy summed over batch.targets (ignore -100): loss_sum, the number of
  // scored targets, predictions = argmax [B, T] int32.
  // With a shard, batch holds this rank's rows and the sums and counts are this rank's.
  using Model::forward;
  LossOutput forward(const data::Batch& batch, const parallel::SequenceShard& shard) override;
  // Logits [B, T, V] of inputs [B, T] at `step` (the dropout draw).
  Tensor logits(const Tensor& inputs, const parallel::SequenceShard& shard = {}, int64_t step = 0);
  // The final-norm hidden states [B, T, C] the LM head reads (distillation runs its own head);
  // `layer_outputs`, when given, receives each block's output [B, T, C].
  Tensor hidden(const Tensor& inputs, const parallel::SequenceShard& shard, int64_t step,
                std::vector<Tensor>* layer_outputs = nullptr);

  const config::ModelConfig& config() const { return config_; }
  // memory.loss_chunk: rows per chunk of the fused LM head + loss (ops/chunked_loss.h); 0: the
  // unchunked head while the [B*T, V] logits take at most kUnchunkedLogitsBytes, auto chunks above.
  void set_loss_chunk(int64_t rows) { loss_chunk_ = rows; }
  static constexpr int64_t kUnchunkedLogitsBytes = int64_t{256} << 20;
  const Stack& transformer() const { return *transformer_; }
  // The output embedding W [V, C]: transformer.wte.weight, or lm_head.weight when untied.
  const Tensor& output_embedding() const;

 private:
  config::ModelConfig config_;
  uint64_t run_seed_;
  std::shared_ptr<Stack> transformer_;
  Tensor lm_head_;  // untied only
  int64_t loss_chunk_ = 0;
};

}  // namespace strand::models
