// Head pruning: gate gradients against finite differences, importance accumulation, the global
// choice of heads (MHA, GQA, MQA), physical removal against gating the same heads off, the
// /pruning record and every reload of a pruned checkpoint, the Ulysses rule, and run_prune's
// rounds, fine-tuning and seeded random method.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "framework/autograd/grad_mode.h"
#include "framework/io/checkpoint.h"
#include "framework/optim/clip.h"
#include "framework/train/head_importance.h"
#include "framework/train/prune.h"
#include "framework/train/pruned_heads.h"
#include "models/gpt/decoder.h"
#include "models/gpt/gpt.h"
#include "models/model_testing.h"
#include "support/tiny_run.h"

namespace strand::train {
namespace {

using strand::testing::random_batch;
using strand::testing::tiny_config;

// A float64 GPT of 2 layers and 4 heads (kv: key/value heads) for the exact comparisons.
Config model_config(int64_t kv) {
  Config c;
  c.model = tiny_config(config::Arch::Gpt, 11, 16, 2, 16);
  c.model.n_head = 4;
  c.model.n_kv_head = kv;
  c.run.seed = 3;
  return c;
}

std::shared_ptr<models::Gpt> gpt64(const Config& c) {
  return std::make_shared<models::Gpt>(c.model, static_cast<uint64_t>(c.run.seed), DType::F64);
}

double loss_of(models::Model& m, const data::Batch& batch) {
  autograd::NoGradGuard no_grad;
  return m.forward(batch).loss_sum.item();
}

TEST(HeadGates, GradientsMatchFiniteDifferencesInFloat64) {
  for (int64_t kv : {4, 2, 1}) {
    const Config c = model_config(kv);
    auto model = gpt64(c);
    const data::Batch batch = random_batch(2, 8, c.model.vocab_size, 5);
    HeadGates gates(*model);
    ASSERT_EQ(gates.gates().size(), 2u);
    // Gates off 1, so that the check is not only at the identity.
    for (const Tensor& g : gates.gates())
      for (int64_t h = 0; h < g.numel(); ++h) const_cast<Tensor&>(g).data<double>()[h] = 0.7 + 0.2 * static_cast<double>(h);
    model->forward(batch).loss_sum.backward();
    for (size_t l = 0; l < gates.gates().size(); ++l) {
      Tensor g = gates.gates()[l];
      ASSERT_EQ(g.numel(), 4);
      const std::vector<double> analytic = g.grad().to_vector();
      strand::testing::DifferenceOptions opt;
      opt.h = 1e-5;
      opt.points = 4;
      opt.atol = 1e-8;
      opt.rtol = 1e-6;
      strand::testing::expect_elements_match_differences(g, analytic, [&] { return loss_of(*model, batch); },
                                                         "kv " + std::to_string(kv) + " layer " + std::to_string(l),
                                                         opt);
      double sum = 0;
      for (double a : analytic) sum += std::abs(a);
      EXPECT_GT(sum, 0.0) << "every gate of layer " << l << " has no gradient";
    }
  }
}

// Removing heads physically (sliced c_attn columns, c_proj rows) computes what gating them to 0
// computes: the slices are the right ones, for MHA, GQA (whole groups) and MQA (query heads).
TEST(PrunedHeads, SlicedModelEqualsTheModelWithThoseHeadsGatedOff) {
  struct Case {
    int64_t kv;
    std::vector<std::vector<int64_t>> keep;  // query head positions kept per layer
  };
  for (const Case& k : {Case{4, {{0, 2, 3}, {1}}}, Case{2, {{2, 3}, {0, 1, 2, 3}}}, Case{1, {{0, 3}, {1, 2}}}}) {
    const Config c = model_config(k.kv);
    auto full = gpt64(c);
    const Config pruned_c = prune_config(c, k.keep);
    auto pruned = gpt64(pruned_c);
    io::load_into(pruned->named_parameters(), slice_heads(c, pruned_c, full->named_parameters()));
    EXPECT_LT(pruned->parameter_count(), full->parameter_count());

    HeadGates gates(*full);
    for (size_t l = 0; l < 2; ++l) {
      std::vector<double> on(4, 0.0);
      for (int64_t h : k.keep[l]) on[static_cast<size_t>(h)] = 1.0;
      Tensor g = gates.gates()[l];
      std::copy(on.begin(), on.end(), g.data<double>());
    }
    const data::Batch batch = random_batch(2, 8, c.model.vocab_size, 9);
    const double gated = loss_of(*full, batch), sliced = loss_of(*pruned, batch);
    EXPECT_NEAR(sliced, gated, 1e-10 * std::abs(gated)) << "kv " << k.kv;
    // The layer's kept heads are original indices; key/value heads follow their query heads.
    EXPECT_EQ(pruned_c.model.kept_heads[0], k.keep[0]);
    if (k.kv == 2) EXPECT_EQ(pruned_c.model.kept_kv_heads[0], std::vector<int64_t>({1}));
    if (k.kv == 1) EXPECT_EQ(pruned_c.model.kept_kv_heads[1], std::vector<int64_t>({0}));
  }
}

TEST(PrunedHeads, GroupRoundTripsAndBadGroupsAreRefused) {
  Config c = model_config(4);
  const Config p = prune_config(c, {{1, 3}, {0}});
  io::CheckpointData data;
  data.source = "p.h5";
  data.extra[kPruningGroup] = pruning_group(p.model);
  EXPECT_EQ(data.extra[kPruningGroup].get_ints("layer_0.kept_heads"), std::vector<int64_t>({1, 3}));
  adopt_pruned_heads(c, data);
  EXPECT_EQ(c.model.kept_heads, p.model.kept_heads);
  EXPECT_EQ(c.model.kept_kv_heads, p.model.kept_kv_heads);
  // An unpruned checkpoint clears them.
  adopt_pruned_heads(c, io::CheckpointData{});
  EXPECT_TRUE(c.model.kept_heads.empty());
  data.extra[kPruningGroup].int64s["layer_1.kept_heads"] = {0, 7};
  try {
    adopt_pruned_heads(c, data);
    FAIL() << "a head index past n_head was accepted";
  } catch (const io::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("p.h5: group /pruning: pruned heads: layer 1 keeps query heads [0, 7]"),
              std::string::npos)
        << e.what();
  }
}

// Note [Pruned heads under Ulysses]: ring runs any head count; Ulysses refuses, naming the layer.
TEST(PrunedHeads, UlyssesRefusesALayerWhoseHeadsDoNotSplitRingRunsIt) {
  Config c = model_config(4);
  c.parallel.sp = 2;
  c.parallel.sp_mode = config::SpMode::Ulysses;
  EXPECT_NO_THROW(prune_config(c, {{0, 1}, {0, 1, 2, 3}}));
  try {
    prune_config(c, {{0, 1, 2}, {0, 1, 2, 3}});
    FAIL() << "3 heads over 2 Ulysses ranks were accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("layer 0 has 3 query and 3 key/value heads, which parallel.sp_mode ulysses "
                                         "cannot split over its Ulysses group of 2 ranks"),
              std::string::npos)
        << e.what();
  }
  c.parallel.sp_mode = config::SpMode::Ring;
  EXPECT_NO_THROW(prune_config(c, {{0, 1, 2}, {0, 1, 2, 3}}));
}

