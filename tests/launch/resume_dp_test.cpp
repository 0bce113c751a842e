// Exact resume with two data-parallel ranks: `mpiexec -np 2 strand train` for 20 steps straight,
// and 10 + resume + 10, give identical losses and gradient norms at every step and bit-identical
// final weights and moments; and the two-rank loss and gradient norm of each of five steps are
// the one-process ones of the same rows; both also with data.shuffle on token data.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "launch/run_compare.h"
#include "support/tolerance.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::CommandResult;
using testing_support::expect_checkpoints_identical;
using testing_support::grad_norms_by_step;
using testing_support::losses_by_step;
using testing_support::metric_by_step;
using testing_support::run_command;
using testing_support::strand_binary;

// The summed gradient's norm of one step: fp32 sums over the ranks in another order.
constexpr double kGradNormRelTol = 1e-5;

class ResumeDpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v mpiexec >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpiexec not found (openmpi-bin)";
    dir_ = fs::temp_directory_path() / ("strand_resume_dp_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(fs::exists(strand_binary())) << strand_binary();
    std::ofstream(config()) << "model: {vocab_size: 32, n_layer: 2, n_head: 2, d_model: 16, max_seq_len: 32, dropout: 0.1}\n"
                               "data: {format: synthetic, task: assoc_recall, seq_len: 32, batch_size: 2}\n"
                               "parallel: {dp: 2}\n"
                               "train: {steps: 20, lr: 0.003, warmup_steps: 3, grad_accum: 2, log_every: 1,"
                               " eval_every: 5, eval_batches: 2}\n"
                               "checkpoint: {every: 10, keep: 0}\n";
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string config() const { return (dir_ / "dp.yaml").string(); }
  std::string run_dir(const std::string& run) const { return (dir_ / run).string(); }
  std::string ckpt(const std::string& run, int step) const {
    char name[32];
    std::snprintf(name, sizeof name, "step_%08d.h5", step);
    return (dir_ / run / "checkpoints" / name).string();
  }
  CommandResult train(int ranks, const std::string& run, const std::string& extra = "") const {
    // Open MPI refuses root without these; one thread per rank on a 2-core machine.
    const std::string env = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ";
    const std::string launch = ranks > 1 ? "mpiexec -np " + std::to_string(ranks) + " --oversubscribe " : "";
    return run_command(env + launch + strand_binary() + " train " + config() + " --quiet-config --set run.dir=" +
                           run_dir(run) + " " + extra,
                       dir_);
  }

  fs::path dir_;
};

TEST_F(ResumeDpTest, TwoRanksResumeBitForBit) {
  const CommandResult straight = train(2, "a");
  ASSERT_EQ(straight.exit_code, 0) << straight.out << straight.err;
  ASSERT_TRUE(fs::exists(ckpt("a", 10)));
  const CommandResult resumed = train(2, "b", "--set checkpoint.resume=" + ckpt("a", 10));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_NE(resumed.out.find("resumed from " + ckpt("a", 10) + " at step 10"), std::string::npos) << resumed.out;

  const auto a = losses_by_step(run_dir("a") + "/metrics.jsonl");
  const auto b = losses_by_step(run_dir("b") + "/metrics.jsonl");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 10u);
  for (const auto& [step, loss] : b) EXPECT_EQ(loss, a.at(step)) << "step " << step;  // exact: printed round-trip
  const auto norms_a = grad_norms_by_step(run_dir("a") + "/metrics.jsonl");
  const auto norms_b = grad_norms_by_step(run_dir("b") + "/metrics.jsonl");
  ASSERT_EQ(norms_b.size(), 10u);
  for (const auto& [step, norm] : norms_b) EXPECT_EQ(norm, norms_a.at(step)) << "grad norm, step " << step;
  expect_checkpoints_identical(ckpt("a", 20), ckpt("b", 20));
}

TEST_F(ResumeDpTest, TwoRankLossAndGradNormEqualTheOneProcessOnesOfTheSameRows) {
  // Rank d of 2 with batch B reads the rows one process with batch 2B reads (data/loader.h).
  // Five steps, so that a gradient scaled on the two ranks (which AdamW mostly hides) shows in
  // the later losses as well as in every step's gradient norm.
  const std::string same = "--set train.steps=5 --set train.warmup_steps=0 --set model.dropout=0 ";
  const CommandResult two = train(2, "two", same);
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const CommandResult one = train(1, "one", same + "--set parallel.dp=1 --set data.batch_size=4");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto loss2 = losses_by_step(run_dir("two") + "/metrics.jsonl");
  const auto loss1 = losses_by_step(run_dir("one") + "/metrics.jsonl");
  const auto norm2 = grad_norms_by_step(run_dir("two") + "/metrics.jsonl");
  const auto norm1 = grad_norms_by_step(run_dir("one") + "/metrics.jsonl");
  ASSERT_EQ(loss1.size(), 5u);
  ASSERT_EQ(loss2.size(), 5u);
  ASSERT_EQ(norm1.size(), 5u);
  ASSERT_EQ(norm2.size(), 5u);
  for (int64_t step = 1; step <= 5; ++step) {
    // fp32 losses summed in another order: a few hundred ulps at most.
    EXPECT_NEAR(loss2.at(step), loss1.at(step), 512 * testing::kEpsF32 * loss1.at(step)) << "step " << step;
    EXPECT_NEAR(norm2.at(step), norm1.at(step), kGradNormRelTol * norm1.at(step)) << "grad norm, step " << step;
  }
}

