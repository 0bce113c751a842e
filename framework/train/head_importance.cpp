// Head gates, importance by gate gradients, attention entropy per head, and the choice of the
// heads to remove (head_importance.h).
#include "framework/train/head_importance.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>

#include "framework/autograd/grad_mode.h"
#include "framework/core/error.h"
#include "framework/train/components.h"
#include "framework/train/pruned_heads.h"
#include "parallel/attention_stats.h"
#include "parallel/comm/group.h"

namespace strand::train {
namespace {

// Query heads per unit of heads_to_keep: a GQA group, else 1.
int64_t unit_size(const config::ModelConfig& m) {
  const int64_t kv = m.n_kv_head == 0 ? m.n_head : m.n_kv_head;
  return (kv > 1 && kv < m.n_head) ? m.n_head / kv : 1;
}

void sum_over(parallel::Group* group, std::vector<double>& values) {
  if (group != nullptr && group->size() > 1) group->all_reduce(std::span<double>(values));
}

}  // namespace

std::vector<nn::MultiHeadAttention*> self_attention_layers(nn::Module& model) {
  std::vector<nn::MultiHeadAttention*> layers;
  model.visit([&](nn::Module& m) {
    if (auto* attn = dynamic_cast<nn::MultiHeadAttention*>(&m)) layers.push_back(attn);
  });
  return layers;
}

HeadGates::HeadGates(nn::Module& model) : layers_(self_attention_layers(model)) {
  const auto params = model.named_parameters();
  const DType dtype = params.empty() ? DType::F32 : params.front().second.dtype();
  for (nn::MultiHeadAttention* attn : layers_) {
    Tensor gate = Tensor::ones({attn->n_head()}, dtype);
    gate.set_requires_grad(true);
    attn->set_head_gate(gate);
    gates_.push_back(gate);
  }
}

HeadGates::~HeadGates() {
  for (nn::MultiHeadAttention* attn : layers_) attn->set_head_gate(Tensor());
}

HeadTable normalise_per_layer(HeadTable scores) {
  for (auto& row : scores) {
    double sq = 0.0;
    for (double v : row) sq += v * v;
    if (sq > 0.0)
      for (double& v : row) v /= std::sqrt(sq);
  }
  return scores;
}

HeadTable head_importance(Trainer& trainer, data::Loader& loader, int64_t batches) {
  STRAND_CHECK(batches >= 1, ValueError, "head importance: prune.importance_batches must be >= 1, got ", batches);
  HeadGates gates(trainer.model());
  HeadTable importance;
  for (const Tensor& g : gates.gates()) importance.emplace_back(static_cast<size_t>(g.numel()), 0.0);
  for (int64_t b = 0; b < batches; ++b) {
    const GradientPass pass = trainer.forward_backward(loader, 1);
    // Each rank's gate gradient is that of its own summed loss: sum them, then the mean loss's.
    std::vector<double> grads;
    for (const Tensor& g : gates.gates()) {
      const Tensor grad = g.grad();
      const std::vector<double> v = grad.defined() ? grad.to_vector() : std::vector<double>(g.numel(), 0.0);
      grads.insert(grads.end(), v.begin(), v.end());
    }
    sum_over(trainer.group(), grads);
    size_t at = 0;
    for (size_t l = 0; l < importance.size(); ++l) {
      for (double& v : importance[l]) v += std::abs(grads[at++]) / static_cast<double>(pass.scored_tokens);
      Tensor g = gates.gates()[l];
      g.zero_grad();
    }
  }
  trainer.model().zero_grad();
  return importance;
}

HeadTable head_entropy(Trainer& trainer, data::Loader& loader, int64_t batches) {
  const parallel::SequenceShard& shard = trainer.sharder().sequence_shard();
  std::vector<nn::MultiHeadAttention*> layers = self_attention_layers(trainer.model());
  std::vector<double> sums, rows(layers.size(), 0.0);
  std::vector<size_t> offset;
  for (auto* attn : layers) {
    offset.push_back(sums.size());
    sums.resize(sums.size() + static_cast<size_t>(attn->n_head()), 0.0);
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    nn::MultiHeadAttention* attn = layers[l];
    attn->set_attention_probe([&, l, attn](const Tensor& q, const Tensor& k, const Tensor& lse) {
      // This rank's rows (all heads) at their global positions; summed over every rank below.
      const std::vector<double> v =
          parallel::attention_row_stats(q, k, lse, attn->options().mask, 0.0, shard).entropy;  // [B, H, T]
      const int64_t B = q.size(0), H = q.size(1), T = q.size(2);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t head = 0; head < H; ++head)
          for (int64_t t = 0; t < T; ++t) sums[offset[l] + static_cast<size_t>(head)] += v[static_cast<size_t>((b * H + head) * T + t)];
      rows[l] += static_cast<double>(B * T);
    });
  }
  {
    autograd::NoGradGuard no_grad;
    const bool was_training = trainer.model().is_training();
    trainer.model().train(false);
    for (int64_t b = 0; b < batches; ++b) (void)trainer.model().forward(trainer.sharder().shard(loader.next()),
                                                                       trainer.sharder().sequence_shard());
    trainer.model().train(was_training);
  }
  for (auto* attn : layers) attn->set_attention_probe(nullptr);
  sum_over(trainer.group(), sums);
  sum_over(trainer.group(), rows);
  HeadTable entropy;
  for (size_t l = 0; l < layers.size(); ++l) {
    entropy.emplace_back();
    for (int64_t h = 0; h < layers[l]->n_head(); ++h)
      entropy.back().push_back(rows[l] > 0 ? sums[offset[l] + static_cast<size_t>(h)] / rows[l] : 0.0);
  }
  return entropy;
}

