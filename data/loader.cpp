// Batches by the row rule from token streams and synthetic tasks; positions; answer scoring.
#include "data/loader.h"

#include <vector>

#include "framework/core/random.h"

namespace strand::data {

namespace {

constexpr int64_t kPositionVersion = 1;
// Keeps the shuffle stream apart from the synthetic rows drawn from the same run.seed.
constexpr uint64_t kShuffleSeedSalt = 0x73687566666c6521ull;  // "shuffle!"

void check_loader_options(const LoaderOptions& o) {
  STRAND_CHECK(o.batch_size >= 1, ValueError, "loader: batch_size ", o.batch_size, " must be positive");
  STRAND_CHECK(o.seq_len >= 1, ValueError, "loader: seq_len ", o.seq_len, " must be positive");
  STRAND_CHECK(o.dp_size >= 1 && o.dp_rank >= 0 && o.dp_rank < o.dp_size, ValueError, "loader: dp_rank ",
               o.dp_rank, " outside [0, dp_size = ", o.dp_size, ")");
  STRAND_CHECK(o.vocab_size >= 0, ValueError, "loader: vocab_size ", o.vocab_size, " is negative");
}

// Fills inputs/targets row r from the T + 1 tokens of its stream window.
void split_row(const int32_t* window, int64_t T, int64_t r, int32_t* inputs, int32_t* targets) {
  int32_t* in = inputs + r * T;
  int32_t* tg = targets + r * T;
#pragma omp simd
  for (int64_t t = 0; t < T; ++t) {
    in[t] = window[t];
    tg[t] = window[t + 1];
  }
}

// The config's task as the generator's enum (the generator knows no config).
SyntheticTask synthetic_task_of(config::SyntheticTask task) {
  switch (task) {
    case config::SyntheticTask::Passkey: return SyntheticTask::passkey;
    case config::SyntheticTask::AssocRecall: return SyntheticTask::assoc_recall;
    case config::SyntheticTask::Copy: return SyntheticTask::copy;
  }
  throw ValueError("data.task: unknown synthetic task");
}

}  // namespace

std::vector<int64_t> LoaderPosition::to_ints() const {
  return {kPositionVersion, step, batch_size, seq_len, dp_size, stream_tokens};
}

LoaderPosition LoaderPosition::from_ints(std::span<const int64_t> ints) {
  STRAND_CHECK(ints.size() == 6 && ints[0] == kPositionVersion, ValueError,
               "loader position: expected 6 integers of version ", kPositionVersion, ", got ", ints.size(),
               ints.empty() ? std::string() : detail::concat(" of version ", ints[0]));
  LoaderPosition p;
  p.step = ints[1];
  p.batch_size = ints[2];
  p.seq_len = ints[3];
  p.dp_size = ints[4];
  p.stream_tokens = ints[5];
  return p;
}

Loader::Loader(const LoaderOptions& options) : options_(options) { check_loader_options(options_); }

Batch Loader::next() {
  Batch b = batch_at(step_);
  ++step_;
  return b;
}

LoaderPosition Loader::position() const {
  return {step_, options_.batch_size, options_.seq_len, options_.dp_size, stream_tokens()};
}

void Loader::restore(const LoaderPosition& pos) {
  const LoaderPosition here = position();
  // Step s reads global rows [s*K*B, (s+1)*K*B) whatever the split of K*B into replicas and
  // rows (global_row), so a position saved under another (B, K) with the same K*B, T and
  // stream stands for the same rows.
  const int64_t saved_global = pos.batch_size * pos.dp_size, global = here.batch_size * here.dp_size;
  STRAND_CHECK(saved_global == global && pos.seq_len == here.seq_len && pos.stream_tokens == here.stream_tokens,
               DataError, describe(), ": the saved loader position (global batch ", saved_global, " = batch_size ",
               pos.batch_size, " x dp ", pos.dp_size, ", seq_len ", pos.seq_len, ", ", pos.stream_tokens,
               " tokens) does not match this run (global batch ", global, " = batch_size ", here.batch_size, " x dp ",
               here.dp_size, ", seq_len ", here.seq_len, ", ", here.stream_tokens,
               " tokens); a run resumes when data.batch_size x parallel.dp, data.seq_len and the data are the same");
  STRAND_CHECK(pos.step >= 0, DataError, describe(), ": the saved loader position has a negative step ", pos.step);
  step_ = pos.step;
}

int64_t shuffled_row(int64_t row, int64_t n, uint64_t seed, int64_t epoch) {
  STRAND_CHECK(n >= 1 && row >= 0 && row < n && epoch >= 0, ValueError, "shuffled_row: row ", row,
               " outside [0, ", n, ") or negative epoch ", epoch);
  int half_bits = 1;  // each Feistel half; the network permutes [0, 4^half_bits) >= n
  while ((int64_t{1} << (2 * half_bits)) < n) ++half_bits;
  const uint64_t mask = (uint64_t{1} << half_bits) - 1;
  const uint64_t key = seed ^ kShuffleSeedSalt;
  uint64_t x = static_cast<uint64_t>(row);
  // Cycle walking: the network is a bijection of the larger domain, so following it from a row
  // below n until it lands below n again is a bijection of [0, n) (at most 4n / n = 4 tries
  // on average).
  do {
    uint64_t left = x >> half_bits, right = x & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t f = random::philox4x32(key, static_cast<uint64_t>(epoch), (round << 32) | right)[0] & mask;
      const uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits) | right;
  } while (x >= static_cast<uint64_t>(n));
  return static_cast<int64_t>(x);
}

