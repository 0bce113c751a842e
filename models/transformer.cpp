// Shared model pieces: blocks, stacks, mask patterns, GPT-2 initialisation, loss helpers.
#include "models/transformer.h"

#include <cmath>

#include "framework/autograd/checkpoint.h"
#include "framework/core/error.h"
#include "framework/nn/autocast.h"
#include "framework/ops/dispatch.h"
#include "framework/ops/dropout.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/linear.h"
#include "framework/ops/matmul.h"
#include "framework/ops/reduce.h"
#include "framework/ops/view.h"

namespace strand::models {
namespace {

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Residual dropout sites of a block, and the embedding site of a stack.
enum DropoutSite : int64_t { kAttnSite = 0, kCrossSite = 1, kMlpSite = 2, kEmbeddingSite = 3 };

// norm(x), marked for selective checkpointing: recomputed from x (which the norm keeps anyway)
// where a later op saves it (autograd::recomputable; a no-op outside a RecomputeScope).
Tensor recomputable_norm(const Norm& norm, const Tensor& x) {
  return autograd::recomputable(norm.forward(x), [norm, xd = x.detach()] { return norm.forward(xd); });
}

}  // namespace

uint64_t derive_seed(uint64_t base, std::initializer_list<uint64_t> parts) {
  uint64_t s = mix64(base);
  for (uint64_t p : parts) s = mix64(s ^ mix64(p));
  return s;
}

Tensor shard_positions(const parallel::SequenceShard& shard, int64_t seq_len, const char* model) {
  if (!shard.positions.defined()) return Tensor::arange(seq_len, DType::I32);
  const Tensor& p = shard.positions;
  STRAND_CHECK(p.dtype() == DType::I32 && p.dim() == 1 && p.size(0) == seq_len, ShapeError, model,
               ": shard positions must be int32 [T] with T = ", seq_len, ", got ", describe(p));
  return p;
}

Norm Norm::make(config::NormKind kind, int64_t features, DType dtype) {
  Norm n;
  if (kind == config::NormKind::RMSNorm) n.rms_norm = std::make_shared<nn::RMSNorm>(features, 1e-6, dtype);
  else n.layer_norm = std::make_shared<nn::LayerNorm>(features, 1e-5, true, dtype);
  return n;
}

std::shared_ptr<nn::Module> Norm::module() const {
  if (layer_norm) return layer_norm;
  return rms_norm;
}

Tensor Norm::forward(const Tensor& x) const { return layer_norm ? layer_norm->forward(x) : rms_norm->forward(x); }

int64_t global_seq_len(const parallel::SequenceShard& shard, int64_t local_len) {
  if (shard.seq_len > 0) return shard.seq_len;
  if (shard.layout) return shard.layout->seq_len();
  return local_len * shard.size();
}

// Note [Sharded dropout]
// Unsharded, element (b, t, c) of a contiguous [B, N, C] activation is element (b*N + t)*C + c
// of the Philox dropout stream. A sequence shard holds rows at global positions pos[t], in
// the layout's order (zigzag: two chunks far apart), so it gives ops::dropout one counter offset
// per row, (b*N + pos[t])*C: every token draws the bits it draws unsharded, whatever the layout
// and the number of ranks. The unsharded plan keeps the single-offset call (the same counters).
DropoutPlan DropoutPlan::make(double p, uint64_t run_seed, int64_t step, const parallel::SequenceShard& shard,
                              const Tensor& positions) {
  DropoutPlan plan;
  plan.p = p;
  plan.run_seed = run_seed;
  plan.step = step;
  const bool sharded = shard.positions.defined() || !shard.local();
  if (p > 0.0 && sharded) {
    plan.positions = positions;
    plan.seq_len = global_seq_len(shard, positions.size(0));
  }
  return plan;
}

Tensor DropoutPlan::apply(const Tensor& x, int64_t layer, int64_t site) const {
  if (p == 0.0) return x;
  const uint64_t seed = derive_seed(run_seed, {kDropoutSalt, static_cast<uint64_t>(step), static_cast<uint64_t>(layer),
                                               static_cast<uint64_t>(site)});
  if (!positions.defined()) return ops::dropout(x, p, seed);
  STRAND_CHECK(x.dim() == 3 && x.size(1) == positions.size(0), ShapeError, "dropout plan: activation ", describe(x),
               " is not [B, T, C] with T = ", positions.size(0), " shard positions");
  const int64_t batch = x.size(0), rows = x.size(1), channels = x.size(2);
  const Tensor pos = ops::contiguous_data(positions);
  const int32_t* at = pos.data<int32_t>();
  std::vector<uint64_t> offsets(static_cast<size_t>(batch * rows));
  for (int64_t t = 0; t < rows; ++t) {
    // Outside [0, N) a token would draw another row's counters.
    STRAND_CHECK(at[t] >= 0 && at[t] < seq_len, ValueError, "dropout plan: shard position ", at[t],
                 " is outside the sequence of ", seq_len, " positions (set parallel::SequenceShard::seq_len)");
  }
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < rows; ++t)
      offsets[static_cast<size_t>(b * rows + t)] = static_cast<uint64_t>((b * seq_len + at[t]) * channels);
  return ops::dropout(x, p, seed, std::move(offsets));
}