TEST(PruneChoice, RemovesTheLowestScoringFractionOfHeadsGlobally) {
  // MHA: the three lowest scores over both layers, whichever layer they are in.
  Config c = model_config(4);
  const HeadTable scores = {{0.5, 0.1, 0.9, 0.2}, {0.3, 0.8, 0.05, 0.7}};
  EXPECT_EQ(heads_to_keep(c, scores, 3), (std::vector<std::vector<int64_t>>{{0, 2}, {0, 1, 3}}));
  // A layer keeps at least one head: its last one is skipped for the next lowest.
  const HeadTable low = {{0.01, 0.02, 0.03, 0.04}, {0.5, 0.6, 0.7, 0.8}};
  EXPECT_EQ(heads_to_keep(c, low, 4), (std::vector<std::vector<int64_t>>{{3}, {1, 2, 3}}));
  EXPECT_THROW(heads_to_keep(c, low, 7), ValueError);
  // GQA: a key/value head goes with all its query heads, scored by their sum (group sums 0.6,
  // 1.1 | 1.1, 0.75).
  c = model_config(2);
  EXPECT_EQ(heads_to_keep(c, scores, 1), (std::vector<std::vector<int64_t>>{{2, 3}, {0, 1, 2, 3}}));
  EXPECT_EQ(heads_to_keep(c, scores, 2), (std::vector<std::vector<int64_t>>{{2, 3}, {0, 1}}));
  EXPECT_EQ(prune_config(c, heads_to_keep(c, scores, 2)).model.kept_kv_heads,
            (std::vector<std::vector<int64_t>>{{1}, {0}}));
  // MQA: query heads one by one; the one key/value head stays.
  c = model_config(1);
  const Config p = prune_config(c, heads_to_keep(c, scores, 3));
  EXPECT_EQ(p.model.kept_heads, (std::vector<std::vector<int64_t>>{{0, 2}, {0, 1, 3}}));
  EXPECT_EQ(p.model.kept_kv_heads, (std::vector<std::vector<int64_t>>{{0}, {0}}));
  EXPECT_EQ(normalise_per_layer({{3.0, 4.0}, {0.0, 0.0}}), (HeadTable{{0.6, 0.8}, {0.0, 0.0}}));
  // Ulysses over 2 ranks: two heads at a time per layer, the layer's two lowest by their sum
  // (0.1 + 0.2 = 0.3 in layer 0 against 0.05 + 0.3 = 0.35 in layer 1), and at least 2 kept.
  c = model_config(4);
  c.parallel.sp = 2;
  c.parallel.sp_mode = config::SpMode::Ulysses;
  EXPECT_EQ(heads_to_keep(c, scores, 2), (std::vector<std::vector<int64_t>>{{0, 2}, {0, 1, 2, 3}}));
  EXPECT_EQ(heads_to_keep(c, scores, 4), (std::vector<std::vector<int64_t>>{{0, 2}, {1, 3}}));
  EXPECT_THROW(heads_to_keep(c, scores, 3), ValueError);
  EXPECT_THROW(heads_to_keep(c, scores, 6), ValueError);
}