int64_t Loader::global_row(int64_t step_in_epoch, int64_t r) const {
  return (step_in_epoch * options_.dp_size + options_.dp_rank) * options_.batch_size + r;
}

TokenLoader::TokenLoader(std::shared_ptr<const TokenSource> source, const LoaderOptions& options)
    : Loader(options), source_(std::move(source)) {
  STRAND_CHECK(source_ != nullptr, ValueError, "TokenLoader: no token source");
  const int64_t N = source_->size(), T = options.seq_len;
  const int64_t rows_per_step = options.dp_size * options.batch_size;
  steps_per_epoch_ = N >= 1 ? ((N - 1) / T) / rows_per_step : 0;
  STRAND_CHECK(steps_per_epoch_ >= 1, DataError, source_->name(), ": ", N,
               " tokens, fewer than one step needs (dp_size * batch_size * seq_len + 1 = ", rows_per_step * T + 1,
               ")");
}

Batch TokenLoader::batch_at(int64_t step) const {
  STRAND_CHECK(step >= 0, ValueError, "TokenLoader::batch_at: negative step ", step);
  const int64_t B = options().batch_size, T = options().seq_len, V = options().vocab_size;
  Batch batch;
  batch.step = step;
  batch.epoch = step / steps_per_epoch_;
  const int64_t step_in_epoch = step % steps_per_epoch_;
  batch.inputs = Tensor::empty({B, T}, DType::I32);
  batch.targets = Tensor::empty({B, T}, DType::I32);
  int32_t* inputs = batch.inputs.data<int32_t>();
  int32_t* targets = batch.targets.data<int32_t>();
  const int64_t epoch_rows = steps_per_epoch_ * options().dp_size * B;
  std::vector<int32_t> window(static_cast<size_t>(T + 1));
  for (int64_t r = 0; r < B; ++r) {
    const int64_t row = global_row(step_in_epoch, r);
    const int64_t start =
        (options().shuffle ? shuffled_row(row, epoch_rows, options().shuffle_seed, batch.epoch) : row) * T;
    source_->read(start, T + 1, window.data());
    for (int64_t t = 0; t <= T; ++t) {
      const int32_t id = window[t];
      if (id < 0 || (V > 0 && id >= V)) {
        throw DataError(detail::concat(source_->where(start + t), ": token id ", id,
                                       " outside the model vocabulary [0, ", V > 0 ? V : int64_t{INT32_MAX}, ")"));
      }
    }
    split_row(window.data(), T, r, inputs, targets);
  }
  return batch;
}

SyntheticLoader::SyntheticLoader(const SyntheticSpec& spec, const LoaderOptions& options)
    : Loader(options), spec_(spec) {
  validate_synthetic_spec(spec_);
  STRAND_CHECK(options.seq_len == spec_.seq_len, ValueError, "SyntheticLoader: loader seq_len ", options.seq_len,
               " differs from the task's ", spec_.seq_len);
  STRAND_CHECK(options.vocab_size == 0 || options.vocab_size == spec_.vocab_size, ValueError,
               "SyntheticLoader: loader vocab_size ", options.vocab_size, " differs from the task's ",
               spec_.vocab_size);
}

std::string SyntheticLoader::describe() const {
  return detail::concat("synthetic task ", synthetic_task_name(spec_.task), " (seed ", spec_.seed, ")");
}

Batch SyntheticLoader::batch_at(int64_t step) const {
  STRAND_CHECK(step >= 0, ValueError, "SyntheticLoader::batch_at: negative step ", step);
  const int64_t B = options().batch_size, T = options().seq_len;
  Batch batch;
  batch.step = step;
  batch.inputs = Tensor::empty({B, T}, DType::I32);
  batch.targets = Tensor::empty({B, T}, DType::I32);
  batch.answer_targets = Tensor::empty({B, T}, DType::I32);
  int32_t* inputs = batch.inputs.data<int32_t>();
  int32_t* targets = batch.targets.data<int32_t>();
  int32_t* answers = batch.answer_targets.data<int32_t>();
  std::vector<int32_t> window(static_cast<size_t>(T + 1));
  std::vector<uint8_t> is_answer(static_cast<size_t>(T + 1));
  for (int64_t r = 0; r < B; ++r) {
    synthetic_row(spec_, global_row(step, r), window, is_answer);
    split_row(window.data(), T, r, inputs, targets);
    // Target t is token t + 1 of the row, so its answer flag is is_answer[t + 1].
    for (int64_t t = 0; t < T; ++t) answers[r * T + t] = is_answer[t + 1] ? window[t + 1] : kIgnoreIndex;
  }
  return batch;
}

