// The training loop in-process on a tiny GPT: exact resume (from a step file, and after SIGTERM),
// metrics.jsonl fields, the global-token loss normalisation under gradient accumulation, the
// sequence layout a config gives, the refusals (another model shape, a missing resume path,
// a rank count that does not match), and the seams later jobs plug into (micro_batch_loss,
// forward_backward).
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>

#include "data/shards.h"
#include "framework/core/device_runtime.h"
#include "parallel/comm/backends.h"
#include "framework/io/atomic_file.h"
#include "framework/io/checkpoint_dir.h"
#include "framework/io/run_dir.h"
#include "framework/ops/elementwise.h"
#include "framework/train/signals.h"
#include "framework/train/trainer.h"
#include "launch/run_compare.h"
#include "support/tiny_run.h"
#include "models/model.h"

namespace strand::train {
namespace {
namespace fs = std::filesystem;
using testing_support::expect_checkpoints_identical;
using testing_support::losses_by_step;
using testing_support::read_metrics;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

class TrainerTest : public TinyRunTest {};

TEST_F(TrainerTest, ResumeFromStepFileMatchesStraightRunBitForBit) {
  const TrainResult straight = train(tiny("a"));
  ASSERT_EQ(straight.steps.size(), 20u);
  EXPECT_EQ(straight.checkpoint, ckpt("a", 20));
  ASSERT_TRUE(fs::exists(ckpt("a", 10)));

  const TrainResult resumed = train(tiny("b", {"checkpoint.resume=" + ckpt("a", 10)}));
  EXPECT_EQ(resumed.resumed_from, ckpt("a", 10));
  EXPECT_EQ(resumed.start_step, 10);
  ASSERT_EQ(resumed.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(resumed.steps[i].step, straight.steps[10 + i].step);
    EXPECT_EQ(resumed.steps[i].loss, straight.steps[10 + i].loss) << "step " << resumed.steps[i].step;
    EXPECT_EQ(resumed.steps[i].grad_norm, straight.steps[10 + i].grad_norm) << "step " << resumed.steps[i].step;
    EXPECT_EQ(resumed.steps[i].lr, straight.steps[10 + i].lr);
  }
  expect_checkpoints_identical(ckpt("a", 20), ckpt("b", 20));
  ASSERT_TRUE(straight.eval && resumed.eval);
  EXPECT_EQ(straight.eval->loss_sum, resumed.eval->loss_sum);
}

TEST_F(TrainerTest, SigtermSavesACheckpointAndTheResumedRunContinuesExactly) {
  const TrainResult straight = train(tiny("a"));

  TrainerOptions interrupt = quiet();
  interrupt.on_step = [](const StepReport& r) {
    if (r.step == 7) std::raise(SIGTERM);  // the trainer's handler only records it
  };
  const TrainResult stopped = train(tiny("c"), interrupt);
  EXPECT_EQ(stopped.stop_signal, SIGTERM);
  EXPECT_EQ(stopped.end_step, 7);
  EXPECT_EQ(stopped.checkpoint, ckpt("c", 7));
  EXPECT_EQ(io::CheckpointDir((root_ / "c" / "checkpoints").string(), 0).latest(), ckpt("c", 7));
  EXPECT_EQ(stop_signal(), 0) << "run() clears the flag when it returns";

  const TrainResult resumed = train(tiny("c"));  // checkpoint.resume: auto
  EXPECT_EQ(resumed.resumed_from, ckpt("c", 7));
  ASSERT_EQ(resumed.steps.size(), 13u);
  for (size_t i = 0; i < 13; ++i) {
    EXPECT_EQ(resumed.steps[i].loss, straight.steps[7 + i].loss) << "step " << resumed.steps[i].step;
  }
  expect_checkpoints_identical(ckpt("a", 20), ckpt("c", 20));

  // metrics.jsonl of the interrupted + resumed run holds each step once, with the straight losses.
  const auto straight_losses = losses_by_step(metrics("a"));
  const auto resumed_losses = losses_by_step(metrics("c"));
  EXPECT_EQ(read_metrics(metrics("c")).size(), 20u);
  EXPECT_EQ(straight_losses, resumed_losses);
}

TEST_F(TrainerTest, ASignalBeforeTheFinalEvaluationEndsItAndKeepsTheLastStep) {
  // SIGTERM raised as the last step ends: the final step's checkpoint is on disk, the final
  // evaluation stops at its first batch (and is not logged), and the run reports the signal.
  TrainerOptions interrupt = quiet();
  interrupt.on_step = [](const StepReport& r) {
    if (r.step == 20) std::raise(SIGTERM);
  };
  const TrainResult stopped = train(tiny("s", {"train.eval_every=0"}), interrupt);
  EXPECT_EQ(stopped.stop_signal, SIGTERM);
  EXPECT_EQ(stopped.end_step, 20);
  EXPECT_EQ(stopped.checkpoint, ckpt("s", 20));
  EXPECT_TRUE(fs::exists(ckpt("s", 20)));
  EXPECT_FALSE(stopped.eval.has_value()) << "the final evaluation ran although a stop was requested";
  const auto lines = read_metrics(metrics("s"));
  ASSERT_EQ(lines.size(), 20u);
  EXPECT_EQ(lines.back().count("val_loss"), 0u) << "an interrupted evaluation is not logged";
}

TEST_F(TrainerTest, TheLastStepIsSavedBeforeTheFinalEvaluation) {
  // Token-shard data whose val file vanishes during the run: the final evaluation (the first
  // use of the val split) fails, and the last step's checkpoint is on disk all the same.
  std::vector<int32_t> tokens(4096);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7 + i / 5) % 32);
  const std::string train_bin = (root_ / "train.bin").string(), val_bin = (root_ / "val.bin").string();
  data::write_token_shard(train_bin, tokens);
  data::write_token_shard(val_bin, tokens);
  const Config config = tiny("f", {"data.format=bin", "data.task=passkey", "data.train=" + train_bin,
                                   "data.val=" + val_bin, "train.eval_every=0", "checkpoint.every=0"});
  TrainerOptions options = quiet();
  options.on_step = [&](const StepReport& r) {
    if (r.step == 20) fs::remove(val_bin);
  };
  EXPECT_THROW(train(config, options), Error);
  EXPECT_TRUE(fs::exists(ckpt("f", 20))) << "the failed final evaluation cost the last step";
}

