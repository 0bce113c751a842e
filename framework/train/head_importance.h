// Scores of attention heads for pruning: head gates and their accumulated gradients (Michel et
// al. 2019, "Are Sixteen Heads Really Better than One?"), the mean attention entropy of each
// head, and the global choice of the heads to remove (whole key/value groups under GQA).
#pragma once
#include <cstdint>
#include <vector>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/nn/attention.h"
#include "framework/train/trainer.h"
#include "models/model.h"

namespace strand::train {

// Every self-attention module of a model, in layer order.
std::vector<nn::MultiHeadAttention*> self_attention_layers(nn::Module& model);

// Gates xi_h = 1 (requires_grad, the parameters' dtype) on every head of every self-attention
// layer for the guard's lifetime: the forward is unchanged and each gate's gradient is dL/dxi_h.
class HeadGates {
 public:
  explicit HeadGates(nn::Module& model);
  ~HeadGates();
  HeadGates(const HeadGates&) = delete;
  HeadGates& operator=(const HeadGates&) = delete;
  const std::vector<Tensor>& gates() const { return gates_; }

 private:
  std::vector<nn::MultiHeadAttention*> layers_;
  std::vector<Tensor> gates_;
};

// Per layer, per head.
using HeadTable = std::vector<std::vector<double>>;

// Each row divided by its L2 norm (a row of zeros stays zero): Michel et al.'s per-layer
// normalisation, which lets heads of different layers be compared.
HeadTable normalise_per_layer(HeadTable scores);

// Head importance I_h = sum over `batches` gradient passes of |dL/dxi_h|, each pass the mean
// loss of one global batch of `loader` (Trainer::forward_backward: every rank's shard, the gate
// gradients summed over every rank before the absolute value, so the score does not depend on
// the dp x sp layout). The parameters' gradients are zeroed after. Not normalised.
HeadTable head_importance(Trainer& trainer, data::Loader& loader, int64_t batches);

// The mean attention entropy (nats) of each head over the query rows of `batches` batches of
// `loader`, from the kernel's lse (ops::attention_entropy), without gradients; sums over the
// ranks of trainer.group(). Empty when the run has parallel.sp > 1 (a rank does not hold whole
// rows there).
HeadTable head_entropy(Trainer& trainer, data::Loader& loader, int64_t batches);

// The units a round removes: under GQA (1 < n_kv_head < n_head) a key/value head with all its
// query heads, scored by the sum of theirs; otherwise (MHA, and MQA, whose one key/value head
// stays) a query head. Removes the `remove` lowest-scoring units over all layers, never a
// layer's last unit. Under parallel.sp_mode ulysses / hybrid (group of u ranks) units go u at
// a time per layer, the u lowest of the layer scored by their sum, and a layer keeps at least
// u (`remove` must be a multiple of u). Returns, per layer, the positions (among the layer's
// current heads) of the query heads kept.
std::vector<std::vector<int64_t>> heads_to_keep(const config::Config& config, const HeadTable& scores,
                                                int64_t remove);

// Units of the model the config describes (per layer and in all) as heads_to_keep counts them.
int64_t prune_units(const config::ModelConfig& model);
int64_t original_prune_units(const config::ModelConfig& model);

}  // namespace strand::train
