// The pruning loop of `strand prune` (prune.h): score, remove, fine-tune, report, per round.
#include "framework/train/prune.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>

#include "framework/core/error.h"
#include "framework/core/json.h"
#include "framework/io/atomic_file.h"
#include "framework/train/components.h"
#include "framework/train/eval.h"
#include "framework/train/pruned_heads.h"
#include "framework/train/trainer.h"
#include "models/transformer.h"
#include "parallel/comm/group.h"

namespace strand::train {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The config of round r's Trainer: its own run and checkpoint directories under run.dir, a
// fresh start (the weights come from the previous round, not from a resume), and a schedule
// over the round's fine-tuning steps.
Config round_config(const Config& config, int64_t round) {
  Config c = config;
  c.run.dir = (fs::path(config.run.dir) / ("round_" + std::to_string(round))).string();
  c.checkpoint.dir = (fs::path(c.run.dir) / "checkpoints").string();
  c.checkpoint.resume = "none";
  c.checkpoint.every = 0;
  c.train.steps = std::max<int64_t>(1, config.prune.finetune_steps);
  c.train.warmup_steps = std::min(c.train.warmup_steps, c.train.steps);
  return c;
}

struct Measured {
  double loss = 0.0;
  double tokens_per_s = 0.0;
};

// Validation loss, and the evaluation forward's input tokens per second over every rank.
Measured measure(Trainer& trainer) {
  if (!has_val_split(trainer.config())) return {};
  const auto start = Clock::now();
  const EvalResult r = trainer.evaluate_val();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const Config& c = trainer.config();
  const double tokens = static_cast<double>(r.batches * c.data.batch_size * c.data.seq_len * c.parallel.dp);
  return {r.loss(), seconds > 0 ? tokens / seconds : 0.0};
}

// Uniform scores in [0, 1) from (prune.seed, round): method random.
HeadTable random_scores(const Config& config, int64_t round) {
  std::mt19937_64 rng(models::derive_seed(static_cast<uint64_t>(config.prune.seed), {static_cast<uint64_t>(round)}));
  HeadTable scores;
  for (const auto& heads : kept_query_heads(config.model)) {
    scores.emplace_back();
    for (size_t h = 0; h < heads.size(); ++h) scores.back().push_back(static_cast<double>(rng() >> 11) * 0x1.0p-53);
  }
  return scores;
}

PruneRound describe_round(const Config& config, const models::Model& model, int64_t round) {
  PruneRound r;
  r.round = round;
  r.kept_heads = kept_query_heads(config.model);
  for (const auto& kv : kept_kv_heads(config.model)) r.kv_heads.push_back(static_cast<int64_t>(kv.size()));
  r.parameters = model.parameter_count();
  return r;
}

std::string table_json(const HeadTable& t) {
  std::string s = "[";
  for (size_t l = 0; l < t.size(); ++l) {
    s += l ? ", [" : "[";
    for (size_t h = 0; h < t[l].size(); ++h) s += (h ? ", " : "") + json_number(t[l][h]);
    s += "]";
  }
  return s + "]";
}

std::string ints_json(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::vector<int64_t> heads_per_layer(const PruneRound& r) {
  std::vector<int64_t> n;
  for (const auto& k : r.kept_heads) n.push_back(static_cast<int64_t>(k.size()));
  return n;
}

int64_t total(const std::vector<int64_t>& v) {
  int64_t n = 0;
  for (int64_t x : v) n += x;
  return n;
}

}  // namespace

std::string prune_report_json(const Config& config, const std::vector<PruneRound>& rounds) {
  std::ostringstream j;
  j << "{\"method\": " << json_string(name_of(config.prune.method)) << ", \"seed\": " << config.prune.seed
    << ", \"heads_fraction\": " << json_number(config.prune.heads_fraction)
    << ", \"iterations\": " << config.prune.iterations << ", \"importance_batches\": " << config.prune.importance_batches
    << ", \"finetune_steps\": " << config.prune.finetune_steps << ", \"rounds\": [";
  for (size_t i = 0; i < rounds.size(); ++i) {
    const PruneRound& r = rounds[i];
    std::string kept = "[";
    for (size_t l = 0; l < r.kept_heads.size(); ++l) kept += (l ? ", " : "") + ints_json(r.kept_heads[l]);
    kept += "]";
    j << (i ? ",\n  " : "\n  ") << "{\"round\": " << r.round << ", \"heads_per_layer\": " << ints_json(heads_per_layer(r))
      << ", \"heads\": " << total(heads_per_layer(r)) << ", \"kv_heads_per_layer\": " << ints_json(r.kv_heads)
      << ", \"kept_heads\": " << kept << ", \"parameters\": " << r.parameters
      << ", \"val_loss_pruned\": " << (r.round > 0 ? json_number(r.val_loss_pruned) : std::string("null"))
      << ", \"val_loss\": " << json_number(r.val_loss) << ", \"tokens_per_s\": " << json_number(r.tokens_per_s)
      << ", \"finetune_steps\": " << r.finetune_steps << ", \"scores\": " << table_json(r.scores)
      << ", \"entropy\": " << table_json(r.entropy) << ", \"checkpoint\": " << json_string(r.checkpoint) << "}";
  }
  j << "\n]}\n";
  return j.str();
}

std::string prune_report_markdown(const Config& config, const std::vector<PruneRound>& rounds) {
  std::ostringstream m;
  m << "# Pruning report: " << config.run.name << "\n\n"
    << "prune.method " << name_of(config.prune.method) << " (seed " << config.prune.seed << "), heads_fraction "
    << config.prune.heads_fraction << " over " << config.prune.iterations << " round(s), "
    << config.prune.importance_batches << " importance batches, " << config.prune.finetune_steps
    << " fine-tuning steps per round. Val loss over " << config.train.eval_batches
    << " batches; tokens/s of the evaluation forward (input tokens of every rank per second).\n\n"
    << "| round | heads kept per layer | heads | parameters | val loss after pruning | val loss | tokens/s |\n"
    << "|---|---|---|---|---|---|---|\n";
  char buf[64];
  for (const PruneRound& r : rounds) {
    std::string per_layer;
    for (int64_t n : heads_per_layer(r)) per_layer += (per_layer.empty() ? "" : " ") + std::to_string(n);
    m << "| " << r.round << " | " << per_layer << " | " << total(heads_per_layer(r)) << " | " << r.parameters << " | ";
    if (r.round > 0) {
      std::snprintf(buf, sizeof buf, "%.4f", r.val_loss_pruned);
      m << buf;
    } else {
      m << "-";
    }
    std::snprintf(buf, sizeof buf, " | %.4f | %.0f |\n", r.val_loss, r.tokens_per_s);
    m << buf;
  }
  return m.str();
}

std::vector<PruneRound> run_prune(Config config, const io::CheckpointData& base, parallel::Group* group,
                                  const PruneOptions& options) {
  adopt_pruned_heads(config, base);  // a pruned checkpoint prunes further
  std::shared_ptr<models::Model> model = models::build_model(config);
  io::load_into(model->named_parameters(), base);
  const bool root = group == nullptr || group->rank() == 0;
  auto print = [&](const std::string& line) {
    if (root && options.log) options.log->line(line);
  };
  auto write_report = [&](const std::vector<PruneRound>& rounds) {
    if (!root || !options.write_files) return;
    fs::create_directories(config.run.dir);
    io::write_text_atomically((fs::path(config.run.dir) / "prune_report.json").string(), prune_report_json(config, rounds));
    io::write_text_atomically((fs::path(config.run.dir) / "prune_report.md").string(),
                              prune_report_markdown(config, rounds));
  };
  TrainerOptions quiet;  // scoring and measuring: no files, no resume
  quiet.log = options.log;
  quiet.print = options.log != nullptr;  // no log: the trainers print nothing either
  quiet.write_files = false;
  quiet.allow_resume = false;
  quiet.final_eval = false;

  std::vector<PruneRound> rounds;
  {
    Trainer trainer(build_trainer_parts(round_config(config, 0), model, group), quiet);
    PruneRound r = describe_round(config, *model, 0);
    const Measured m = measure(trainer);
    r.val_loss = m.loss;
    r.tokens_per_s = m.tokens_per_s;
    rounds.push_back(r);
    print(detail::concat("prune: round 0: ", total(heads_per_layer(r)), " heads, ", r.parameters,
                         " parameters, val loss ", m.loss, ", ", std::lround(m.tokens_per_s), " tokens/s"));
  }
  write_report(rounds);

  // Under Ulysses units go in blocks of its group's u ranks (Note [Pruned heads under Ulysses]).
  const int64_t u = ulysses_degree_of(config);
  const int64_t units = prune_units(config.model);
  const int64_t target = u * std::llround(config.prune.heads_fraction * static_cast<double>(units / u));
  int64_t removed = 0;
  for (int64_t round = 1; round <= config.prune.iterations; ++round) {
    const int64_t goal = u * std::llround(static_cast<double>(target / u * round) /
                                          static_cast<double>(config.prune.iterations));
    HeadTable scores, entropy;
    {
      Trainer scorer(build_trainer_parts(round_config(config, round), model, group), quiet);
      if (config.prune.method == config::PruneMethod::Importance) {
        const Config& c = scorer.config();
        const std::unique_ptr<data::Loader> loader =
            data::make_loader(data_spec_of(c, scorer.dp_rank(), c.parallel.dp), data::Split::train);
        scores = normalise_per_layer(head_importance(scorer, *loader, config.prune.importance_batches));
      } else {
        scores = random_scores(config, round);
      }
      if (has_val_split(config)) {
        const Config& c = scorer.config();
        const std::unique_ptr<data::Loader> val =
            data::make_loader(data_spec_of(c, scorer.dp_rank(), c.parallel.dp), data::Split::val);
        entropy = head_entropy(scorer, *val, std::min<int64_t>(config.train.eval_batches, 4));
      }
    }
    const Config next = prune_config(config, heads_to_keep(config, scores, goal - removed));
    model = pruned_model(config, *model, next);
    config = next;
    removed = goal;

    TrainerOptions tune = quiet;
    tune.write_files = options.write_files;
    Trainer trainer(build_trainer_parts(round_config(config, round), model, group), tune);
    PruneRound r = describe_round(config, *model, round);
    r.scores = scores;
    r.entropy = entropy;
    r.val_loss_pruned = measure(trainer).loss;
    print(detail::concat("prune: round ", round, ": ", total(heads_per_layer(r)), " heads left, ", r.parameters,
                         " parameters, val loss ", r.val_loss_pruned, " before fine-tuning"));
    if (config.prune.finetune_steps > 0) {
      const TrainResult result = trainer.run();
      r.checkpoint = result.checkpoint;
      r.finetune_steps = result.end_step;
      if (result.stop_signal != 0) {
        // SIGINT / SIGTERM: the round's checkpoint is saved (pruned, part-way fine-tuned); no
        // further round starts. `strand train` with checkpoint.resume set to it finishes it.
        rounds.push_back(r);
        write_report(rounds);
        print(detail::concat("prune: stopped in round ", round, " after ", r.finetune_steps,
                             " fine-tuning steps; checkpoint ", r.checkpoint));
        return rounds;
      }
    } else if (options.write_files) {
      r.checkpoint = trainer.save_checkpoint();
    }
    const Measured m = measure(trainer);
    r.val_loss = m.loss;
    r.tokens_per_s = m.tokens_per_s;
    print(detail::concat("prune: round ", round, ": val loss ", m.loss, " after ", r.finetune_steps,
                         " fine-tuning steps, ", std::lround(m.tokens_per_s), " tokens/s",
                         r.checkpoint.empty() ? std::string() : "; checkpoint " + r.checkpoint));
    rounds.push_back(r);
    write_report(rounds);
  }
  return rounds;
}

}  // namespace strand::train