MaskSpec mask_for_pattern(const config::AttentionConfig& a, bool causal, uint64_t run_seed, int64_t layer) {
  using config::AttentionPattern;
  const int64_t w = a.window;
  MaskSpec m;
  switch (a.pattern) {
    case AttentionPattern::Full:
    case AttentionPattern::Causal:
    case AttentionPattern::Linear:
      break;
    case AttentionPattern::Sliding:
      m = MaskSpec::sliding(w - 1, causal ? 0 : w - 1);
      break;
    case AttentionPattern::Dilated:
      m = MaskSpec::sliding((w - 1) * a.dilation, causal ? 0 : (w - 1) * a.dilation);
      m.kind = MaskKind::Dilated;
      m.dilation = a.dilation;
      break;
    case AttentionPattern::Longformer:
    case AttentionPattern::BigBird:
      m = MaskSpec::sliding(w - 1, causal ? 0 : w - 1);
      m.kind = a.pattern == AttentionPattern::Longformer ? MaskKind::Longformer : MaskKind::BigBird;
      for (int64_t g = 0; g < a.global_tokens; ++g) m.global_tokens.push_back(g);
      m.block_size = a.block_size;
      m.random_blocks = a.random_blocks;
      m.seed = derive_seed(run_seed, {kLayerSalt, static_cast<uint64_t>(layer), 1});
      break;
  }
  m.causal = causal;  // Note [Causal patterns] in nn/attention.cpp
  return m;
}

Block::Block(const StackOptions& o, int64_t layer, ParameterSeeds& seeds) : layer_(o.layer_base + layer) {
  const double proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(o.n_layer));
  nn::AttentionOptions a;
  a.n_kv_head = o.n_kv_head;
  int64_t n_head = o.n_head;
  if (!o.layer_heads.empty()) {  // a pruned layer: its own head counts, each head as wide as before
    n_head = o.layer_heads.at(static_cast<size_t>(layer));
    a.n_kv_head = o.layer_kv_heads.at(static_cast<size_t>(layer));
    a.head_dim = o.d_model / o.n_head;
  }
  a.rope = o.pos == config::PosEncoding::Rope;
  a.linear = o.attention.pattern == config::AttentionPattern::Linear;
  a.mask = mask_for_pattern(o.attention, o.causal, o.run_seed, layer_);
  a.projection_seed = derive_seed(o.run_seed, {kLayerSalt, static_cast<uint64_t>(layer_), 0});
  a.proj_init_std = proj_std;
  a.dtype = o.dtype;

  // Each child is built right before it is registered, so `seeds` counts in named_parameters order.
  ln_1_ = Norm::make(o.norm, o.d_model, o.dtype);
  register_module("ln_1", seeds.counted(ln_1_.module()));
  a.seed = seeds.next();
  attn_ = register_module("attn", seeds.counted(std::make_shared<nn::MultiHeadAttention>(o.d_model, n_head, a)));
  ln_2_ = Norm::make(o.norm, o.d_model, o.dtype);
  register_module("ln_2", seeds.counted(ln_2_.module()));
  if (o.cross_attention) {
    nn::AttentionOptions c = a;  // cross-attention is never pruned: all n_head heads
    c.n_kv_head = o.n_kv_head;
    c.head_dim = 0;
    c.seed = seeds.next();
    cross_ = register_module("crossattention",
                             seeds.counted(std::make_shared<nn::CrossAttention>(o.d_model, o.n_head, c)));
    ln_cross_ = Norm::make(o.norm, o.d_model, o.dtype);
    register_module("ln_cross_attn", seeds.counted(ln_cross_.module()));
  }
  nn::MlpOptions m;
  m.swiglu = o.swiglu;
  m.seed = seeds.next();
  m.proj_init_std = proj_std;
  m.dtype = o.dtype;
  mlp_ = register_module("mlp", seeds.counted(std::make_shared<nn::Mlp>(o.d_model, o.d_ff, m)));
}

