// Jobs that stop on their own: a rank stopped with SIGSTOP ends the whole job after
// parallel.timeout_s with one error line (the stall watchdog), and a scheduler's SIGTERM to
// launch/train.sh's mpirun while a large checkpoint is being written ends with the checkpoint
// of the last finished step, loadable, no temp file left, and exit status 0 within seconds.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "launch/job.h"
#include "launch/run_compare.h"
#include "support/temp_dir.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::Job;
using testing_support::JobClock;
using testing_support::RankProcess;
using testing_support::rank_processes;
using testing_support::read_metrics;
using testing_support::read_text;
using testing_support::strand_binary;

constexpr std::chrono::seconds kStartLimit{120};  // a loaded machine may take a while to step

class StopJob : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v mpiexec >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpiexec not found (openmpi-bin)";
    ASSERT_TRUE(fs::exists(strand_binary())) << strand_binary();
    dir_ = fs::temp_directory_path() / ("strand_stop_job_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    // A failed assertion may leave (stopped) ranks of a million-step run behind: end them.
    for (const RankProcess& p : rank_processes(run_dir())) {
      kill(p.pid, SIGKILL);
      kill(p.pid, SIGCONT);
    }
    fs::remove_all(dir_);
  }
  std::string run_dir() const { return (dir_ / "run").string(); }
  std::string write_config(const std::string& text) const {
    const std::string path = (dir_ / "long.yaml").string();
    std::ofstream(path) << text;
    return path;
  }
  fs::path dir_;
};

TEST_F(StopJob, AStoppedRankEndsTheJobAfterTheTimeout) {
  const std::string config = write_config(
      "model: {vocab_size: 32, n_layer: 2, n_head: 2, d_model: 32, max_seq_len: 64}\n"
      "data: {format: synthetic, task: assoc_recall, seq_len: 64, batch_size: 2}\n"
      "parallel: {dp: 2, timeout_s: 3}\n"
      "train: {steps: 1000000, lr: 0.001, log_every: 1}\n");
  const fs::path output = dir_ / "job.out";
  Job job("env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 mpiexec -np 2 "
          "--oversubscribe " + strand_binary() + " train " + config + " --quiet-config --set run.dir=" + run_dir(),
          output);
  ASSERT_TRUE(job.started());
  ASSERT_EQ(testing_support::wait_for_lines(job, run_dir() + "/metrics.jsonl", 1, kStartLimit), "")
      << read_text(output.string());

  pid_t victim = 0;
  for (const RankProcess& p : rank_processes(run_dir()))
    if (p.rank == 1) victim = p.pid;
  ASSERT_NE(victim, 0) << "no process with OMPI_COMM_WORLD_RANK=1";
  ASSERT_EQ(kill(victim, SIGSTOP), 0);
  const auto stopped_at = JobClock::now();

  // Rank 0 waits in its next exchange with rank 1; 3 s later its watchdog ends the job.
  const std::optional<int> exit_code = job.wait_for_exit(std::chrono::seconds(30));
  const double seconds = std::chrono::duration<double>(JobClock::now() - stopped_at).count();
  const std::string text = read_text(output.string());
  ASSERT_TRUE(exit_code.has_value()) << "the job still runs 30 s after rank 1 was stopped:\n" << text;
  EXPECT_NE(*exit_code, 0) << text;
  EXPECT_GE(seconds, 3.0) << "ended before the timeout:\n" << text;
  EXPECT_NE(text.find("[rank 0] strand: error: no progress for 3"), std::string::npos) << text;
  EXPECT_NE(text.find("while waiting in mpi "), std::string::npos) << text;
  EXPECT_NE(text.find("(key 'parallel.timeout_s' = 3): another of the 2 ranks has stopped or died"),
            std::string::npos) << text;
  // The stopped rank's own watchdog knows it was suspended and stays quiet when continued.
  EXPECT_EQ(text.find("[rank 1] strand: error: no progress"), std::string::npos) << text;
  std::printf("[ info ] job ended %.1f s after rank 1 was stopped (exit %d)\n", seconds, *exit_code);
  for (const RankProcess& p : rank_processes(run_dir()))
    ADD_FAILURE() << "rank " << p.rank << " (pid " << p.pid << ") still running";
}