TEST_F(TrainerTest, ASecondRunInTheSameDirectoryStopsBeforeTouchingIt) {
  const Config config = tiny("busy");
  const io::DirectoryLock other(config.run.dir, "run.dir");  // a live run holds the directory
  try {
    train(config);
    ADD_FAILURE() << "expected RunDirError";
  } catch (const io::RunDirError& e) {
    EXPECT_CONTAINS(e.what(), "run.dir " + config.run.dir + ": in use by another strand run (pid ");
  }
  EXPECT_FALSE(fs::exists(metrics("busy"))) << "nothing written";
  EXPECT_FALSE(fs::exists(config.checkpoint.dir));
}

TEST_F(TrainerTest, AnUnwritableCheckpointDirIsFoundBeforeTheFirstStep) {
  std::ofstream((root_ / "plain").string()) << "x";
  TrainerOptions options = quiet();
  int steps = 0;
  options.on_step = [&](const StepReport&) { ++steps; };
  const std::string dir = (root_ / "plain" / "checkpoints").string();
  try {
    train(tiny("u", {"checkpoint.dir=" + dir, "checkpoint.every=0"}), options);
    ADD_FAILURE() << "expected RunDirError";
  } catch (const io::RunDirError& e) {
    EXPECT_CONTAINS(e.what(), "checkpoint.dir " + dir + ": cannot create the directory");
  }
  EXPECT_EQ(steps, 0) << "found only at the first save";
}

TEST_F(TrainerTest, PartialFilesOfAKilledSaveAreRemovedAtTheNextStart) {
  const Config config = tiny("k", {"train.steps=4", "train.warmup_steps=1"});
  fs::create_directories(config.checkpoint.dir);
  const fs::path partial = fs::path(config.checkpoint.dir) / ".tmp-step_00000010.h5-4242";
  std::ofstream(partial) << std::string(1000, 'x');
  train(config);
  EXPECT_FALSE(fs::exists(partial));
  EXPECT_TRUE(fs::exists(ckpt("k", 4)));
}

