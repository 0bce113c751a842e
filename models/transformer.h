// Pieces the three model architectures share: seed derivation, a plain module container, the
// norm choice, the pre-norm transformer block, a stack of blocks with its embeddings, the
// attention pattern -> MaskSpec rule, GPT-2 initialisation, and loss-side helpers.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/nn/attention.h"
#include "framework/nn/embedding.h"
#include "framework/nn/layer_norm.h"
#include "framework/nn/mlp.h"
#include "framework/nn/module.h"
#include "models/model.h"
#include "parallel/attention.h"

namespace strand::models {

// Independent seeds from run.seed: mixes the parts (splitmix64 finaliser) so that
// (seed, salt, i, j) and (seed, salt, i', j') give unrelated streams.
uint64_t derive_seed(uint64_t base, std::initializer_list<uint64_t> parts);

// What each seed is for, mixed in as the first part.
inline constexpr uint64_t kInitSalt = 0x696e6974ull;          // "init": the parameters' base key
inline constexpr uint64_t kDropoutSalt = 0x64726f70ull;       // "drop": (step, layer, site)
inline constexpr uint64_t kMaskedTokensSalt = 0x6d61736bull;  // "mask": encoder masked positions
inline constexpr uint64_t kLayerSalt = 0x6c617972ull;         // "layr": per-layer draws (bigbird, performer)

// int32 [T]: shard.positions, or 0..T-1 when undefined (checked against T).
Tensor shard_positions(const parallel::SequenceShard& shard, int64_t seq_len, const char* model);

// N, the length of the whole sequence a shard of T rows belongs to (parallel::SequenceShard::seq_len).
int64_t global_seq_len(const parallel::SequenceShard& shard, int64_t local_len);

// A module that only holds named children and parameters (the "transformer", "h" and "lm_head"
// levels of the parameter names).
class Container : public nn::Module {
 public:
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    return register_module(name, std::move(m));
  }
  Tensor add_parameter(const std::string& name, Tensor t) { return register_parameter(name, std::move(t)); }
};

// LayerNorm (weight, bias) or RMSNorm (weight), chosen by model.norm.
struct Norm {
  std::shared_ptr<nn::LayerNorm> layer_norm;
  std::shared_ptr<nn::RMSNorm> rms_norm;
  static Norm make(config::NormKind kind, int64_t features, DType dtype);
  std::shared_ptr<nn::Module> module() const;
  Tensor forward(const Tensor& x) const;
};

// Dropout of one forward pass: p, and per-(layer, site) seeds from (run.seed, step), so a step's
// masks are the same on every run and resume. Off (p = 0) in evaluation mode. A sequence shard
// sets positions and seq_len: element (b, t, c) of a [B, T, C] activation then draws the
// counter ((b * seq_len + positions[t]) * C + c), the one it draws unsharded (Note [Sharded
// dropout] in transformer.cpp), so the masks do not depend on the layout.
struct DropoutPlan {
  double p = 0.0;
  uint64_t run_seed = 0;
  int64_t step = 0;
  Tensor positions;      // int32 [T]: global position of each local row; undefined = unsharded
  int64_t seq_len = 0;   // N of the whole sequence (with positions)
  // The plan of a forward pass over `shard` (positions: its rows' global positions, [T]).
  static DropoutPlan make(double p, uint64_t run_seed, int64_t step, const parallel::SequenceShard& shard,
                          const Tensor& positions);
  Tensor apply(const Tensor& x, int64_t layer, int64_t site) const;
};

