// The batch loader: rows by the llm.c row rule, data-parallel sharding, O(1) resume, synthetic tasks.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/synthetic.h"
#include "data/token_source.h"
#include "framework/config/config.h"
#include "framework/core/tensor.h"

namespace strand::data {

struct LoaderOptions {
  int64_t batch_size = 1;  // B: rows per replica per step
  int64_t seq_len = 1;     // T
  int64_t dp_rank = 0;     // d, this replica
  int64_t dp_size = 1;     // K, replicas
  int64_t vocab_size = 0;  // when > 0, every token read is checked to lie in [0, vocab_size)
  bool shuffle = false;    // token streams: epoch e reads the rows of the epoch in a permutation
  uint64_t shuffle_seed = 0;  // of (shuffle_seed, e), the same for every split of the global batch
};

// Where a loader stands: the next step, plus the geometry it was saved with, which restore()
// checks (a step means other rows under another global batch B*dp, T or stream).
struct LoaderPosition {
  int64_t step = 0;
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  int64_t dp_size = 0;
  int64_t stream_tokens = 0;  // 0 for synthetic tasks

  // Flat form for checkpoints (trainer group): {version 1, step, batch_size, seq_len, dp_size, stream_tokens}.
  std::vector<int64_t> to_ints() const;
  static LoaderPosition from_ints(std::span<const int64_t> ints);  // ValueError on a bad length or version
  bool operator==(const LoaderPosition&) const = default;
};

// Batches are a pure function of the step (docs/data-format.md, "Rows and sharding"): replica d
// of K at step s reads global rows (s*K + d)*B + r, r < B, so the K replicas together read
// exactly the rows a single process with batch K*B reads at step s.
class Loader {
 public:
  explicit Loader(const LoaderOptions& options);
  virtual ~Loader() = default;

  // The batch of step(), then advances by one step.
  Batch next();
  // The batch of any step, without moving.
  virtual Batch batch_at(int64_t step) const = 0;

  int64_t step() const { return step_; }
  LoaderPosition position() const;
  // Jumps to pos.step in O(1). pos may come from another split of the same global batch
  // (batch_size x dp_size), which reads the same rows at every step; DataError when the global
  // batch, seq_len or stream differ.
  void restore(const LoaderPosition& pos);

  const LoaderOptions& options() const { return options_; }
  virtual int64_t steps_per_epoch() const = 0;  // 0: endless (synthetic tasks)
  virtual int64_t stream_tokens() const = 0;    // tokens in the stream; 0 for synthetic tasks
  virtual std::string describe() const = 0;     // files or task, for logs and errors

  // The global row index of row r of this replica at the epoch-relative step s.
  int64_t global_row(int64_t step_in_epoch, int64_t r) const;

 private:
  LoaderOptions options_;
  int64_t step_ = 0;
};

// Rows of a token stream (.bin shards, HDF5 datasets). Epoch e covers steps
// [e*E, (e+1)*E) with E = floor(floor((N - 1) / T) / (K*B)); the tokens past the last whole
// step of an epoch are not read, and step e*E + i reads what step i reads. With
// options.shuffle, global row g of epoch e reads the stream window shuffled_row(g, E*K*B,
// shuffle_seed, e) instead of window g: still a pure function of the step, so resume and any
// split of the global batch read the same rows at every step.
class TokenLoader final : public Loader {
 public:
  // Throws DataError naming the source when it holds fewer than K*B*T + 1 tokens.
  TokenLoader(std::shared_ptr<const TokenSource> source, const LoaderOptions& options);
  Batch batch_at(int64_t step) const override;
  int64_t steps_per_epoch() const override { return steps_per_epoch_; }
  int64_t stream_tokens() const override { return source_->size(); }
  std::string describe() const override { return source_->name(); }

 private:
  std::shared_ptr<const TokenSource> source_;
  int64_t steps_per_epoch_ = 0;
};

// Rows of a synthetic task, endless: global row g is synthetic_row(spec, g). options.seq_len
// must equal spec.seq_len, options.vocab_size (if set) spec.vocab_size.
class SyntheticLoader final : public Loader {
 public:
  SyntheticLoader(const SyntheticSpec& spec, const LoaderOptions& options);
  Batch batch_at(int64_t step) const override;
  int64_t steps_per_epoch() const override { return 0; }
  int64_t stream_tokens() const override { return 0; }
  std::string describe() const override;
  const SyntheticSpec& spec() const { return spec_; }

 private:
  SyntheticSpec spec_;
};

// A permutation of [0, n) for each (seed, epoch): a 4-round Feistel network over the smallest
// even power of two >= n with Philox rounds, walked until it lands below n. O(1) time and memory
// per row, so an epoch of millions of rows needs no table.
int64_t shuffled_row(int64_t row, int64_t n, uint64_t seed, int64_t epoch);

// The `data:` section of a config, resolved (architecture.md §5); format and task keep the
// config's types.
struct DataSpec {
  config::DataFormat format = config::DataFormat::Bin;
  std::vector<std::string> train;  // paths or glob patterns (bin, hdf5)
  std::vector<std::string> val;
  config::SyntheticTask task = config::SyntheticTask::Passkey;  // format synthetic only
  int64_t seq_len = 0;
  int64_t batch_size = 0;
  int64_t vocab_size = 0;          // the model's; checked against every token read
  uint64_t seed = 0;               // run.seed: synthetic tasks and the shuffle order
  bool shuffle = false;            // data.shuffle (training split of bin and hdf5 only)
  int64_t dp_rank = 0;
  int64_t dp_size = 1;
};

enum class Split { train, val };

// The synthetic val split uses the seed XOR this, so its rows differ from the training rows.
inline constexpr uint64_t kSyntheticValSeedSalt = 0x76616c5f73706c74ull;  // "val_splt"

// Builds the loader of one split. Throws ValueError naming the data.* key for a bad size or an
// empty file list; DataError naming the file for bad files.
std::unique_ptr<Loader> make_loader(const DataSpec& spec, Split split);

// Accuracy on answer tokens: predictions [B, T] int32 (argmax of the logits) against a batch's
// answer_targets. A row is correct when all its answer tokens are; rows without answers are
// not counted.
struct AnswerScore {
  int64_t tokens_correct = 0;
  int64_t tokens_total = 0;
  int64_t rows_correct = 0;
  int64_t rows_total = 0;
  double token_accuracy() const { return tokens_total ? double(tokens_correct) / double(tokens_total) : 0.0; }
  double row_accuracy() const { return rows_total ? double(rows_correct) / double(rows_total) : 0.0; }
  AnswerScore& operator+=(const AnswerScore& o);
};
AnswerScore score_answers(const Tensor& predictions, const Tensor& answer_targets);

// The per-row counts behind score_answers, for rows split over several ranks (the counts of a
// row's parts add up; its verdict needs them all): [answers of row 0..B-1, correct of row 0..B-1].
std::vector<int64_t> answer_counts(const Tensor& predictions, const Tensor& answer_targets);
// The score of such counts (2B values, as answer_counts returns them).
AnswerScore score_answer_counts(std::span<const int64_t> counts);

}  // namespace strand::data