Tensor Block::forward(const Tensor& x, const Tensor& positions, const Tensor& memory, const DropoutPlan& dropout,
                      const parallel::SequenceShard& shard) const {
  return mlp_half(attention_half(x, positions, memory, dropout, shard), dropout);
}

Tensor Block::attention_half(const Tensor& x, const Tensor& positions, const Tensor& memory,
                             const DropoutPlan& dropout, const parallel::SequenceShard& shard) const {
  Tensor h =
      ops::add(x, dropout.apply(attn_->forward(recomputable_norm(ln_1_, x), positions, shard), layer_, kAttnSite));
  if (cross_) {
    STRAND_CHECK(memory.defined(), ValueError, "block ", layer_, ": cross-attention needs the encoder output");
    h = ops::add(h, dropout.apply(cross_->forward(recomputable_norm(ln_cross_, h), memory, shard), layer_, kCrossSite));
  }
  return h;
}

Tensor Block::mlp_half(const Tensor& h, const DropoutPlan& dropout) const {
  return ops::add(h, dropout.apply(mlp_->forward(recomputable_norm(ln_2_, h)), layer_, kMlpSite));
}

std::vector<Tensor> Block::attention_parameters() const {
  std::vector<Tensor> p = ln_1_.module()->parameters();
  for (const Tensor& t : attn_->parameters()) p.push_back(t);
  if (cross_) {
    for (const Tensor& t : cross_->parameters()) p.push_back(t);
    for (const Tensor& t : ln_cross_.module()->parameters()) p.push_back(t);
  }
  return p;
}

std::vector<Tensor> Block::mlp_parameters() const {
  std::vector<Tensor> p = ln_2_.module()->parameters();
  for (const Tensor& t : mlp_->parameters()) p.push_back(t);
  return p;
}

StackOptions stack_options(const config::ModelConfig& c, uint64_t run_seed, DType dtype) {
  StackOptions o;
  o.d_model = c.d_model;
  o.n_head = c.n_head;
  o.n_kv_head = c.n_kv_head == 0 ? c.n_head : c.n_kv_head;
  o.d_ff = c.d_ff == 0 ? 4 * c.d_model : c.d_ff;
  o.n_layer = c.n_layer;
  o.vocab_size = c.vocab_size;
  o.max_seq_len = c.max_seq_len;
  o.pos = c.pos;
  o.norm = c.norm;
  o.swiglu = c.activation == config::Activation::SwiGLU;
  o.attention = c.attention;
  for (const auto& kept : c.kept_heads) o.layer_heads.push_back(static_cast<int64_t>(kept.size()));
  for (const auto& kept : c.kept_kv_heads) o.layer_kv_heads.push_back(static_cast<int64_t>(kept.size()));
  o.run_seed = run_seed;
  o.dtype = dtype;
  return o;
}

