// `strand train` with run.device: cuda. Without a GPU (or in a build without CUDA): one
// "strand: error: ... key 'run.device'" line and a non-zero exit, also from every rank under
// mpiexec. With a GPU: a small GPT trains 20 steps in fp32 on the GPU with the cpu run's losses
// (within 1e-4 relative), and 2 ranks sharing that GPU (MPI, device buffers staged through host
// memory) give the one-rank losses.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "framework/core/device_runtime.h"
#include "launch/run_compare.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::CommandResult;
using testing_support::MetricsRow;
using testing_support::read_metrics;
using testing_support::run_command;
using testing_support::strand_binary;

constexpr double kRelTol = 1e-4;  // the bound for fp32 on the GPU against the cpu
constexpr int kSteps = 20;

class GpuTrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(strand_binary())) << strand_binary();
    dir_ = fs::temp_directory_path() / ("strand_gpu_train_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // 2 layers, GQA, learned positions, fp32; 20 logged steps, no evaluation.
    std::ofstream(dir_ / "tiny.yaml")
        << "model: {vocab_size: 16, n_layer: 2, n_head: 4, n_kv_head: 2, d_model: 64, max_seq_len: 64}\n"
           "data: {format: synthetic, task: copy, seq_len: 64, batch_size: 2}\n"
           "train: {steps: 20, lr: 0.003, warmup_steps: 2, log_every: 1, eval_every: 0}\n"
           "checkpoint: {every: 0}\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Several ranks need mpiexec and a strand built with MPI (the device check carries one without).
  bool can_run_ranks() const {
    if (std::system("command -v mpiexec >/dev/null 2>&1") != 0) return false;
    return run_command(strand_binary() + " --version", dir_).out.find("MPI ON") != std::string::npos;
  }

  CommandResult train(const std::string& name, int ranks, const std::string& sets) const {
    std::string cmd = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ";
    if (ranks > 1) cmd += "mpiexec -np " + std::to_string(ranks) + " --oversubscribe ";
    cmd += strand_binary() + " train " + (dir_ / "tiny.yaml").string() + " --quiet-config --set run.dir=" +
           (dir_ / name).string() + " --set parallel.dp=" + std::to_string(ranks);
    if (!sets.empty()) cmd += " " + sets;
    return run_command(cmd, dir_);
  }

  std::map<int64_t, double> losses(const std::string& name) const {
    std::map<int64_t, double> by_step;
    for (const MetricsRow& row : read_metrics((dir_ / name / "metrics.jsonl").string()))
      by_step[static_cast<int64_t>(*row.at("step"))] = *row.at("loss");
    return by_step;
  }

  void expect_same_losses(const std::string& got, const std::string& want) const {
    const auto a = losses(got), b = losses(want);
    ASSERT_EQ(a.size(), static_cast<size_t>(kSteps)) << got;
    ASSERT_EQ(b.size(), static_cast<size_t>(kSteps)) << want;
    for (const auto& [step, loss] : b)
      EXPECT_LE(std::abs(a.at(step) - loss), kRelTol * std::abs(loss)) << got << " vs " << want << " at step " << step;
  }

  fs::path dir_;
};

// One "strand: error:" line for the whole job (under mpiexec rank 0's, prefixed "[rank 0] ", beside
// mpiexec's own report), naming the key, and a non-zero exit.
void expect_no_gpu_error(const CommandResult& r) {
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  std::vector<std::string> errors;
  for (const std::string& line : r.error_lines())
    if (line.find("strand: error: ") != std::string::npos) errors.push_back(line);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_TRUE(errors[0].rfind("strand: error: ", 0) == 0 || errors[0].rfind("[rank 0] strand: error: ", 0) == 0)
      << errors[0];
  EXPECT_NE(errors[0].find("key 'run.device': cuda"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("no GPU"), std::string::npos) << errors[0];
}

TEST_F(GpuTrainTest, WithoutAGpuOneRankStopsWithOneErrorLine) {
  if (device_count(DeviceType::CUDA) > 0) GTEST_SKIP() << "skipped: this machine has a GPU";
  expect_no_gpu_error(train("one", 1, "--set run.device=cuda"));
  EXPECT_FALSE(fs::exists(dir_ / "one" / "metrics.jsonl"));
}

TEST_F(GpuTrainTest, WithoutAGpuEveryRankStopsWithOneErrorLine) {
  if (device_count(DeviceType::CUDA) > 0) GTEST_SKIP() << "skipped: this machine has a GPU";
  if (!can_run_ranks()) GTEST_SKIP() << "skipped: no mpiexec, or strand built without MPI";
  expect_no_gpu_error(train("two", 2, "--set run.device=cuda"));
  EXPECT_FALSE(fs::exists(dir_ / "two" / "metrics.jsonl"));
}

TEST_F(GpuTrainTest, Fp32OnTheGpuGivesTheCpuLosses) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  const CommandResult cpu = train("cpu", 1, "");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  const CommandResult gpu = train("gpu", 1, "--set run.device=cuda");
  ASSERT_EQ(gpu.exit_code, 0) << gpu.err;
  expect_same_losses("gpu", "cpu");
}

TEST_F(GpuTrainTest, TwoRanksSharingOneGpuGiveTheOneRankLosses) {
  if (device_count(DeviceType::CUDA) == 0) GTEST_SKIP() << "skipped: no GPU";
  if (!can_run_ranks()) GTEST_SKIP() << "skipped: no mpiexec, or strand built without MPI";
  // CUDA_VISIBLE_DEVICES=0: both ranks take GPU 0 (local rank mod 1), whatever the machine has.
  const CommandResult one = train("one", 1, "--set run.device=cuda");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const CommandResult two = run_command(
      "CUDA_VISIBLE_DEVICES=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpiexec -np 2 "
      "--oversubscribe -x CUDA_VISIBLE_DEVICES " +
          strand_binary() + " train " + (dir_ / "tiny.yaml").string() + " --quiet-config --set run.dir=" +
          (dir_ / "two").string() + " --set parallel.dp=2 --set run.device=cuda",
      dir_);
  ASSERT_EQ(two.exit_code, 0) << two.err;
  expect_same_losses("two", "one");
}

}  // namespace
}  // namespace strand