// parallel.grad_dtype: bf16 rounds what the all-reduce sums, so the run differs from fp32's in
// the last bits of every gradient but stays close to it, and still resumes bit for bit.
TEST_F(ResumeDpTest, Bf16GradientAllReduceResumesBitForBitAndStaysCloseToFp32) {
  const std::string bf16 = "--set parallel.grad_dtype=bf16 ";
  const CommandResult fp32 = train(2, "fp32");
  ASSERT_EQ(fp32.exit_code, 0) << fp32.err;
  const CommandResult straight = train(2, "a", bf16);
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  const CommandResult resumed = train(2, "b", bf16 + "--set checkpoint.resume=" + ckpt("a", 10));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;

  const auto wide = losses_by_step(run_dir("fp32") + "/metrics.jsonl");
  const auto a = losses_by_step(run_dir("a") + "/metrics.jsonl");
  const auto b = losses_by_step(run_dir("b") + "/metrics.jsonl");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 10u);
  for (const auto& [step, loss] : b) EXPECT_EQ(loss, a.at(step)) << "step " << step;
  expect_checkpoints_identical(ckpt("a", 20), ckpt("b", 20));
  // Step 1's loss is computed before any update; later ones see bf16-rounded gradients.
  EXPECT_EQ(a.at(1), wide.at(1));
  bool differs = false;
  for (const auto& [step, loss] : a) {
    differs = differs || loss != wide.at(step);
    EXPECT_NEAR(loss, wide.at(step), 0.02 * wide.at(step)) << "step " << step;
  }
  EXPECT_TRUE(differs) << "the bf16 all-reduce should change the gradients' last bits";
}

// data.shuffle on a byte-token file small enough that 20 steps cross epochs: the shuffled
// order is a function of the step, so a resumed run and any split of the global batch read the
// rows an uninterrupted single process reads.
class ResumeDpShuffleTest : public ResumeDpTest {
 protected:
  void SetUp() override {
    ResumeDpTest::SetUp();
    if (IsSkipped()) return;
    std::string text;  // 1200 bytes of varied text: 840 training tokens, 26 rows of 32
    for (int i = 0; text.size() < 1200; ++i) text += "line " + std::to_string(i * 7919 % 1000) + " of the play;\n";
    text.resize(1200);
    std::ofstream(dir_ / "text.txt") << text;
    const CommandResult prepared = run_command(strand_binary() + " data prepare --quiet --val-fraction 0.3 --input " +
                                                   (dir_ / "text.txt").string() + " --out " + (dir_ / "tok").string(),
                                               dir_);
    ASSERT_EQ(prepared.exit_code, 0) << prepared.out << prepared.err;
  }
  std::string token_data(bool shuffle) const {
    return "--set data.format=bin --set data.train=" + (dir_ / "tok_train.bin").string() +
           " --set data.val=" + (dir_ / "tok_val.bin").string() +
           " --set model.vocab_size=256 --set data.shuffle=" + (shuffle ? "true " : "false ");
  }
};

TEST_F(ResumeDpShuffleTest, TwoRanksResumeBitForBitAcrossEpochs) {
  const CommandResult straight = train(2, "a", token_data(true));
  ASSERT_EQ(straight.exit_code, 0) << straight.out << straight.err;
  const auto epochs = metric_by_step(run_dir("a") + "/metrics.jsonl", "epoch");
  ASSERT_EQ(epochs.size(), 20u);
  EXPECT_EQ(epochs.at(1), 0);
  EXPECT_EQ(epochs.at(20), 6);  // an epoch is 6 batches of 4 rows, 2 batches per step
  const CommandResult resumed = train(2, "b", token_data(true) + "--set checkpoint.resume=" + ckpt("a", 10));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  const auto a = losses_by_step(run_dir("a") + "/metrics.jsonl");
  const auto b = losses_by_step(run_dir("b") + "/metrics.jsonl");
  ASSERT_EQ(b.size(), 10u);
  for (const auto& [step, loss] : b) EXPECT_EQ(loss, a.at(step)) << "step " << step;
  expect_checkpoints_identical(ckpt("a", 20), ckpt("b", 20));
}

TEST_F(ResumeDpShuffleTest, TwoRanksReadTheOneProcessRowsOfEachStep) {
  // Eight steps read 16 batches of 4 rows: an epoch is 6 batches, so later epochs' orders are
  // compared as well.
  const std::string same = "--set train.steps=8 --set train.warmup_steps=0 --set model.dropout=0 ";
  const CommandResult two = train(2, "two", same + token_data(true));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const CommandResult one = train(1, "one", same + token_data(true) + "--set parallel.dp=1 --set data.batch_size=4");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const CommandResult ordered =
      train(1, "ordered", same + token_data(false) + "--set parallel.dp=1 --set data.batch_size=4");
  ASSERT_EQ(ordered.exit_code, 0) << ordered.err;
  const auto loss2 = losses_by_step(run_dir("two") + "/metrics.jsonl");
  const auto loss1 = losses_by_step(run_dir("one") + "/metrics.jsonl");
  const auto loss0 = losses_by_step(run_dir("ordered") + "/metrics.jsonl");
  ASSERT_EQ(loss1.size(), 8u);
  ASSERT_EQ(loss2.size(), 8u);
  ASSERT_EQ(loss0.size(), 8u);
  int differs_from_ordered = 0;
  for (int64_t step = 1; step <= 8; ++step) {
    EXPECT_NEAR(loss2.at(step), loss1.at(step), 512 * testing::kEpsF32 * loss1.at(step)) << "step " << step;
    differs_from_ordered += std::abs(loss1.at(step) - loss0.at(step)) > 1e-3 * loss0.at(step);
  }
  EXPECT_GT(differs_from_ordered, 0) << "shuffled and ordered runs read the same rows";
}

}  // namespace
}  // namespace strand