// Sets one element of the model's first parameter to NaN, as a diverging update would.
void poison(models::Model& model) {
  Tensor w = model.named_parameters().front().second;
  w.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
}

TEST_F(TrainerTest, ARunWhoseGradientsStayNonFiniteStops) {
  const Config config = tiny("nan", {"train.max_skipped_steps=3", "checkpoint.every=10"});
  const auto model = models::build_model(config);
  TrainerOptions options = quiet();
  int64_t last_step = 0;
  options.on_step = [&](const StepReport& r) {
    last_step = r.step;
    if (r.step == 12) poison(*model);  // every later gradient is NaN: each step is skipped
  };
  try {
    make_trainer(config, model, nullptr, options).run();
    ADD_FAILURE() << "expected DivergedError";
  } catch (const DivergedError& e) {
    EXPECT_CONTAINS(e.what(), "train.max_skipped_steps: 3 optimizer steps in a row were skipped for non-finite "
                              "gradients (steps 13 to 15); the run stops");
  }
  EXPECT_EQ(last_step, 14) << "the third skipped step stops before its hook";
  EXPECT_EQ(io::CheckpointDir(config.checkpoint.dir, 0).latest(), ckpt("nan", 10));
}

TEST_F(TrainerTest, NoCheckpointHoldsNonFiniteWeights) {
  // A save after the weights went bad is refused; the newest file stays the last good one.
  const Config config = tiny("bad", {"checkpoint.every=1", "checkpoint.keep=2"});
  const auto model = models::build_model(config);
  TrainerOptions options = quiet();
  options.on_step = [&](const StepReport& r) {
    if (r.step == 5) poison(*model);  // after step 5's update, before its save
  };
  try {
    make_trainer(config, model, nullptr, options).run();
    ADD_FAILURE() << "expected DivergedError";
  } catch (const DivergedError& e) {
    EXPECT_CONTAINS(e.what(), "step 5: parameter '" + model->named_parameters().front().first +
                                  "' holds non-finite values; no checkpoint written");
  }
  EXPECT_FALSE(fs::exists(ckpt("bad", 5)));
  EXPECT_EQ(io::CheckpointDir(config.checkpoint.dir, 0).latest(), ckpt("bad", 4));
  EXPECT_TRUE(fs::exists(ckpt("bad", 3))) << "keep still holds the good ones";
}

TEST_F(TrainerTest, ResumingOnOtherDataSaysSo) {
  // What a resumed run prints, captured.
  auto printed = [&](const Config& config) {
    std::FILE* out = std::tmpfile();
    EXPECT_NE(out, nullptr);
    TrainerOptions options;
    options.out = out;
    train(config, options);
    std::rewind(out);
    std::string text;
    for (int c; (c = std::fgetc(out)) != EOF;) text += static_cast<char>(c);
    std::fclose(out);
    return text;
  };
  train(tiny("d", {"train.steps=10"}));
  EXPECT_CONTAINS(printed(tiny("d", {"train.steps=12", "data.task=copy"})),
                  "warning: " + ckpt("d", 10) + " was trained on data.task assoc_recall, this run has copy");
  const std::string same = printed(tiny("d", {"train.steps=14", "data.task=copy"}));
  EXPECT_EQ(same.find("was trained on"), std::string::npos) << same;
}

TEST_F(TrainerTest, ResumingAFinishedRunDoesNothing) {
  train(tiny("a"));
  const TrainResult again = train(tiny("a"));
  EXPECT_EQ(again.start_step, 20);
  EXPECT_EQ(again.end_step, 20);
  EXPECT_TRUE(again.steps.empty());
  EXPECT_TRUE(again.checkpoint.empty());
  EXPECT_EQ(read_metrics(metrics("a")).size(), 20u);
}

