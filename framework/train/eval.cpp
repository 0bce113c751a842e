// Validation loss and task accuracy over a fixed set of batches.
#include "framework/train/eval.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <vector>

#include "framework/autograd/grad_mode.h"
#include "framework/core/json.h"
#include "parallel/comm/group.h"

namespace strand::train {

namespace {

// The answer score of one batch of a sequence-parallel replica: every sp rank's counts of each
// row are summed first, so a row is exact only when every part of it is; sp rank 0 alone
// reports the result, so the later sum over all ranks counts each row once.
data::AnswerScore sharded_answer_score(const Tensor& predictions, const Tensor& answer_targets,
                                       const BatchSharder& sharder) {
  std::vector<int64_t> counts = data::answer_counts(predictions, answer_targets);
  sharder.sp_group()->all_reduce(std::span<int64_t>(counts));
  if (sharder.sp_rank() != 0) return {};
  return data::score_answer_counts(counts);
}

}  // namespace

bool has_val_split(const Config& config) {
  return config.data.format == DataFormat::Synthetic || !config.data.val.empty();
}

std::optional<double> chance_accuracy(const Config& config) {
  if (config.data.format != DataFormat::Synthetic) return std::nullopt;
  const int64_t symbols = config.model.vocab_size - data::kSymbolBase;
  switch (config.data.task) {
    case SyntheticTask::Passkey: return 1.0 / data::kPasskeyDigits;
    case SyntheticTask::Copy: return symbols > 0 ? 1.0 / static_cast<double>(symbols) : 0.0;
    case SyntheticTask::AssocRecall: {
      const int64_t values = symbols - symbols / 2;  // keys take the first half (data/synthetic.cpp)
      return values > 0 ? 1.0 / static_cast<double>(values) : 0.0;
    }
  }
  return std::nullopt;
}

EvalResult evaluate(models::Model& model, const data::Loader& loader, int64_t batches, parallel::Group* group,
                    const BatchSharder& sharder, const std::function<bool()>& stop,
                    const std::function<void(int64_t, int64_t)>& on_batch) {
  STRAND_CHECK(batches >= 1, ValueError, "train.eval_batches: ", batches, " must be positive");
  if (loader.steps_per_epoch() > 0) batches = std::min(batches, loader.steps_per_epoch());
  const bool was_training = model.is_training();
  model.train(false);
  autograd::NoGradGuard no_grad;

  EvalResult result;
  result.batches = batches;
  data::AnswerScore score;
  bool scored = false;
  if (on_batch) on_batch(0, batches);
  for (int64_t b = 0; b < batches; ++b) {
    if (stop && stop()) {
      model.train(was_training);
      result.interrupted = true;
      return result;
    }
    const data::Batch batch = sharder.shard(loader.batch_at(b));
    const models::LossOutput out = model.forward(batch, sharder.sequence_shard());
    result.loss_sum += out.loss_sum.item();
    result.tokens += out.tokens;
    if (batch.answer_targets.defined() && out.predictions.defined()) {
      score += sharder.active() ? sharded_answer_score(out.predictions, batch.answer_targets, sharder)
                                 : data::score_answers(out.predictions, batch.answer_targets);
      scored = true;
    }
    if (on_batch) on_batch(b + 1, batches);
  }
  model.train(was_training);

  if (group != nullptr && group->size() > 1) {
    std::array<double, 1> sums{result.loss_sum};
    group->all_reduce(std::span<double>(sums));
    std::array<int64_t, 5> counts{result.tokens, score.tokens_correct, score.tokens_total, score.rows_correct,
                                  score.rows_total};
    group->all_reduce(std::span<int64_t>(counts));
    result.loss_sum = sums[0];
    result.tokens = counts[0];
    score = {counts[1], counts[2], counts[3], counts[4]};
  }
  if (scored) result.score = score;
  return result;
}

std::string eval_json_fields(const EvalResult& result) {
  std::string s = "\"loss\": " + json_number(result.loss()) + ", \"tokens\": " + std::to_string(result.tokens) +
                  ", \"batches\": " + std::to_string(result.batches);
  if (result.score) {
    s += ", \"accuracy\": " + json_number(result.score->token_accuracy()) +
         ", \"row_accuracy\": " + json_number(result.score->row_accuracy()) +
         ", \"answer_tokens\": " + std::to_string(result.score->tokens_total);
  }
  return s;
}

}  // namespace strand::train
