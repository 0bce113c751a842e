// Evaluation over a fixed set of validation batches: mean loss over every scored token and, for
// synthetic tasks, answer accuracy; summed over data- and sequence-parallel ranks so every rank
// gets the number a single process would.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/train/sharding.h"
#include "models/model.h"

namespace strand::train {

// The run configuration's types (framework/config) read as train's own: train is the layer above.
using namespace strand::config;

// True when the config has a validation split: a synthetic task, or data.val set.
bool has_val_split(const Config& config);

struct EvalResult {
  double loss_sum = 0.0;   // summed over scored tokens of every batch and rank
  int64_t tokens = 0;      // scored tokens
  int64_t batches = 0;     // batches per rank evaluated
  bool interrupted = false;  // `stop` said so before the last batch: the sums are partial
  std::optional<data::AnswerScore> score;  // synthetic tasks only
  double loss() const { return tokens > 0 ? loss_sum / static_cast<double>(tokens) : 0.0; }
};

// Runs the model without gradients and in evaluation mode (restoring the previous mode) over
// batches 0 .. n-1 of `loader` (n = `batches`, capped at one epoch of a token stream), each cut
// by `sharder`. With a group (every rank: dp x sp), sums and counts are all-reduced over it;
// a row's verdict (all its answers right) gathers every sp rank's part of the row first. Every
// rank must call this together. `stop`, when given, is asked before each batch (on every rank
// alike: it must give every rank the same answer, e.g. a stop flag all-reduced over the group);
// when it says yes the evaluation ends there, `interrupted` set and nothing reduced. `on_batch`,
// when given, hears (batches done, batches in all) before the first batch and after each
// (a progress display).
EvalResult evaluate(models::Model& model, const data::Loader& loader, int64_t batches,
                    parallel::Group* group = nullptr, const BatchSharder& sharder = {},
                    const std::function<bool()>& stop = {},
                    const std::function<void(int64_t, int64_t)>& on_batch = {});

// The answer-token accuracy of guessing uniformly among the symbols a synthetic task can put at
// an answer position (passkey: 10 digits; copy: every symbol; assoc_recall: every value symbol);
// nullopt for text data. The baseline the quickstart's accuracy is read against.
std::optional<double> chance_accuracy(const Config& config);

// {"loss": ..., "tokens": ..., "batches": ..., "accuracy": ..., "row_accuracy": ...}: the
// fields of one JSON object, without braces (accuracy fields only when scored).
std::string eval_json_fields(const EvalResult& result);

}  // namespace strand::train