TEST_F(TrainerTest, MetricsJsonlHasEveryFieldOnEveryLoggedStep) {
  const Config config = tiny("m", {"train.log_every=4"});
  train(config);
  const auto rows = read_metrics(metrics("m"));
  // Steps 4, 8, ..., 20 by log_every, plus the eval steps 5, 10, 15 (20 is both).
  std::vector<int64_t> steps;
  for (const auto& row : rows) steps.push_back(static_cast<int64_t>(*row.at("step")));
  EXPECT_EQ(steps, (std::vector<int64_t>{4, 5, 8, 10, 12, 15, 16, 20}));
  for (const auto& row : rows) {
    for (const char* key : {"step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "peak_mem_bytes", "loss_scale", "skipped"}) {
      EXPECT_TRUE(row.count(key)) << key;
    }
    EXPECT_TRUE(std::isfinite(*row.at("loss")));
    EXPECT_GT(*row.at("tokens_per_s"), 0.0);
    EXPECT_GT(*row.at("peak_mem_bytes"), 0.0);
    EXPECT_EQ(*row.at("loss_scale"), 1.0);
    EXPECT_FALSE(row.at("mfu").has_value()) << "no peak given: mfu is null";
    const int64_t step = static_cast<int64_t>(*row.at("step"));
    const bool evaluated = step % 5 == 0;
    EXPECT_EQ(row.count("val_loss") == 1, evaluated) << "step " << step;
    if (evaluated) {
      EXPECT_TRUE(std::isfinite(*row.at("val_loss")));
      const double acc = *row.at("val_accuracy");
      EXPECT_GE(acc, 0.0);
      EXPECT_LE(acc, 1.0);
    }
  }
  // The lr column follows the schedule: warmup to 0.003 at step 3, then cosine to 0 at step 20.
  EXPECT_DOUBLE_EQ(*rows.front().at("lr"), optim::LrSchedule::make(0.003, 0.0, 3, 20, optim::DecayKind::Cosine).lr_at(3));
}

TEST_F(TrainerTest, MfuUsesThePeakAndTheFlopEstimate) {
  TrainerOptions options = quiet();
  options.peak_flops = 1e9;
  const Config config = tiny("f", {"train.steps=2", "train.warmup_steps=0", "train.eval_every=0"});
  train(config, options);
  const auto rows = read_metrics(metrics("f"));
  ASSERT_EQ(rows.size(), 2u);
  const int64_t params = models::build_model(config)->parameter_count();
  const double expected = flops_per_token(config, params) * *rows[1].at("tokens_per_s") / 1e9;
  EXPECT_NEAR(*rows[1].at("mfu"), expected, expected * 1e-12);
  EXPECT_EQ(flops_per_token(config, params), 6.0 * params + 12.0 * 2 * 16 * 32);
}

TEST_F(TrainerTest, LossIsNormalisedByTheTokensOfTheWholeStep) {
  // batch 1 x 2 micro-steps reads the same rows as batch 2 x 1 (the row rule of data/loader.h),
  // so the step's mean loss and gradient norm agree up to fp32 summation order.
  const std::vector<std::string> common{"model.dropout=0", "train.steps=1", "train.warmup_steps=0",
                                        "train.eval_every=0"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), common.begin(), common.end());
    return extra;
  };
  const TrainResult accum = train(tiny("acc", with({"data.batch_size=1", "train.grad_accum=2"})));
  const TrainResult whole = train(tiny("whole", with({"data.batch_size=2", "train.grad_accum=1"})));
  ASSERT_EQ(accum.steps.size(), 1u);
  EXPECT_EQ(accum.steps[0].scored_tokens, whole.steps[0].scored_tokens);
  EXPECT_EQ(accum.steps[0].scored_tokens, 2 * 32);
  // fp32 sums over 2 x 32 tokens and 16-wide dot products: a few hundred ulps at most.
  const double tol = 512 * std::numeric_limits<float>::epsilon();
  EXPECT_NEAR(accum.steps[0].loss, whole.steps[0].loss, tol * whole.steps[0].loss);
  EXPECT_NEAR(accum.steps[0].grad_norm, whole.steps[0].grad_norm, tol * whole.steps[0].grad_norm);
  // Mean loss of an untrained model is near log(V): the count is the token count, not rows.
  EXPECT_NEAR(whole.steps[0].loss, std::log(32.0), 0.5);
}

