// A rank killed mid-step ends the whole job: `mpiexec -np 2 strand train` on a long run, one
// rank's strand process gets SIGKILL once training has logged a step, and mpiexec must exit
// non-zero within 30 s with a message naming the killed rank (no rank left waiting forever in
// an all-reduce for a peer that is gone).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "launch/job.h"
#include "launch/run_compare.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing_support::read_text;
using testing_support::strand_binary;
using testing_support::Job;
using testing_support::RankProcess;
using testing_support::rank_processes;

constexpr std::chrono::seconds kStartLimit{120};  // a loaded machine may take a while to step
constexpr std::chrono::seconds kEndLimit{30};     // the contract: the job ends within 30 s

class KillRank : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v mpiexec >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpiexec not found (openmpi-bin)";
    dir_ = fs::temp_directory_path() / ("strand_kill_rank_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    // A failed assertion may leave ranks of a million-step run behind: end them.
    for (const RankProcess& p : rank_processes((dir_ / "run").string())) kill(p.pid, SIGKILL);
    fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(KillRank, KilledRankEndsTheJobWithAnErrorWithin30Seconds) {
  ASSERT_TRUE(fs::exists(strand_binary())) << strand_binary();
  const fs::path& dir = dir_;
  const std::string run_dir = (dir / "run").string();
  const std::string config = (dir / "long.yaml").string();
  // Far more steps than the test waits for; every step logged, no checkpoints until the end.
  std::ofstream(config) << "model: {vocab_size: 32, n_layer: 2, n_head: 2, d_model: 32, max_seq_len: 64}\n"
                           "data: {format: synthetic, task: assoc_recall, seq_len: 64, batch_size: 2}\n"
                           "parallel: {dp: 2}\n"
                           "train: {steps: 1000000, lr: 0.001, log_every: 1}\n";

  const std::string command = "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
                              "mpiexec -np 2 --oversubscribe " +
                              strand_binary() + " train " + config + " --quiet-config --set run.dir=" + run_dir;
  const fs::path output = dir / "job.out";
  Job job(command, output);
  ASSERT_TRUE(job.started());

  // Training has started once a step is logged.
  const std::string metrics = run_dir + "/metrics.jsonl";
  const std::string waited = testing_support::wait_for_lines(job, metrics, 1, kStartLimit);
  ASSERT_EQ(waited, "") << read_text(output.string());

  std::vector<RankProcess> ranks = rank_processes(run_dir);
  ASSERT_EQ(ranks.size(), 2u) << "expected the two strand ranks of this job";
  pid_t victim = 0;
  for (const RankProcess& p : ranks)
    if (p.rank == 1) victim = p.pid;
  ASSERT_NE(victim, 0) << "no process with OMPI_COMM_WORLD_RANK=1";
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  const auto killed_at = Clock::now();

  const std::optional<int> exit_code = job.wait_for_exit(kEndLimit);
  const double seconds = std::chrono::duration<double>(Clock::now() - killed_at).count();
  const std::string text = read_text(output.string());
  ASSERT_TRUE(exit_code.has_value()) << "mpiexec still running " << kEndLimit.count()
                                     << " s after rank 1 was killed:\n" << text;
  EXPECT_NE(*exit_code, 0) << text;
  // Open MPI: "mpiexec noticed that process rank 1 with PID ... exited on signal 9 (Killed)";
  // MPICH (Hydra): "KILLED BY SIGNAL: 9 (Killed)".
  const bool names_failure =
      text.find("process rank 1") != std::string::npos && text.find("exited on signal 9") != std::string::npos;
  const bool hydra = text.find("KILLED BY SIGNAL: 9") != std::string::npos;
  EXPECT_TRUE(names_failure || hydra) << "no message naming the killed rank in:\n" << text;
  std::printf("[ info ] job ended %.1f s after rank 1 was killed (exit %d)\n", seconds, *exit_code);

  // No strand process of this job outlives mpiexec.
  for (const RankProcess& p : rank_processes(run_dir)) {
    ADD_FAILURE() << "rank " << p.rank << " (pid " << p.pid << ") still running";
  }
}

}  // namespace
}  // namespace strand
