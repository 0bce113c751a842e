// Multi-head attention modules: self-attention (MHA / GQA / MQA, optional RoPE, any mask pattern
// or Performer linear attention) and cross-attention (queries from x, keys and values from an
// encoder's output). Both reach the attention kernel only through parallel::attention.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

#include "framework/ops/attention_contract.h"
#include "framework/nn/linear.h"
#include "framework/nn/module.h"
#include "parallel/attention.h"

namespace strand::nn {

struct AttentionOptions {
  int64_t n_kv_head = 0;           // key/value heads; 0 = n_head (MHA), fewer = GQA, 1 = MQA
  // Width of one head; 0 = d_model / n_head. A pruned layer keeps its heads' width with fewer
  // heads (n_head * head_dim < d_model): c_attn and c_proj are then narrower (Michel et al. 2019).
  int64_t head_dim = 0;
  bool rope = false;               // rotate q and k by their global positions (ops::rope)
  double rope_base = 10000.0;
  // Which keys a query sees, in global positions (MaskSpec). mask.causal is the one causal
  // switch: no query sees a later position, whatever the kind (Note [Causal patterns]); linear
  // attention reads it too.
  MaskSpec mask;
  bool linear = false;             // Performer linear attention (ops::linear_attention) instead
  int64_t linear_features = 0;     // its random features M; 0 = max(D, round(D ln D))
  uint64_t seed = 0;               // weight init: parameter j of the module draws from seed + j
  uint64_t projection_seed = 0;    // the Performer projection (linear only)
  bool bias = true;
  double init_std = 0.02;          // c_attn (q_attn) weights
  double proj_init_std = 0.02;     // c_proj weights (GPT-2: 0.02 / sqrt(2 n_layer))
  DType dtype = DType::F32;
};

// Self-attention. Parameters (x @ W + b layout, GPT-2 names):
//   c_attn.weight [C, (n_head + 2 n_kv_head) * D], c_attn.bias: the fused q | k | v projection
//     ([C, 3C] for MHA: columns [0, C) are q, [C, 2C) k, [2C, 3C) v; head h is columns h*D..);
//   c_proj.weight [n_head * D, C], c_proj.bias ([C, C] unless the layer is pruned).
// With `linear`, buffer performer_projection [M, D] (not a parameter, so not in checkpoints: it
// is regenerated from projection_seed, which the models derive from run.seed and the layer).
class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t d_model, int64_t n_head, const AttentionOptions& options = {});

  // x [B, T, C]; positions int32 [T] or [B, T], the global positions of x's tokens (rope reads
  // them; the mask assumes local row t sits at q_offset + t of options.mask). -> [B, T, C].
  Tensor forward(const Tensor& x, const Tensor& positions, const parallel::SequenceShard& shard = {}) const;

  // The heads forward attends with: q [B, n_head, T, D], k and v [B, n_kv_head, T, D], rope
  // applied (attention analysis reads q and k).
  struct Heads {
    Tensor q, k, v;
  };
  Heads heads(const Tensor& x, const Tensor& positions) const;

  int64_t n_head() const { return n_head_; }
  int64_t n_kv_head() const { return n_kv_head_; }
  int64_t head_dim() const { return head_dim_; }
  const AttentionOptions& options() const { return options_; }
  const Linear& c_attn() const { return *c_attn_; }
  const Linear& c_proj() const { return *c_proj_; }

  // Head gates for importance scoring (Michel et al. 2019): gate [n_head], each head's output
  // is multiplied by gate[h] before c_proj, so with gate = 1 (requires_grad) the forward is
  // unchanged and gate.grad() is dL/dxi_h. Undefined (the default): no gate, no extra op.
  void set_head_gate(Tensor gate);
  const Tensor& head_gate() const { return head_gate_; }
  // Called by each forward, when set, with the rotated q [B, H, T, D], k [B, Hkv, T, D] and the
  // kernel's lse [B, H, T] (softmax attention): this rank's rows under a sequence shard, as
  // parallel/attention_stats.h takes them. Head pruning's attention entropy and distillation's
  // attention transfer read them. Unset: nothing kept.
  using AttentionProbe = std::function<void(const Tensor& q, const Tensor& k, const Tensor& lse)>;
  void set_attention_probe(AttentionProbe probe) { probe_ = std::move(probe); }

 private:
  int64_t d_model_, n_head_, n_kv_head_, head_dim_;
  AttentionOptions options_;
  std::shared_ptr<Linear> c_attn_, c_proj_;
  Tensor projection_;  // Performer features [M, D], only with options.linear
  Tensor head_gate_;   // [n_head] or undefined
  AttentionProbe probe_;
};

// Cross-attention (the Hugging Face GPT-2 `crossattention` layout):
//   q_attn.weight [C, n_head * D], q_attn.bias: queries from x;
//   c_attn.weight [C, 2 n_kv_head * D], c_attn.bias: k | v from the memory;
//   c_proj.weight [C, C], c_proj.bias.
// Every query sees every memory position (softmax attention, no mask, no rotation).
class CrossAttention : public Module {
 public:
  CrossAttention(int64_t d_model, int64_t n_head, const AttentionOptions& options = {});

  // x [B, Tq, C], memory [B, Tk, C] -> [B, Tq, C].
  Tensor forward(const Tensor& x, const Tensor& memory, const parallel::SequenceShard& shard = {}) const;

  int64_t n_head() const { return n_head_; }
  int64_t n_kv_head() const { return n_kv_head_; }

 private:
  int64_t d_model_, n_head_, n_kv_head_, head_dim_;
  std::shared_ptr<Linear> q_attn_, c_attn_, c_proj_;
};

}  // namespace strand::nn