// GPT-2 initialisation, drawn once as the modules are built: parameter i of a model (in
// named_parameters order) that is drawn at all draws from the Philox key
// derive_seed(run.seed, {kInitSalt}) + i, so every tensor, every layer included, has its own
// stream. Weights are normal(0, 0.02), residual projections (every c_proj) normal(0, 0.02 /
// sqrt(2 n_layer)); biases are 0 and norm weights 1. Each module hands its children seed + j for
// its parameter j (nn::AttentionOptions::seed, nn::MlpOptions::seed), and the builder counts.
class ParameterSeeds {
 public:
  explicit ParameterSeeds(uint64_t run_seed) : base_(derive_seed(run_seed, {kInitSalt})) {}
  // The seed of the next parameter to be registered.
  uint64_t next() const { return base_ + index_; }
  // Counts the parameters of a module just built (before the next one is built).
  template <class M>
  std::shared_ptr<M> counted(std::shared_ptr<M> m) {
    index_ += m->named_parameters().size();
    return m;
  }
  void count(uint64_t parameters) { index_ += parameters; }
  static uint64_t base(uint64_t run_seed) { return derive_seed(run_seed, {kInitSalt}); }

 private:
  uint64_t base_;
  uint64_t index_ = 0;
};

// How one stack of blocks is built.
struct StackOptions {
  int64_t d_model = 0, n_head = 0, n_kv_head = 0, d_ff = 0, n_layer = 0;
  int64_t vocab_size = 0;       // rows of wte (only with token_embedding)
  int64_t max_seq_len = 0;      // rows of wpe (only with learned positions)
  bool token_embedding = true;  // holds wte (a decoder of encdec reads the encoder's)
  config::PosEncoding pos = config::PosEncoding::Learned;
  config::NormKind norm = config::NormKind::LayerNorm;
  bool swiglu = false;
  bool causal = false;          // decoder self-attention (Note [Causal patterns] in nn/attention.cpp)
  bool cross_attention = false; // decoder of encdec
  config::AttentionConfig attention;
  // Per-layer query and key/value head counts of a pruned model (heads of width d_model /
  // n_head); empty: n_head and n_kv_head in every layer.
  std::vector<int64_t> layer_heads, layer_kv_heads;
  uint64_t run_seed = 0;
  int64_t layer_base = 0;       // index of this stack's first layer among all layers (seeds)
  DType dtype = DType::F32;
};

// The options a config's model section gives a stack: bidirectional, with its own token
// embedding; each architecture then sets what differs (causal, cross-attention, ...).
StackOptions stack_options(const config::ModelConfig& c, uint64_t run_seed, DType dtype);

// The pre-norm block: x += attn(ln_1(x)); [x += crossattention(ln_cross_attn(x), memory)];
// x += mlp(ln_2(x)), with residual dropout after each branch. Children in Hugging Face GPT-2
// order: ln_1, attn, ln_2, [crossattention, ln_cross_attn], mlp.
class Block : public nn::Module {
 public:
  Block(const StackOptions& options, int64_t layer, ParameterSeeds& seeds);
  Tensor forward(const Tensor& x, const Tensor& positions, const Tensor& memory, const DropoutPlan& dropout,
                 const parallel::SequenceShard& shard) const;
  // The block's two halves, forward(x) = mlp_half(attention_half(x)) op for op: full
  // checkpointing with disk offload checkpoints them as two pieces (docs/memory.md), each
  // with its own parameters (ln_1, attn, [crossattention, ln_cross_attn]; ln_2, mlp).
  Tensor attention_half(const Tensor& x, const Tensor& positions, const Tensor& memory, const DropoutPlan& dropout,
                        const parallel::SequenceShard& shard) const;
  Tensor mlp_half(const Tensor& h, const DropoutPlan& dropout) const;
  std::vector<Tensor> attention_parameters() const;
  std::vector<Tensor> mlp_parameters() const;
  const nn::MultiHeadAttention& attn() const { return *attn_; }
  // The pieces a cached decoder (models/gpt/decoder.h) runs one token through.
  const Norm& ln_1() const { return ln_1_; }
  const Norm& ln_2() const { return ln_2_; }
  const nn::Mlp& mlp() const { return *mlp_; }
  bool has_cross_attention() const { return cross_ != nullptr; }