TEST_F(TrainerTest, RefusesACheckpointOfAnotherShapeNamingParameterAndShapes) {
  train(tiny("a", {"train.steps=2", "train.warmup_steps=0", "train.eval_every=0"}));
  try {
    train(tiny("w", {"model.d_model=24", "checkpoint.resume=" + ckpt("a", 2)}));
    FAIL() << "expected a CheckpointError";
  } catch (const io::CheckpointError& e) {
    EXPECT_CONTAINS(e.what(), ckpt("a", 2));
    EXPECT_CONTAINS(e.what(), "transformer.");
    EXPECT_CONTAINS(e.what(), "16]");
    EXPECT_CONTAINS(e.what(), "24]");
  }
}

TEST_F(TrainerTest, AMissingResumePathIsAnErrorNotAFreshStart) {
  const std::string missing = (root_ / "nowhere" / "step_00000010.h5").string();
  try {
    train(tiny("a", {"checkpoint.resume=" + missing}));
    FAIL() << "expected a CheckpointError";
  } catch (const io::CheckpointError& e) {
    EXPECT_CONTAINS(e.what(), missing);
  }
  EXPECT_FALSE(fs::exists(root_ / "a" / "metrics.jsonl"));
}

TEST_F(TrainerTest, RefusesARankCountOtherThanDpTimesSp) {
  try {
    train(tiny("a", {"parallel.dp=2"}));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_CONTAINS(e.what(), "parallel.dp");
    EXPECT_CONTAINS(e.what(), "mpirun -np 2");
  }
}

TEST_F(TrainerTest, RefusesTheNcclBackendForCpuModels) {
  try {
    train(tiny("a", {"parallel.backend=nccl"}));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_CONTAINS(e.what(), "parallel.backend");
    EXPECT_CONTAINS(e.what(), "use mpi");
  }
  EXPECT_FALSE(fs::exists(root_ / "a" / "metrics.jsonl"));
}

// run.device: cuda on a machine without a GPU (or a build without CUDA): one ConfigError naming
// the key, before anything is trained or written. With a GPU the placement itself is checked by
// tests/launch/gpu_train_test.cpp.
TEST_F(TrainerTest, RunDeviceCudaWithoutAGpuIsOneConfigError) {
  if (device_count(DeviceType::CUDA) > 0) GTEST_SKIP() << "skipped: this machine has a GPU";
  for (const std::string backend : {"mpi", "nccl"}) {
    if (backend == "nccl" && !parallel::built_with_nccl()) continue;  // refused for that first
    try {
      train(tiny("a", {"run.device=cuda", "parallel.backend=" + backend}));
      FAIL() << "expected a ConfigError";
    } catch (const ConfigError& e) {
      EXPECT_CONTAINS(e.what(), "key 'run.device': cuda");
      EXPECT_CONTAINS(e.what(), "no GPU");
    }
  }
  EXPECT_FALSE(fs::exists(root_ / "a" / "metrics.jsonl"));
  // The default trains on the cpu, as before.
  EXPECT_EQ(tiny("b").run.device, strand::config::RunDevice::Cpu);
}

