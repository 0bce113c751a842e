// Head pruning under sequence parallelism: run_prune at sp = 2 with ring attention (zigzag and
// contiguous) scores the heads as one process does (the gate gradients summed over the ranks),
// removes the same heads and reaches the same losses and head entropies; under Ulysses it scores them alike and
// removes them two at a time per layer, so that every layer splits over the two ranks.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/train/prune.h"
#include "models/model.h"
#include "parallel/comm/group.h"

namespace strand::parallel {
namespace {

// A small causal GPT with 4 heads in each of 2 layers, and its freshly initialised weights as
// the checkpoint to prune.
train::Config config(const std::string& dir, const std::vector<std::string>& overrides) {
  std::vector<std::string> o = {"run.dir=" + dir, "prune.importance_batches=2", "prune.finetune_steps=2",
                                "prune.heads_fraction=0.25", "train.eval_batches=2", "train.lr=0.003"};
  o.insert(o.end(), overrides.begin(), overrides.end());
  return train::parse_config("model: {vocab_size: 16, n_layer: 2, n_head: 4, d_model: 16, max_seq_len: 32}\n"
                             "data: {format: synthetic, task: copy, seq_len: 32, batch_size: 2}\n",
                             "prune.yaml", o);
}

io::CheckpointData weights(const train::Config& c) {
  io::CheckpointData data;
  for (const auto& [name, p] : models::build_model(c)->named_parameters()) data.model.tensors.emplace_back(name, p);
  return data;
}

void expect_close(double got, double want, double rel, const std::string& what) {
  EXPECT_LE(std::abs(got - want), rel * std::abs(want)) << what << ": " << got << " vs " << want;
}

TEST(PruneSp, RingRemovesTheHeadsOneProcessRemovesWithTheSameLosses) {
  if (world().size() != 2) GTEST_SKIP() << "needs 2 ranks";
  // Every rank runs one config (run.dir included); nothing is written (write_files false).
  const std::string dir = "runs/prune_mpitest";
  const train::Config one = config(dir + "/one", {});
  const std::vector<train::PruneRound> want = train::run_prune(one, weights(one), nullptr, {nullptr, false});
  for (const char* layout : {"zigzag", "contiguous"}) {
    const train::Config sp = config(dir + "/" + layout, {"parallel.sp=2", std::string("parallel.layout=") + layout});
    const std::vector<train::PruneRound> got = train::run_prune(sp, weights(sp), &world(), {nullptr, false});
    ASSERT_EQ(got.size(), want.size());
    const train::PruneRound &g = got.back(), &w = want.back();
    EXPECT_EQ(g.kept_heads, w.kept_heads) << layout;
    EXPECT_EQ(g.parameters, w.parameters);
    for (size_t l = 0; l < w.scores.size(); ++l)
      for (size_t h = 0; h < w.scores[l].size(); ++h)
        expect_close(g.scores[l][h], w.scores[l][h], 1e-5, std::string(layout) + " score");
    expect_close(got[0].val_loss, want[0].val_loss, 1e-6, std::string(layout) + " val loss before pruning");
    expect_close(g.val_loss_pruned, w.val_loss_pruned, 1e-6, std::string(layout) + " val loss after pruning");
    expect_close(g.val_loss, w.val_loss, 1e-5, std::string(layout) + " val loss after fine-tuning");
    // Each head's mean attention entropy over the validation rows, which the two ranks split.
    ASSERT_FALSE(w.entropy.empty());
    ASSERT_EQ(g.entropy.size(), w.entropy.size()) << layout;
    for (size_t r = 0; r < got.size(); ++r)
      for (size_t l = 0; l < want[r].entropy.size(); ++l) {
        ASSERT_EQ(got[r].entropy[l].size(), want[r].entropy[l].size());
        for (size_t h = 0; h < want[r].entropy[l].size(); ++h)
          expect_close(got[r].entropy[l][h], want[r].entropy[l][h], 1e-5, std::string(layout) + " entropy");
      }
  }
}

TEST(PruneSp, UlyssesRemovesHeadsInBlocksItCanSplit) {
  if (world().size() != 2) GTEST_SKIP() << "needs 2 ranks";
  // 1 of 8 heads asked for: Ulysses over 2 ranks removes 2 from one layer (a layer of 3 heads
  // could not be split), scored as one process scores them.
  const std::string dir = "runs/prune_mpitest";
  const train::Config one = config(dir + "/one", {"prune.heads_fraction=0.125"});
  const std::vector<train::PruneRound> want = train::run_prune(one, weights(one), nullptr, {nullptr, false});
  const train::Config u =
      config(dir + "/u", {"parallel.sp=2", "parallel.sp_mode=ulysses", "prune.heads_fraction=0.125"});
  const std::vector<train::PruneRound> got = train::run_prune(u, weights(u), &world(), {nullptr, false});
  ASSERT_EQ(got.size(), 2u);
  int64_t heads = 0;
  for (const auto& kept : got[1].kept_heads) {
    EXPECT_EQ(kept.size() % 2, 0u) << "a layer's heads do not split over the 2 Ulysses ranks";
    heads += static_cast<int64_t>(kept.size());
  }
  EXPECT_EQ(heads, 6);
  for (size_t l = 0; l < want[1].scores.size(); ++l)
    for (size_t h = 0; h < want[1].scores[l].size(); ++h)
      expect_close(got[1].scores[l][h], want[1].scores[l][h], 1e-5, "ulysses score");
  expect_close(got[0].val_loss, want[0].val_loss, 1e-6, "ulysses val loss before pruning");
  EXPECT_TRUE(std::isfinite(got[1].val_loss));
  // The entropy of the heads Ulysses kept: each rank's rows with every head, as at one rank.
  for (size_t r = 0; r < got.size(); ++r)
    if (!want[r].entropy.empty() && got[r].kept_heads == want[r].kept_heads)
      for (size_t l = 0; l < want[r].entropy.size(); ++l)
        for (size_t h = 0; h < want[r].entropy[l].size(); ++h)
          expect_close(got[r].entropy[l][h], want[r].entropy[l][h], 1e-5, "ulysses entropy");
  ASSERT_FALSE(got[1].entropy.empty());
  for (double e : got[1].entropy[0]) EXPECT_GT(e, 0.0);
}

}  // namespace
}  // namespace strand::parallel