Stack::Stack(const StackOptions& o, ParameterSeeds& seeds) : options_(o) {
  STRAND_CHECK(o.n_layer >= 1, ValueError, "stack: n_layer must be >= 1, got ", o.n_layer);
  STRAND_CHECK((o.layer_heads.empty() || static_cast<int64_t>(o.layer_heads.size()) == o.n_layer) &&
                   o.layer_kv_heads.size() == o.layer_heads.size(),
               ValueError, "stack: a pruned model needs the query and key/value head counts of each of its ", o.n_layer,
               " layers, got ", o.layer_heads.size(), " and ", o.layer_kv_heads.size());
  if (o.token_embedding)
    wte_ = register_module("wte", seeds.counted(std::make_shared<nn::Embedding>(o.vocab_size, o.d_model, seeds.next(),
                                                                                o.dtype, 0.02)));
  if (o.pos == config::PosEncoding::Learned)
    wpe_ = register_module("wpe", seeds.counted(std::make_shared<nn::Embedding>(o.max_seq_len, o.d_model, seeds.next(),
                                                                                o.dtype, 0.02)));
  h_ = register_module("h", std::make_shared<Container>());
  for (int64_t i = 0; i < o.n_layer; ++i)
    blocks_.push_back(h_->add(std::to_string(i), std::make_shared<Block>(o, i, seeds)));  // counts its own
  ln_f_ = Norm::make(o.norm, o.d_model, o.dtype);
  register_module("ln_f", seeds.counted(ln_f_.module()));
}

Tensor Stack::embed(const Tensor& ids, const Tensor& positions, const nn::Embedding& wte,
                    const DropoutPlan& dropout) const {
  STRAND_CHECK(ids.defined() && ids.dtype() == DType::I32 && ids.dim() == 2, ShapeError,
               "model: inputs must be int32 [B, T], got ", ids.defined() ? describe(ids) : "undefined");
  Tensor x = wte.forward(ids);
  if (wpe_) {
    int64_t last = -1;
    for (double p : positions.to_vector()) last = std::max(last, static_cast<int64_t>(p));
    STRAND_CHECK(last < options_.max_seq_len, ValueError, "model: token position ", last,
                 " is past the learned position table of model.max_seq_len = ", options_.max_seq_len, " rows");
    x = ops::add(x, wpe_->forward(positions));
  }
  return dropout.apply(x, options_.layer_base, kEmbeddingSite);
}

Tensor Stack::run(Tensor x, const Tensor& positions, const Tensor& memory, const DropoutPlan& dropout,
                  const parallel::SequenceShard& shard, std::vector<Tensor>* layer_outputs) const {
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const std::shared_ptr<Block>& block = blocks_[i];
    const bool checked = checkpointing_ != config::Checkpointing::None &&
                         (checkpoint_layers_ == 0 || static_cast<int64_t>(i) < checkpoint_layers_);
    // With a loss on the layer outputs (distillation's hidden-state term), a full checkpoint
    // exposes its input, the previous block's output, and the loss reads that: its gradient then
    // enters this block's rerun ahead of the block's own two, where the unchecked backward adds
    // it, so the gradients stay bitwise those of the plain run (autograd::expose).
    const bool expose_input = layer_outputs != nullptr && i > 0 && checked &&
                              checkpointing_ == config::Checkpointing::Full;
    auto exposed = std::make_shared<Tensor>();
    auto expose = [expose_input, exposed](const Tensor& input) {
      if (expose_input) autograd::expose(input, [exposed](const Tensor& t) { *exposed = t; });
    };
    if (!checked) {
      x = block->forward(x, positions, memory, dropout, shard);
    } else if (checkpointing_ == config::Checkpointing::Full && half_blocks_) {
      // Half-blocks: the attention and the MLP are two checkpointed pieces, so a rerun holds one
      // half's activations, not the whole block's; the extra input each block saves (h) goes
      // to disk with the block input (docs/memory.md).
      auto attention = [block, positions, dropout, shard, expose](const std::vector<Tensor>& in) {
        expose(in[0]);
        autograd::RecomputeScope scope(/*matmuls=*/false);
        return block->attention_half(in[0], positions, in[1], dropout, shard);
      };
      auto mlp = [block, dropout](const std::vector<Tensor>& in) {
        autograd::RecomputeScope scope(/*matmuls=*/false);
        return block->mlp_half(in[0], dropout);
      };
      x = autograd::checkpoint(attention, {x, memory}, block->attention_parameters(), "checkpoint_attention");
      x = autograd::checkpoint(mlp, {x}, block->mlp_parameters(), "checkpoint_mlp");
    } else if (checkpointing_ == config::Checkpointing::Full) {
      // The block keeps only its inputs; its forward (the sequence-parallel exchange included)
      // reruns in the backward with the same positions, dropout seeds and groups (docs/memory.md).
      // The rerun marks its norms, activations and the head-merged copy of attention's output as
      // recipes too (selective inside full, keeping c_fc's output), so the backward holds 10 C
      // of one block's 17 C floats a token instead of all of them.
      auto rerun = [block, positions, dropout, shard, expose](const std::vector<Tensor>& in) {
        expose(in[0]);
        autograd::RecomputeScope scope(/*matmuls=*/false);
        return block->forward(in[0], positions, in[1], dropout, shard);
      };
      x = autograd::checkpoint(rerun, {x, memory}, block->parameters(), "checkpoint_block");
    } else {
      autograd::RecomputeScope scope;  // norms and activations saved as recipes
      x = block->forward(x, positions, memory, dropout, shard);
    }
    if (layer_outputs != nullptr) {
      if (exposed->defined()) layer_outputs->back() = *exposed;
      layer_outputs->push_back(x);
    }
  }
  return ln_f_.forward(x);
}