TEST_F(StopJob, SigtermToTrainShDuringALargeSaveKeepsTheLastStep) {
  // About 230 MB per checkpoint (19 M parameters with AdamW moments), one after every step: the
  // ranks spend most of their time saving, and the signal comes while a temp file is written.
  const std::string config = write_config(
      "model: {vocab_size: 32, n_layer: 6, n_head: 4, d_model: 512, max_seq_len: 32}\n"
      "data: {format: synthetic, task: assoc_recall, seq_len: 32, batch_size: 1}\n"
      "parallel: {dp: 2}\n"
      "train: {steps: 1000000, lr: 0.001, log_every: 1}\n"
      "checkpoint: {every: 1, keep: 1}\n");
  const fs::path output = dir_ / "job.out";
  const std::string train_sh = std::string(STRAND_SOURCE_DIR) + "/launch/train.sh";
  Job job("env STRAND_BIN=" + strand_binary() + " bash " + train_sh + " " + config +
              " --quiet-config --set run.dir=" + run_dir(),
          output);
  ASSERT_TRUE(job.started());
  ASSERT_EQ(testing_support::wait_for_lines(job, run_dir() + "/metrics.jsonl", 1, kStartLimit), "")
      << read_text(output.string());

  // The next save in progress: its temp file appears.
  const fs::path checkpoints = fs::path(run_dir()) / "checkpoints";
  const auto deadline = JobClock::now() + std::chrono::seconds(60);
  bool saving = false;
  while (!saving && JobClock::now() < deadline) {
    saving = !strand::testing::files_starting_with(checkpoints, ".tmp-").empty();
    if (!saving) usleep(2000);
  }
  ASSERT_TRUE(saving) << "no save seen in 60 s:\n" << read_text(output.string());
  // As a scheduler does: TERM to the launcher script, which passes it on to every rank.
  ASSERT_EQ(kill(job.pid(), SIGTERM), 0);
  const auto signalled_at = JobClock::now();

  const std::optional<int> exit_code = job.wait_for_exit(std::chrono::seconds(60));
  const std::string text = read_text(output.string());
  const double seconds = std::chrono::duration<double>(JobClock::now() - signalled_at).count();
  ASSERT_TRUE(exit_code.has_value()) << "train.sh still runs 60 s after SIGTERM:\n" << text;
  EXPECT_EQ(*exit_code, 0) << text;
  EXPECT_NE(text.find("stopped by SIGUSR1 after step"), std::string::npos) << text;
  // The ranks stop after the save in progress and the next step at most, not after mpirun's
  // 30 s grace period for signals sent to it directly.
  EXPECT_LT(seconds, 30.0) << text;

  // The checkpoint of the last logged step is there, whole, and nothing half-written is left.
  const auto rows = read_metrics(run_dir() + "/metrics.jsonl");
  ASSERT_FALSE(rows.empty());
  const long long last = static_cast<long long>(*rows.back().at("step"));
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld.h5", last);
  for (const std::string& f : strand::testing::files_starting_with(checkpoints, ".tmp-")) ADD_FAILURE() << "left behind: " << f;
  const fs::path latest = checkpoints / name;
  ASSERT_TRUE(fs::exists(latest)) << "no checkpoint of step " << last << " in " << checkpoints << ":\n" << text;
  const auto inspect = testing_support::run_command(strand_binary() + " inspect " + latest.string(), dir_);
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
  std::printf("[ info ] stopped at step %lld; train.sh exited %d, %.1f s after SIGTERM\n", last, *exit_code, seconds);
}

}  // namespace
}  // namespace strand
