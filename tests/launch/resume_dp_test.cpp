// Exact resume with two data-parallel ranks: `mpiexec -np 2 strand train` for 20 steps straight,
// and 10 + resume + 10, give identical losses at every step and bit-identical final weights and
// moments; and the two-rank loss of a step is the one-process loss of the same rows.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "launch/run_compare.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::CommandResult;
using testing_support::expect_checkpoints_identical;
using testing_support::losses_by_step;
using testing_support::run_command;
using testing_support::strand_binary;

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
  expect_checkpoints_identical(ckpt("a", 20), ckpt("b", 20));
}

TEST_F(ResumeDpTest, TwoRankLossEqualsTheOneProcessLossOfTheSameRows) {
  // Rank d of 2 with batch B reads the rows one process with batch 2B reads (data/loader.h).
  const CommandResult two = train(2, "two", "--set train.steps=1 --set train.warmup_steps=0 --set model.dropout=0");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const CommandResult one = train(1, "one", "--set train.steps=1 --set train.warmup_steps=0 --set model.dropout=0 "
                                             "--set parallel.dp=1 --set data.batch_size=4");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const double l2 = losses_by_step(run_dir("two") + "/metrics.jsonl").at(1);
  const double l1 = losses_by_step(run_dir("one") + "/metrics.jsonl").at(1);
  // fp32 losses summed in another order: a few hundred ulps at most.
  EXPECT_NEAR(l2, l1, 512 * std::numeric_limits<float>::epsilon() * l1);
}

}  // namespace
}  // namespace strand