int64_t prune_units(const config::ModelConfig& model) {
  int64_t n = 0;
  for (const auto& heads : kept_query_heads(model)) n += static_cast<int64_t>(heads.size()) / unit_size(model);
  return n;
}

int64_t original_prune_units(const config::ModelConfig& model) { return model.n_layer * model.n_head / unit_size(model); }

std::vector<std::vector<int64_t>> heads_to_keep(const config::Config& config, const HeadTable& scores,
                                                int64_t remove) {
  const config::ModelConfig& m = config.model;
  const auto heads = kept_query_heads(m);
  STRAND_CHECK(scores.size() == heads.size(), ValueError, "prune: scores for ", scores.size(), " layers, the model has ",
               heads.size());
  const int64_t size = unit_size(m);
  // Note [Pruned heads under Ulysses]: a layer must keep a multiple of the Ulysses group's u
  // units, so units go u at a time per layer (u = 1 under ring attention and at sp = 1).
  const int64_t u = ulysses_degree_of(config);
  STRAND_CHECK(remove % u == 0, ValueError, "prune: ", remove, " heads", size > 1 ? " groups" : "",
               " do not go in blocks of the Ulysses group's ", u, " ranks");
  struct Unit {
    double score;
    int64_t first;  // position of its first query head in the layer
  };
  // Each layer's units, lowest score first (ties: lower position first); blocks of u of them.
  std::vector<std::vector<Unit>> units(heads.size());
  for (size_t l = 0; l < heads.size(); ++l) {
    const int64_t n = static_cast<int64_t>(heads[l].size());
    STRAND_CHECK(static_cast<int64_t>(scores[l].size()) == n, ValueError, "prune: layer ", l, " has ", n,
                 " heads but ", scores[l].size(), " scores");
    for (int64_t first = 0; first < n; first += size) {
      double sc = 0.0;
      for (int64_t h = first; h < first + size; ++h) sc += scores[l][static_cast<size_t>(h)];
      units[l].push_back({sc, first});
    }
    std::stable_sort(units[l].begin(), units[l].end(), [](const Unit& a, const Unit& b) { return a.score < b.score; });
  }
  // Global greedy: the lowest next block of any layer goes (ties: the lower layer), while the
  // layer keeps at least one block. With u = 1 this is the lowest `remove` units over all layers.
  std::vector<size_t> taken(heads.size(), 0);
  std::vector<std::vector<bool>> gone(heads.size());
  for (size_t l = 0; l < heads.size(); ++l) gone[l].assign(heads[l].size(), false);
  for (int64_t removed = 0; removed < remove; removed += u) {
    size_t best = heads.size();
    double best_score = 0.0;
    for (size_t l = 0; l < heads.size(); ++l) {
      if (taken[l] + 2 * static_cast<size_t>(u) > units[l].size()) continue;  // its last block stays
      double sc = 0.0;
      for (int64_t j = 0; j < u; ++j) sc += units[l][taken[l] + static_cast<size_t>(j)].score;
      if (best == heads.size() || sc < best_score) best = l, best_score = sc;
    }
    STRAND_CHECK(best < heads.size(), ValueError, "prune: cannot remove ", remove, " more heads",
                 size > 1 ? " groups" : "", " and keep ", u == 1 ? "one" : detail::concat(u, " (the Ulysses group)"),
                 " in each of the ", heads.size(), " layers");
    for (int64_t j = 0; j < u; ++j) {
      const Unit& unit = units[best][taken[best]++];
      for (int64_t h = unit.first; h < unit.first + size; ++h) gone[best][static_cast<size_t>(h)] = true;
    }
  }
  std::vector<std::vector<int64_t>> keep(heads.size());
  for (size_t l = 0; l < heads.size(); ++l)
    for (size_t h = 0; h < heads[l].size(); ++h)
      if (!gone[l][h]) keep[l].push_back(static_cast<int64_t>(h));
  return keep;
}

}  // namespace strand::train