std::unique_ptr<Loader> make_loader(const DataSpec& spec, Split split) {
  STRAND_CHECK(spec.seq_len >= 1, ValueError, "data.seq_len: ", spec.seq_len, " must be positive");
  STRAND_CHECK(spec.batch_size >= 1, ValueError, "data.batch_size: ", spec.batch_size, " must be positive");
  LoaderOptions options{spec.batch_size, spec.seq_len, spec.dp_rank, spec.dp_size, spec.vocab_size};
  // Evaluation reads the same val rows every time, in order.
  options.shuffle = spec.shuffle && split == Split::train;
  options.shuffle_seed = spec.seed;
  if (spec.format == config::DataFormat::Synthetic) {
    STRAND_CHECK(!options.shuffle, ValueError,
                 "data.shuffle: synthetic rows are drawn at random from run.seed and never repeat; shuffle applies "
                 "to bin and hdf5 data");
    STRAND_CHECK(spec.vocab_size >= 1, ValueError, "data.task: synthetic tasks need model.vocab_size, got ",
                 spec.vocab_size);
    SyntheticSpec task;
    task.task = synthetic_task_of(spec.task);
    task.vocab_size = spec.vocab_size;
    task.seq_len = spec.seq_len;
    task.seed = split == Split::train ? spec.seed : spec.seed ^ kSyntheticValSeedSalt;
    return std::make_unique<SyntheticLoader>(task, options);
  }
  const auto& files = split == Split::train ? spec.train : spec.val;
  STRAND_CHECK(!files.empty(), ValueError, split == Split::train ? "data.train" : "data.val",
               ": no data files given");
  const TokenFiles as = spec.format == config::DataFormat::Hdf5 ? TokenFiles::Hdf5 : TokenFiles::Bin;
  return std::make_unique<TokenLoader>(open_token_files(files, as), options);
}

AnswerScore& AnswerScore::operator+=(const AnswerScore& o) {
  tokens_correct += o.tokens_correct;
  tokens_total += o.tokens_total;
  rows_correct += o.rows_correct;
  rows_total += o.rows_total;
  return *this;
}

std::vector<int64_t> answer_counts(const Tensor& predictions, const Tensor& answer_targets) {
  STRAND_CHECK(predictions.defined() && answer_targets.defined(), ValueError,
               "score_answers: predictions and answer_targets must be defined (text batches carry no answers)");
  STRAND_CHECK(predictions.dtype() == DType::I32 && answer_targets.dtype() == DType::I32, DTypeError,
               "score_answers: predictions ", describe(predictions), " and answer_targets ", describe(answer_targets),
               " must be int32");
  STRAND_CHECK(predictions.dim() == 2 && predictions.shape() == answer_targets.shape(), ShapeError,
               "score_answers: predictions ", predictions.shape(), " and answer_targets ", answer_targets.shape(),
               " must both be [B, T]");
  const Tensor pred = predictions.copy_as(DType::I32, Device::cpu());
  const Tensor want = answer_targets.copy_as(DType::I32, Device::cpu());
  const int32_t* p = pred.data<int32_t>();
  const int32_t* a = want.data<int32_t>();
  const int64_t B = predictions.size(0), T = predictions.size(1);
  std::vector<int64_t> counts(static_cast<size_t>(2 * B), 0);
  for (int64_t r = 0; r < B; ++r) {
    for (int64_t t = 0; t < T; ++t) {
      if (a[r * T + t] == kIgnoreIndex) continue;
      ++counts[static_cast<size_t>(r)];
      counts[static_cast<size_t>(B + r)] += p[r * T + t] == a[r * T + t];
    }
  }
  return counts;
}

AnswerScore score_answer_counts(std::span<const int64_t> counts) {
  const size_t rows = counts.size() / 2;
  AnswerScore score;
  for (size_t r = 0; r < rows; ++r) {
    const int64_t answers = counts[r], correct = counts[rows + r];
    score.tokens_total += answers;
    score.tokens_correct += correct;
    if (answers > 0) {
      ++score.rows_total;
      score.rows_correct += correct == answers;
    }
  }
  return score;
}

AnswerScore score_answers(const Tensor& predictions, const Tensor& answer_targets) {
  return score_answer_counts(answer_counts(predictions, answer_targets));
}

}  // namespace strand::data