class Prune : public TinyRunTest {
 protected:
  // The tiny run (no dropout) with 4 heads, trained 6 steps: the base checkpoint.
  Config base(const std::string& run, const std::vector<std::string>& overrides = {}) {
    std::vector<std::string> o = {"model.n_head=4", "model.dropout=0", "train.steps=6", "train.grad_accum=1",
                                  "prune.importance_batches=2", "prune.finetune_steps=3"};
    o.insert(o.end(), overrides.begin(), overrides.end());
    return tiny(run, o);
  }
  io::CheckpointData trained(const Config& c) {
    train(c);
    return io::read_checkpoint(ckpt(c.run.name, c.train.steps));
  }
  static PruneOptions options() { return PruneOptions{nullptr, true}; }
};

class HeadImportance : public Prune {};

TEST_F(HeadImportance, AccumulatesAbsoluteGateGradientsOverBatches) {
  const Config c = base("base");
  auto model = models::build_model(c);
  Trainer t(build_trainer_parts(c, model, nullptr), quiet());
  auto loader = [&] { return data::make_loader(data_spec_of(c, 0, 1), data::Split::train); };
  auto two = loader();
  const HeadTable both = head_importance(t, *two, 2);
  auto one = loader();
  const HeadTable first = head_importance(t, *one, 1);
  const HeadTable second = head_importance(t, *one, 1);
  for (const auto& [name, p] : model->named_parameters())
    EXPECT_FALSE(p.grad().defined() && optim::sum_of_squares(p.grad()) > 0) << name << ": gradient left behind";
  // One pass by hand: |dL/dxi| of the step's mean loss.
  auto again = loader();
  HeadGates gates(*model);
  const GradientPass pass = t.forward_backward(*again, 1);
  ASSERT_EQ(first.size(), 2u);
  for (size_t l = 0; l < 2; ++l) {
    const std::vector<double> g = gates.gates()[l].grad().to_vector();
    ASSERT_EQ(first[l].size(), 4u);
    for (size_t h = 0; h < 4; ++h) {
      EXPECT_EQ(first[l][h], std::abs(g[h]) / static_cast<double>(pass.scored_tokens));
      EXPECT_NEAR(both[l][h], first[l][h] + second[l][h], 1e-12 * both[l][h]);
      EXPECT_NE(first[l][h], second[l][h]) << "the second batch is another batch";
    }
  }
}