TEST_F(TrainerTest, SequenceLayoutFollowsTheParallelSection) {
  // ring: the auto layout of a causal gpt is zigzag, over all sp ranks.
  const Config ring = tiny("l", {"parallel.sp=4"});
  EXPECT_EQ(ulysses_degree_of(ring), 1);
  const parallel::SequenceLayout r = sequence_layout_of(ring);
  EXPECT_EQ(r.kind(), parallel::LayoutKind::Zigzag);
  EXPECT_EQ(r.parts(), 4);
  EXPECT_EQ(r.local_len(), 8);
  EXPECT_EQ(r.segments(1), (std::vector<parallel::Segment>{{4, 4}, {24, 4}}));  // chunks 1 and 6 of 8
  // ulysses: contiguous (auto), every rank one run of N / sp positions.
  const Config ulysses = tiny("l", {"parallel.sp=2", "parallel.sp_mode=ulysses"});
  EXPECT_EQ(ulysses_degree_of(ulysses), 2);
  EXPECT_EQ(sequence_layout_of(ulysses).segments(1), (std::vector<parallel::Segment>{{16, 16}}));
  // hybrid: the ring's zigzag over sp / u ring ranks, each segment cut over a Ulysses group.
  const Config hybrid = tiny("l", {"parallel.sp=4", "parallel.sp_mode=hybrid", "parallel.ulysses_degree=2"});
  EXPECT_EQ(ulysses_degree_of(hybrid), 2);
  const parallel::SequenceLayout h = sequence_layout_of(hybrid);
  const parallel::SequenceLayout want = parallel::SequenceLayout::hybrid(parallel::LayoutKind::Zigzag, 32, 2, 2);
  ASSERT_EQ(h.parts(), 4);
  for (int s = 0; s < 4; ++s) EXPECT_EQ(h.segments(s), want.segments(s)) << "sp rank " << s;
  // A length that does not split names the key, the layout and a length that does.
  try {
    sequence_layout_of(tiny("l", {"parallel.sp=4", "data.seq_len=30"}));
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_CONTAINS(e.what(), "key 'data.seq_len': 30 does not split under parallel.layout zigzag, sp_mode ring, sp 4");
    EXPECT_CONTAINS(e.what(), "32");
  }
}

TEST_F(TrainerTest, EvaluationCountsAnswersOverEvalBatches) {
  const Config config = tiny("e", {"train.eval_batches=3"});
  Trainer trainer = make_trainer(config, models::build_model(config), nullptr, quiet());
  const EvalResult r = trainer.evaluate_val();
  EXPECT_EQ(r.batches, 3);
  EXPECT_EQ(r.tokens, 3 * 2 * 32);  // every target of the LM objective is scored
  ASSERT_TRUE(r.score.has_value());
  EXPECT_EQ(r.score->tokens_total, 3 * 2);  // assoc_recall: one answer token per row
  EXPECT_EQ(r.score->rows_total, 3 * 2);
  EXPECT_TRUE(std::isfinite(r.loss()));
  // Evaluation is a pure function of the weights: the same twice, and the mode is restored.
  EXPECT_EQ(trainer.evaluate_val().loss_sum, r.loss_sum);
  EXPECT_TRUE(trainer.model().is_training());
}

// A job that changes the loss of a micro-batch (distillation's seam): every micro-batch of
// every step goes through micro_batch_loss, and what it returns is what the step trains on.
class ScaledLossTrainer : public Trainer {
 public:
  ScaledLossTrainer(TrainerParts parts, double factor, TrainerOptions options)
      : Trainer(std::move(parts), std::move(options)), factor_(factor) {}
  int calls = 0;

 protected:
  models::LossOutput micro_batch_loss(const data::Batch& batch) override {
    ++calls;
    models::LossOutput out = Trainer::micro_batch_loss(batch);
    if (factor_ != 1.0) out.loss_sum = ops::mul_scalar(out.loss_sum, factor_);
    return out;
  }

 private:
  double factor_;
};

TEST_F(TrainerTest, MicroBatchLossIsWhatEveryStepTrainsOn) {
  const Config config = tiny("s", {"train.steps=3", "train.eval_every=0", "checkpoint.every=0"});
  TrainerOptions options = quiet();
  options.write_files = false;
  const TrainResult plain = make_trainer(config, models::build_model(config), nullptr, options).run();

  ScaledLossTrainer same(build_trainer_parts(config, models::build_model(config)), 1.0, options);
  const TrainResult through_seam = same.run();
  EXPECT_EQ(same.calls, 3 * 2) << "steps x grad_accum micro-batches";
  ASSERT_EQ(through_seam.steps.size(), plain.steps.size());
  for (size_t i = 0; i < plain.steps.size(); ++i) {
    EXPECT_EQ(through_seam.steps[i].loss, plain.steps[i].loss) << "step " << i + 1;
    EXPECT_EQ(through_seam.steps[i].grad_norm, plain.steps[i].grad_norm) << "step " << i + 1;
  }

  // Doubling the loss doubles the logged loss exactly (a power of two scales fp sums exactly)
  // and the gradient norm up to rounding of subnormal partial products.
  ScaledLossTrainer doubled(build_trainer_parts(config, models::build_model(config)), 2.0, options);
  const StepReport first = doubled.train_step();
  EXPECT_EQ(first.loss, 2.0 * plain.steps[0].loss);
  EXPECT_DOUBLE_EQ(first.grad_norm, 2.0 * plain.steps[0].grad_norm);
}

