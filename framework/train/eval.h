// Evaluation over a fixed set of validation batches: mean loss over every scored token and, for
// synthetic tasks, answer accuracy; summed over data- and sequence-parallel ranks so every rank
// gets the number a single process would. Also how a sequence-parallel rank cuts its batches
// (SequenceSharding), which training and evaluation share.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "data/loader.h"
#include "framework/train/config.h"
#include "models/model.h"
#include "parallel/grid.h"
#include "parallel/layout.h"

namespace strand::train {

// The sequence layout of a config (parallel.sp, sp_mode, ulysses_degree, resolved layout,
// data.seq_len): make(kind, N, sp) for ring and Ulysses, hybrid(kind, N, sp / u, u) for hybrid.
// A seq_len that does not split is a ConfigError naming data.seq_len, the layout and the
// lengths that do.
parallel::SequenceLayout sequence_layout_of(const Config& config);

// The Ulysses group size of the config's sp_mode: 1 (ring), sp (ulysses) or ulysses_degree.
int ulysses_degree_of(const Config& config);

// How one sequence-parallel rank cuts a batch: every row [B, N] is cut by the layout into this
// rank's rows [B, N / sp], which run with their global positions over the grid's ring and
// Ulysses groups. The default (sp = 1) leaves batches whole and attention local.
class SequenceSharding {
 public:
  SequenceSharding() = default;
  // sp rank grid.sp_rank() of `layout` (layout.parts() == grid.sp()); grid must outlive this.
  SequenceSharding(const parallel::ProcessGrid& grid, parallel::SequenceLayout layout);

  bool active() const { return layout_ != nullptr; }
  // This rank's rows of inputs, targets and answer_targets (the batch itself when inactive).
  data::Batch shard(const data::Batch& batch) const;
  // Positions and attention context for Model::forward (empty when inactive).
  const models::SequenceShard& model_shard() const { return model_shard_; }
  // The replica's sequence ranks (null when inactive) and this rank's place among them.
  parallel::Group* sp_group() const { return sp_group_; }
  int sp_rank() const { return sp_rank_; }

 private:
  std::shared_ptr<const parallel::SequenceLayout> layout_;
  int sp_rank_ = 0;
  parallel::Group* sp_group_ = nullptr;
  models::SequenceShard model_shard_;
};

// The loader spec of a config for one data-parallel replica (data.*, model.vocab_size,
// run.seed). `val_override`, when set, replaces data.val (the --data of `strand eval`).
data::DataSpec data_spec_of(const Config& config, int64_t dp_rank, int64_t dp_size,
                            const std::string& val_override = "");

// True when the config has a validation split: a synthetic task, or data.val set.
bool has_val_split(const Config& config);

struct EvalResult {
  double loss_sum = 0.0;   // summed over scored tokens of every batch and rank
  int64_t tokens = 0;      // scored tokens
  int64_t batches = 0;     // batches per rank evaluated
  std::optional<data::AnswerScore> score;  // synthetic tasks only
  double loss() const { return tokens > 0 ? loss_sum / static_cast<double>(tokens) : 0.0; }
};

// Runs the model without gradients and in evaluation mode (restoring the previous mode) over
// batches 0 .. n-1 of `loader` (n = `batches`, capped at one epoch of a token stream), each cut
// by `sharding`. With a group (every rank: dp x sp), sums and counts are all-reduced over it;
// a row's verdict (all its answers right) gathers every sp rank's part of the row first. Every
// rank must call this together.
EvalResult evaluate(models::Model& model, const data::Loader& loader, int64_t batches,
                    parallel::Group* group = nullptr, const SequenceSharding& sharding = {});

// The answer-token accuracy of guessing uniformly among the symbols a synthetic task can put at
// an answer position (passkey: 10 digits; copy: every symbol; assoc_recall: every value symbol);
// nullopt for text data. The baseline the quickstart's accuracy is read against.
std::optional<double> chance_accuracy(const Config& config);

// {"loss": ..., "tokens": ..., "batches": ..., "accuracy": ..., "row_accuracy": ...}: the
// fields of one JSON object, without braces (accuracy fields only when scored).
std::string eval_json_fields(const EvalResult& result);

}  // namespace strand::train
