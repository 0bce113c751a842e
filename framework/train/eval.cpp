// Validation loss and task accuracy over a fixed set of batches; the sequence-parallel cut of a
// batch.
#include "framework/train/eval.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <vector>

#include "framework/autograd/grad_mode.h"
#include "framework/train/metrics.h"
#include "parallel/comm/group.h"

namespace strand::train {

int ulysses_degree_of(const Config& config) {
  const ParallelConfig& par = config.parallel;
  switch (par.sp_mode) {
    case SpMode::Ring: return 1;
    case SpMode::Ulysses: return static_cast<int>(par.sp);
    case SpMode::Hybrid: return static_cast<int>(par.ulysses_degree);
  }
  return 1;
}

parallel::SequenceLayout sequence_layout_of(const Config& config) {
  const ParallelConfig& par = config.parallel;
  const SeqLayout resolved = resolved_layout(config);
  const parallel::LayoutKind kind =
      resolved == SeqLayout::Zigzag ? parallel::LayoutKind::Zigzag : parallel::LayoutKind::Contiguous;
  const int sp = static_cast<int>(par.sp), u = ulysses_degree_of(config);
  try {
    if (par.sp_mode == SpMode::Hybrid) return parallel::SequenceLayout::hybrid(kind, config.data.seq_len, sp / u, u);
    return parallel::SequenceLayout::make(kind, config.data.seq_len, sp);
  } catch (const ValueError& e) {
    throw ConfigError(detail::concat("key 'data.seq_len': ", config.data.seq_len, " does not split under parallel.layout ",
                                     name_of(resolved), ", sp_mode ", name_of(par.sp_mode), ", sp ", sp,
                                     par.sp_mode == SpMode::Hybrid ? detail::concat(", ulysses_degree ", u) : "",
                                     ": ", e.what()));
  }
}

SequenceSharding::SequenceSharding(const parallel::ProcessGrid& grid, parallel::SequenceLayout layout)
    : layout_(std::make_shared<const parallel::SequenceLayout>(std::move(layout))),
      sp_rank_(grid.sp_rank()),
      sp_group_(&grid.sp_group()) {
  STRAND_CHECK(layout_->parts() == grid.sp(), ValueError, "sequence sharding: the layout (", layout_->describe(),
               ") is not over the grid's ", grid.sp(), " sp ranks");
  model_shard_.positions = layout_->positions(sp_rank_);
  model_shard_.context = parallel::SequenceContext{&grid.ring_group(), &grid.ulysses_group(), layout_};
  model_shard_.seq_len = layout_->seq_len();
}

data::Batch SequenceSharding::shard(const data::Batch& batch) const {
  if (!active()) return batch;
  data::Batch out;
  out.inputs = layout_->shard(batch.inputs, sp_rank_, 1);
  out.targets = layout_->shard(batch.targets, sp_rank_, 1);
  if (batch.answer_targets.defined()) out.answer_targets = layout_->shard(batch.answer_targets, sp_rank_, 1);
  out.step = batch.step;
  out.epoch = batch.epoch;
  return out;
}

namespace {

// Per row of a shard: [answers of row 0.., then correct answers of row 0..] (int64, 2B values).
std::vector<int64_t> answer_counts_per_row(const Tensor& predictions, const Tensor& answer_targets) {
  const int64_t rows = answer_targets.size(0), cols = answer_targets.size(1);
  const Tensor pred = predictions.copy_as(DType::I32, Device::cpu());
  const Tensor want = answer_targets.copy_as(DType::I32, Device::cpu());
  const int32_t* p = pred.data<int32_t>();
  const int32_t* a = want.data<int32_t>();
  std::vector<int64_t> counts(static_cast<size_t>(2 * rows), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = 0; t < cols; ++t) {
      if (a[r * cols + t] == data::kIgnoreIndex) continue;
      ++counts[static_cast<size_t>(r)];
      counts[static_cast<size_t>(rows + r)] += p[r * cols + t] == a[r * cols + t];
    }
  }
  return counts;
}

// The answer score of one batch of a sequence-parallel replica: every sp rank's counts of each
// row are summed first, so a row is exact only when every part of it is; sp rank 0 alone
// reports the result, so the later sum over all ranks counts each row once.
data::AnswerScore sharded_answer_score(const Tensor& predictions, const Tensor& answer_targets,
                                       const SequenceSharding& sharding) {
  STRAND_CHECK(predictions.shape() == answer_targets.shape() && answer_targets.dim() == 2, ShapeError,
               "evaluate: predictions ", describe(predictions), " and answer_targets ", describe(answer_targets),
               " must both be [B, T]");
  std::vector<int64_t> counts = answer_counts_per_row(predictions, answer_targets);
  sharding.sp_group()->all_reduce(std::span<int64_t>(counts));
  data::AnswerScore score;
  if (sharding.sp_rank() != 0) return score;
  const size_t rows = counts.size() / 2;
  for (size_t r = 0; r < rows; ++r) {
    score.tokens_total += counts[r];
    score.tokens_correct += counts[rows + r];
    if (counts[r] > 0) {
      ++score.rows_total;
      score.rows_correct += counts[rows + r] == counts[r];
    }
  }
  return score;
}

}  // namespace

data::DataSpec data_spec_of(const Config& config, int64_t dp_rank, int64_t dp_size, const std::string& val_override) {
  data::DataSpec spec;
  spec.format = name_of(config.data.format);
  if (!config.data.train.empty()) spec.train = {config.data.train};
  if (!val_override.empty()) {
    spec.val = {val_override};
  } else if (!config.data.val.empty()) {
    spec.val = {config.data.val};
  }
  spec.task = name_of(config.data.task);
  spec.seq_len = config.data.seq_len;
  spec.batch_size = config.data.batch_size;
  spec.vocab_size = config.model.vocab_size;
  spec.seed = static_cast<uint64_t>(config.run.seed);
  spec.dp_rank = dp_rank;
  spec.dp_size = dp_size;
  return spec;
}

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
                    const SequenceSharding& sharding) {
  STRAND_CHECK(batches >= 1, ValueError, "train.eval_batches: ", batches, " must be positive");
  if (loader.steps_per_epoch() > 0) batches = std::min(batches, loader.steps_per_epoch());
  const bool was_training = model.is_training();
  model.train(false);
  autograd::NoGradGuard no_grad;

  EvalResult result;
  result.batches = batches;
  data::AnswerScore score;
  bool scored = false;
  for (int64_t b = 0; b < batches; ++b) {
    const data::Batch batch = sharding.shard(loader.batch_at(b));
    const models::LossOutput out = model.forward(batch, sharding.model_shard());
    result.loss_sum += out.loss_sum.item();
    result.tokens += out.tokens;
    if (batch.answer_targets.defined() && out.predictions.defined()) {
      score += sharding.active() ? sharded_answer_score(out.predictions, batch.answer_targets, sharding)
                                 : data::score_answers(out.predictions, batch.answer_targets);
      scored = true;
    }
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