TEST_F(TrainerTest, ForwardBackwardLeavesGradientsAndNeitherStepsNorMovesTheLoader) {
  // Pruning's gate-gradient pass: gradients of its own batches, summed and scaled by 1 / N.
  const Config config = tiny("g", {"train.eval_every=0"});
  Trainer trainer = make_trainer(config, models::build_model(config), nullptr, quiet());
  std::vector<std::vector<double>> before;
  for (const auto& named : trainer.model().named_parameters()) before.push_back(named.second.to_vector());
  const std::unique_ptr<data::Loader> loader = data::make_loader(data_spec_of(config, 0, 1), data::Split::val);
  const GradientPass pass = trainer.forward_backward(*loader, 2);
  EXPECT_EQ(pass.scored_tokens, 2 * 2 * 32);
  EXPECT_NEAR(pass.loss_sum / static_cast<double>(pass.scored_tokens), std::log(32.0), 0.5);
  EXPECT_EQ(trainer.step(), 0);
  size_t i = 0;
  for (const auto& [name, param] : trainer.model().named_parameters()) {
    EXPECT_TRUE(param.grad().defined()) << name;
    EXPECT_EQ(param.to_vector(), before[i++]) << name << " changed without an optimizer step";
  }
  // The pass leaves the training stream where it was: the next step is a fresh trainer's first.
  const StepReport after_pass = trainer.train_step();
  const StepReport fresh = make_trainer(config, models::build_model(config), nullptr, quiet()).train_step();
  EXPECT_EQ(after_pass.loss, fresh.loss);
  EXPECT_EQ(after_pass.grad_norm, fresh.grad_norm);
}

TEST(StopSignalTest, FirstSignalIsRecordedSecondEndsTheProcess) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    StopSignalGuard guard;
    std::raise(SIGINT);
    if (stop_signal() != SIGINT) _exit(3);  // recorded, and the process lives on
    std::raise(SIGINT);                      // an impatient second Ctrl-C
    _exit(4);                                // not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGINT);
}

TEST(StopSignalTest, TheGuardRestoresThePreviousHandler) {
  static int previous_calls = 0;
  auto* previous = +[](int) { ++previous_calls; };
  std::signal(SIGTERM, previous);
  {
    StopSignalGuard guard;
    std::raise(SIGTERM);
    EXPECT_EQ(stop_signal(), SIGTERM);
    EXPECT_EQ(previous_calls, 0);
  }
  clear_stop_signal();
  std::raise(SIGTERM);
  EXPECT_EQ(previous_calls, 1);
  EXPECT_EQ(stop_signal(), 0);
  std::signal(SIGTERM, SIG_DFL);
}

TEST(StopSignalTest, HangupAndBrokenPipeStopTheRunUnlessIgnored) {
  {
    StopSignalGuard guard;
    std::raise(SIGHUP);
    EXPECT_EQ(stop_signal(), SIGHUP);
    clear_stop_signal();
    std::raise(SIGPIPE);
    std::raise(SIGPIPE);  // every later write to the closed pipe raises it again: still alive
    EXPECT_EQ(stop_signal(), SIGPIPE);
    clear_stop_signal();
  }
  // Under nohup SIGHUP arrives ignored, and a closed terminal must not stop the run.
  std::signal(SIGHUP, SIG_IGN);
  {
    StopSignalGuard guard;
    std::raise(SIGHUP);
    EXPECT_EQ(stop_signal(), 0);
  }
  std::signal(SIGHUP, SIG_DFL);
}

}  // namespace
}  // namespace strand::train
