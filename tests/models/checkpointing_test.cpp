// Gradient checkpointing (memory.checkpointing): full and selective give the loss and every
// gradient of the plain run bit for bit, checkpoint_layers checkpoints the first k blocks, and
// full checkpointing lowers the peak of tensor bytes held during a forward and backward.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "framework/autograd/node.h"
#include "framework/config/config.h"
#include "framework/core/allocator.h"
#include "framework/train/components.h"
#include "models/model.h"
#include "models/model_testing.h"

namespace strand::models {
namespace {

using config::Arch;
using config::Checkpointing;

config::Config tiny(Arch arch, int64_t n_layer = 3) {
  config::Config c;
  c.model = testing::tiny_config(arch, 13, 16, n_layer, 24);
  c.run.seed = 5;
  return c;
}

struct Outcome {
  std::vector<float> loss;
  std::vector<std::vector<float>> grads;  // in named_parameters order
};

std::vector<float> floats(const Tensor& t) {
  const Tensor c = t.copy_as(DType::F32, t.device());
  std::vector<float> v(static_cast<size_t>(c.numel()));
  std::memcpy(v.data(), c.raw_data(), v.size() * sizeof(float));
  return v;
}

Outcome run_once(config::Config c, Checkpointing mode, int64_t layers = 0) {
  c.memory.checkpointing = mode;
  c.memory.checkpoint_layers = layers;
  const std::shared_ptr<Model> model = build_model(c);
  model->zero_grad();
  const data::Batch batch = testing::random_batch(2, 20, c.model.vocab_size, 17, /*step=*/3);
  const LossOutput out = model->forward(batch);
  out.loss_sum.backward();
  Outcome r;
  r.loss = floats(out.loss_sum);
  for (const auto& [name, p] : model->named_parameters()) r.grads.push_back(p.grad().defined() ? floats(p.grad()) : std::vector<float>{});
  return r;
}

// Bitwise: the float bits of the loss and of every gradient element.
void expect_same_bits(const Outcome& got, const Outcome& want, const std::string& label) {
  ASSERT_EQ(got.loss.size(), 1u);
  EXPECT_EQ(std::memcmp(got.loss.data(), want.loss.data(), sizeof(float)), 0)
      << label << ": loss " << got.loss[0] << " vs " << want.loss[0];
  ASSERT_EQ(got.grads.size(), want.grads.size()) << label;
  for (size_t i = 0; i < want.grads.size(); ++i) {
    ASSERT_EQ(got.grads[i].size(), want.grads[i].size()) << label << ": parameter " << i;
    ASSERT_FALSE(want.grads[i].empty()) << label << ": parameter " << i << " has no gradient";
    EXPECT_EQ(std::memcmp(got.grads[i].data(), want.grads[i].data(), want.grads[i].size() * sizeof(float)), 0)
        << label << ": gradient of parameter " << i << " differs";
  }
}

TEST(Checkpointing, FullAndSelectiveGiveTheGradientsOfThePlainRunBitForBit) {
  std::vector<std::pair<std::string, config::Config>> cases;
  config::Config gpt = tiny(Arch::Gpt);
  gpt.model.dropout = 0.1;  // the masks come from (seed, step, layer, site): the rerun draws the same
  cases.emplace_back("gpt, dropout 0.1", gpt);
  config::Config llama = tiny(Arch::Gpt);
  llama.model.norm = config::NormKind::RMSNorm;
  llama.model.activation = config::Activation::SwiGLU;
  llama.model.pos = config::PosEncoding::Rope;
  llama.model.n_kv_head = 1;
  cases.emplace_back("gpt, rmsnorm swiglu rope gqa", llama);
  config::Config sliding = tiny(Arch::Gpt);
  sliding.model.attention.pattern = config::AttentionPattern::Sliding;
  cases.emplace_back("gpt, sliding window", sliding);
  config::Config encoder = tiny(Arch::Encoder);
  encoder.model.dropout = 0.1;
  cases.emplace_back("encoder, dropout 0.1", encoder);
  config::Config encdec = tiny(Arch::EncDec);
  encdec.model.dropout = 0.1;
  cases.emplace_back("encdec, dropout 0.1", encdec);
  for (const auto& [label, c] : cases) {
    const Outcome plain = run_once(c, Checkpointing::None);
    expect_same_bits(run_once(c, Checkpointing::Full), plain, label + ", full");
    expect_same_bits(run_once(c, Checkpointing::Selective), plain, label + ", selective");
    expect_same_bits(run_once(c, Checkpointing::Full, 2), plain, label + ", full, first 2 blocks");
    // With memory.offload set, full checkpointing checkpoints half-blocks (attention, MLP).
    config::Config halves = c;
    halves.memory.offload = config::Offload::Disk;
    expect_same_bits(run_once(halves, Checkpointing::Full), plain, label + ", full, half-blocks");
    expect_same_bits(run_once(halves, Checkpointing::Full, 2), plain, label + ", full, half-blocks, first 2");
  }
}

// The checkpoint nodes (of whole blocks, or of one kind of half-block) of a graph, in the order
// a walk from the root meets them.
std::vector<const autograd::Node*> checkpoint_nodes(const Tensor& root, const std::string& kind = "checkpoint_block") {
  std::vector<const autograd::Node*> found, stack{root.grad_fn().get()};
  std::unordered_set<const autograd::Node*> seen;
  while (!stack.empty()) {
    const autograd::Node* n = stack.back();
    stack.pop_back();
    if (n == nullptr || !seen.insert(n).second) continue;
    if (n->name() == kind) found.push_back(n);
    for (const auto& e : n->next_edges) stack.push_back(e.node.get());
  }
  return found;
}

TEST(Checkpointing, CheckpointLayersChecksTheFirstKBlocks) {
  config::Config c = tiny(Arch::Gpt, 4);
  c.memory.checkpointing = Checkpointing::Full;
  c.memory.checkpoint_layers = 2;
  const std::shared_ptr<Model> model = build_model(c);
  const data::Batch batch = testing::random_batch(1, 12, c.model.vocab_size, 3);
  const Tensor loss = model->forward(batch).loss_sum;
  const std::vector<const autograd::Node*> nodes = checkpoint_nodes(loss);
  ASSERT_EQ(nodes.size(), 2u);
  // Each checkpoint node's edges after its two inputs (x, memory) are its block's parameters.
  std::unordered_set<const autograd::Node*> params;
  for (const autograd::Node* n : nodes)
    for (size_t i = 2; i < n->next_edges.size(); ++i) params.insert(n->next_edges[i].node.get());
  for (const auto& [name, p] : model->named_parameters()) {
    const bool in_first_two = name.rfind("transformer.h.0.", 0) == 0 || name.rfind("transformer.h.1.", 0) == 0;
    EXPECT_EQ(params.count(autograd::gradient_edge(p).node.get()), in_first_two ? 1u : 0u) << name;
  }
  // 0 (the default) checkpoints every block.
  c.memory.checkpoint_layers = 0;
  EXPECT_EQ(checkpoint_nodes(build_model(c)->forward(batch).loss_sum).size(), 4u);
  c.memory.checkpointing = Checkpointing::None;
  EXPECT_EQ(checkpoint_nodes(build_model(c)->forward(batch).loss_sum).size(), 0u);
}

TEST(Checkpointing, WithOffloadFullCheckpointingChecksEachHalfOfABlockWithItsOwnParameters) {
  config::Config c = tiny(Arch::Gpt, 3);
  c.memory.checkpointing = Checkpointing::Full;
  c.memory.checkpoint_layers = 2;
  c.memory.offload = config::Offload::Disk;
  const std::shared_ptr<Model> model = build_model(c);
  const data::Batch batch = testing::random_batch(1, 12, c.model.vocab_size, 3);
  const Tensor loss = model->forward(batch).loss_sum;
  EXPECT_EQ(checkpoint_nodes(loss).size(), 0u);
  const std::vector<const autograd::Node*> attention = checkpoint_nodes(loss, "checkpoint_attention");
  const std::vector<const autograd::Node*> mlp = checkpoint_nodes(loss, "checkpoint_mlp");
  ASSERT_EQ(attention.size(), 2u);
  ASSERT_EQ(mlp.size(), 2u);
  // Edges after the inputs (x, memory; h) are the half's parameters.
  std::unordered_set<const autograd::Node*> attention_params, mlp_params;
  for (const autograd::Node* n : attention)
    for (size_t i = 2; i < n->next_edges.size(); ++i) attention_params.insert(n->next_edges[i].node.get());
  for (const autograd::Node* n : mlp)
    for (size_t i = 1; i < n->next_edges.size(); ++i) mlp_params.insert(n->next_edges[i].node.get());
  for (const auto& [name, p] : model->named_parameters()) {
    const bool checked = name.rfind("transformer.h.0.", 0) == 0 || name.rfind("transformer.h.1.", 0) == 0;
    const bool in_mlp = name.find(".mlp.") != std::string::npos || name.find(".ln_2.") != std::string::npos;
    const autograd::Node* acc = autograd::gradient_edge(p).node.get();
    EXPECT_EQ(attention_params.count(acc), checked && !in_mlp ? 1u : 0u) << name;
    EXPECT_EQ(mlp_params.count(acc), checked && in_mlp ? 1u : 0u) << name;
  }
}

// Peak tensor bytes of one forward and backward, from the allocator's counters.
int64_t peak_bytes(const config::Config& base, Checkpointing mode) {
  config::Config c = base;
  c.memory.checkpointing = mode;
  const std::shared_ptr<Model> model = build_model(c);
  const data::Batch batch = testing::random_batch(1, 256, c.model.vocab_size, 9);
  const int64_t before = memory::stats(Device::cpu()).current_bytes;
  memory::reset_peak(Device::cpu());
  model->forward(batch).loss_sum.backward();
  return memory::stats(Device::cpu()).peak_bytes - before;
}

TEST(Checkpointing, FullCheckpointingLowersThePeakTensorBytes) {
  // Eight blocks of d_model 64 over 256 tokens, a small vocabulary: the blocks' activations
  // dominate the peak. Full keeps one [T, C] input per block plus one block's rerun.
  config::Config c = tiny(Arch::Gpt, 8);
  c.model.d_model = 64;
  c.model.d_ff = 256;
  c.model.n_head = c.model.n_kv_head = 4;
  c.model.max_seq_len = 256;
  const int64_t none = peak_bytes(c, Checkpointing::None);
  const int64_t full = peak_bytes(c, Checkpointing::Full);
  const int64_t selective = peak_bytes(c, Checkpointing::Selective);
  std::printf("peak tensor bytes: none %lld, full %lld, selective %lld\n", static_cast<long long>(none),
              static_cast<long long>(full), static_cast<long long>(selective));
  EXPECT_LT(full, none * 4 / 10);
  EXPECT_LT(selective, none * 8 / 10);
  // Selective keeps no [T, d_ff] tensor of the MLP (c_fc's output is remade by its GEMM) and not
  // the head-merged copy of attention's output: 6 of the 17 C floats a token a block holds.
  EXPECT_LT(selective, none * 6 / 10);
}

// The trainer's memory check counts one [rows, C] input per fully checkpointed block (plus one
// block's rerun), so a long row that fits only with checkpointing is not refused.
TEST(Checkpointing, MemoryEstimateCountsTheBlockInputsOfFullCheckpointing) {
  config::Config c = tiny(Arch::Gpt, 12);
  c.model.d_model = 768;
  c.model.d_ff = 3072;
  c.data.seq_len = 8192;
  c.data.batch_size = 1;
  const double none = train::estimate_memory(c, true).activation_bytes;
  c.memory.checkpointing = Checkpointing::Full;
  const double rows = 8192, bytes = 4;
  EXPECT_DOUBLE_EQ(train::estimate_memory(c, true).activation_bytes, (12 * 768 + 768 + 3072) * rows * bytes);
  c.memory.checkpoint_layers = 4;
  EXPECT_DOUBLE_EQ(train::estimate_memory(c, true).activation_bytes, (4 * 768 + 9 * (768 + 3072)) * rows * bytes);
  EXPECT_LT(train::estimate_memory(c, true).activation_bytes, none);
}

}  // namespace
}  // namespace strand::models