TEST_F(Prune, IterationsRescoreBetweenRounds) {
  const Config c = base("base");
  const io::CheckpointData b = trained(c);
  Config p = base("pruned", {"prune.heads_fraction=0.5", "prune.iterations=2"});
  const std::vector<PruneRound> rounds = run_prune(p, b, nullptr, options());
  ASSERT_EQ(rounds.size(), 3u);
  auto heads = [](const PruneRound& r) {
    int64_t n = 0;
    for (const auto& k : r.kept_heads) n += static_cast<int64_t>(k.size());
    return n;
  };
  EXPECT_EQ(heads(rounds[0]), 8);
  EXPECT_EQ(heads(rounds[1]), 6);
  EXPECT_EQ(heads(rounds[2]), 4);
  EXPECT_GT(rounds[0].parameters, rounds[1].parameters);
  EXPECT_GT(rounds[1].parameters, rounds[2].parameters);
  // Round 2 scored the heads round 1 left.
  for (size_t l = 0; l < 2; ++l) EXPECT_EQ(rounds[2].scores[l].size(), rounds[1].kept_heads[l].size());
  ASSERT_EQ(rounds[1].entropy.size(), 2u);
  for (double h : rounds[1].entropy[0]) EXPECT_GT(h, 0.0);
  // The report files.
  std::ifstream md(std::filesystem::path(p.run.dir) / "prune_report.md");
  std::stringstream text;
  text << md.rdbuf();
  EXPECT_NE(text.str().find("| 2 | "), std::string::npos) << text.str();
  EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(p.run.dir) / "prune_report.json"));
}

TEST_F(Prune, FinetunesAfterEachRound) {
  const Config c = base("base");
  const io::CheckpointData b = trained(c);
  Config p = base("pruned", {"prune.heads_fraction=0.25"});
  const std::vector<PruneRound> rounds = run_prune(p, b, nullptr, options());
  ASSERT_EQ(rounds.size(), 2u);
  EXPECT_EQ(rounds[1].finetune_steps, 3);
  ASSERT_FALSE(rounds[1].checkpoint.empty());
  EXPECT_NE(rounds[1].val_loss, rounds[1].val_loss_pruned) << "fine-tuning changed nothing";

  // The round's checkpoint reloads for eval: the same loss as the run measured.
  const io::CheckpointData saved = io::read_checkpoint(rounds[1].checkpoint);
  ASSERT_TRUE(saved.extra.count(kPruningGroup));
  Config e = base("eval");
  adopt_pruned_heads(e, saved);
  EXPECT_EQ(e.model.kept_heads, rounds[1].kept_heads);
  auto model = models::build_model(e);
  io::load_into(model->named_parameters(), saved);
  Trainer evaluator(build_trainer_parts(e, model, nullptr), quiet());
  EXPECT_EQ(evaluator.evaluate_val().loss(), rounds[1].val_loss);

  // Resume (strand train): the run's heads come from the checkpoint it resumes.
  Config r = base("resume", {"train.steps=5", "checkpoint.resume=" + rounds[1].checkpoint});
  adopt_resumed_heads(r);
  EXPECT_EQ(r.model.kept_heads, rounds[1].kept_heads);
  const TrainResult resumed = train(r);
  EXPECT_EQ(resumed.start_step, 3);
  EXPECT_EQ(resumed.end_step, 5);
  EXPECT_TRUE(io::read_checkpoint(resumed.checkpoint).extra.count(kPruningGroup)) << "the resumed run's checkpoint";

  // Generate: the KV cache gives the tokens recomputing gives.
  auto& gpt = dynamic_cast<models::Gpt&>(*model);
  models::GenerateOptions g;
  g.max_new_tokens = 6;
  g.sampling.temperature = 0;
  const std::vector<int32_t> prompt = {1, 2, 3};
  const auto cached = models::generate(gpt, prompt, g);
  g.use_cache = false;
  EXPECT_EQ(cached, models::generate(gpt, prompt, g));

  // Further pruning: a pruned checkpoint prunes on from its heads.
  Config again = base("again", {"prune.heads_fraction=0.5"});
  const std::vector<PruneRound> more = run_prune(again, saved, nullptr, options());
  EXPECT_EQ(more[0].kept_heads, rounds[1].kept_heads);
  EXPECT_EQ(more[0].parameters, rounds[1].parameters);
  EXPECT_LT(more[1].parameters, more[0].parameters);
}

TEST_F(Prune, RandomMethodIsSeeded) {
  const Config c = base("base");
  const io::CheckpointData b = trained(c);
  auto kept = [&](const std::string& run, int64_t seed) {
    Config p = base(run, {"prune.heads_fraction=0.5", "prune.method=random", "prune.seed=" + std::to_string(seed),
                          "prune.finetune_steps=0"});
    return run_prune(p, b, nullptr, PruneOptions{nullptr, false}).back().kept_heads;
  };
  const auto a = kept("a", 1);
  EXPECT_EQ(a, kept("b", 1));
  bool differs = false;
  for (int64_t seed = 2; seed < 6 && !differs; ++seed) differs = kept("c" + std::to_string(seed), seed) != a;
  EXPECT_TRUE(differs) << "four other seeds all removed the same heads";
}

}  // namespace
}  // namespace strand::train