 private:
  int64_t layer_;
  Norm ln_1_, ln_2_, ln_cross_;
  std::shared_ptr<nn::MultiHeadAttention> attn_;
  std::shared_ptr<nn::CrossAttention> cross_;
  std::shared_ptr<nn::Mlp> mlp_;
};

// Embeddings, blocks and the final norm: children wte [V, C] (optional), wpe [max_seq_len, C]
// (learned positions), h.{i}, ln_f.
class Stack : public nn::Module {
 public:
  Stack(const StackOptions& options, ParameterSeeds& seeds);
  // ids int32 [B, T] -> wte(ids) (+ wpe(positions)), dropped out. `wte` is this stack's or a
  // shared one.
  Tensor embed(const Tensor& ids, const Tensor& positions, const nn::Embedding& wte, const DropoutPlan& dropout) const;
  // x [B, T, C] through every block and ln_f. memory [B, Tk, C] for cross-attention.
  // `layer_outputs`, when given, receives each block's output (distillation matches them).
  Tensor run(Tensor x, const Tensor& positions, const Tensor& memory, const DropoutPlan& dropout,
             const parallel::SequenceShard& shard, std::vector<Tensor>* layer_outputs = nullptr) const;

  const nn::Embedding& wte() const { return *wte_; }
  bool has_wte() const { return wte_ != nullptr; }
  int64_t n_layer() const { return static_cast<int64_t>(blocks_.size()); }
  const Block& block(int64_t i) const { return *blocks_[static_cast<size_t>(i)]; }
  const StackOptions& options() const { return options_; }
  const Norm& ln_f() const { return ln_f_; }
  // memory.checkpointing for the first `layers` blocks (0: all) of this stack, in run().
  // half_blocks: full checkpointing checkpoints each block's attention and MLP halves apart.
  void set_checkpointing(config::Checkpointing mode, int64_t layers, bool half_blocks = false);
  config::Checkpointing checkpointing() const { return checkpointing_; }

 private:
  StackOptions options_;
  config::Checkpointing checkpointing_ = config::Checkpointing::None;
  int64_t checkpoint_layers_ = 0;
  bool half_blocks_ = false;
  std::shared_ptr<nn::Embedding> wte_, wpe_;
  std::shared_ptr<Container> h_;
  std::vector<std::shared_ptr<Block>> blocks_;
  Norm ln_f_;
};

// Applies memory.checkpointing and memory.checkpoint_layers to every stack of a model; with
// memory.offload (the checkpoint inputs then cost no memory) full checkpointing uses half-blocks.
void set_checkpointing(nn::Module& model, const config::MemoryConfig& memory);

// The MaskSpec of model.attention for a stack: causal (decoder) or bidirectional (encoder) form.
// The pattern `linear` has no mask (None). Sliding window w: keys q-w+1..q (decoder) or
// q-w+1..q+w-1 (encoder); dilated: w keys each side, dilation apart; longformer / bigbird: the
// sliding window plus global tokens 0..global_tokens-1; bigbird adds random_blocks random key
// blocks of block_size per query block, seeded from (run.seed, layer).
MaskSpec mask_for_pattern(const config::AttentionConfig& attention, bool causal, uint64_t run_seed, int64_t layer);

// The output embedding of an untied model, lm_head.weight [V, C], drawn from seeds.next().
Tensor untied_lm_head(Container& lm_head, int64_t vocab, int64_t d_model, ParameterSeeds& seeds, DType dtype);

// logits [..., V] of x [..., C] against the output embedding W [V, C]: x @ W^T.
Tensor lm_logits(const Tensor& x, const Tensor& output_embedding);
// int32 argmax over the last axis of logits [N, V], shaped `shape` (no gradient).
Tensor argmax_last(const Tensor& logits, const Shape& shape);
// Targets not equal to ignore_index.
int64_t count_scored(const Tensor& targets, int32_t ignore_index);

}  // namespace strand::models