void Stack::set_checkpointing(config::Checkpointing mode, int64_t layers, bool half_blocks) {
  checkpointing_ = mode;
  checkpoint_layers_ = layers;
  half_blocks_ = half_blocks;
}

void set_checkpointing(nn::Module& model, const config::MemoryConfig& memory) {
  // Without offload a half-block's input (C floats a token per block) would stay in memory and
  // outweigh the smaller rerun; with it, the inputs are on disk and only the rerun counts.
  const bool half_blocks = memory.offload != config::Offload::None;
  model.visit([&](nn::Module& m) {
    if (auto* stack = dynamic_cast<Stack*>(&m))
      stack->set_checkpointing(memory.checkpointing, memory.checkpoint_layers, half_blocks);
  });
}

Tensor untied_lm_head(Container& lm_head, int64_t vocab, int64_t d_model, ParameterSeeds& seeds, DType dtype) {
  Tensor w = lm_head.add_parameter("weight", Tensor::randn({vocab, d_model}, seeds.next(), dtype, 0.02));
  seeds.count(1);
  return w;
}

Tensor lm_logits(const Tensor& x, const Tensor& output_embedding) {
  // On the cpu the head is a linear like Linear's (ops/linear.h: under autocast the embedding
  // rounded in its own layout; its gradient written in that layout, so that it adds to the
  // input embedding's without a transposed read).
  const DType compute = nn::autocast_dtype();
  if (x.device().is_cpu() && output_embedding.dtype() == DType::F32)
    return ops::linear(x, ops::transpose(output_embedding, 0, 1), Tensor(), compute);
  return ops::matmul(nn::autocast(x), ops::transpose(nn::autocast(output_embedding), 0, 1));
}

Tensor argmax_last(const Tensor& logits, const Shape& shape) {
  const Tensor best = ops::argmax(logits, -1);
  STRAND_CHECK(best.numel() == numel_of(shape), ShapeError, "argmax: ", best.numel(), " rows of ",
               describe(logits), " do not fill shape ", shape_str(shape));
  return ops::reshape(best, shape);
}

int64_t count_scored(const Tensor& targets, int32_t ignore_index) {
  const Tensor t = ops::contiguous_data(targets);
  const int32_t* d = t.data<int32_t>();
  int64_t n = 0;
  for (int64_t i = 0; i < t.numel(); ++i) n += d[i] != ignore_index;
  return n;
}

}  // namespace strand::models
