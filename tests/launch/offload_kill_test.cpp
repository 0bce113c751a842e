// memory.offload: disk through the strand binary: a run killed with SIGKILL during offloaded
// steps leaves its spill file behind; the next start in the same run directory removes it (its
// flock is free), trains, and leaves no spill file when it ends.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "launch/job.h"
#include "launch/run_compare.h"
#include "support/temp_dir.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using testing_support::Job;
using testing_support::read_text;
using testing_support::strand_binary;

int spill_files(const fs::path& dir) {
  return static_cast<int>(strand::testing::files_starting_with(dir, "spill-").size());
}

TEST(OffloadKill, ASpillFileOfAKilledRunIsGoneAfterTheNextStart) {
  ASSERT_TRUE(fs::exists(strand_binary())) << strand_binary();
  const fs::path dir = fs::temp_directory_path() / ("strand_offload_kill_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string config = (dir / "offload.yaml").string();
  std::ofstream(config) << "model: {vocab_size: 32, n_layer: 2, n_head: 2, d_model: 32, max_seq_len: 64}\n"
                           "data: {format: synthetic, task: assoc_recall, seq_len: 64, batch_size: 2}\n"
                           "memory: {offload: disk, offload_min_bytes: 1024}\n"
                           "train: {steps: 1000000, lr: 0.001, log_every: 1}\n";
  const std::string run_dir = (dir / "run").string();
  const fs::path spill_dir = dir / "run" / "offload";
  {
    Job job("env OMP_NUM_THREADS=1 " + strand_binary() + " train " + config + " --quiet-config --set run.dir=" + run_dir,
            dir / "first.out");
    ASSERT_TRUE(job.started());
    ASSERT_EQ(testing_support::wait_for_lines(job, run_dir + "/metrics.jsonl", 2, std::chrono::seconds(120)), "")
        << read_text((dir / "first.out").string());
    EXPECT_EQ(spill_files(spill_dir), 1);
    ASSERT_EQ(kill(job.pid(), SIGKILL), 0);  // mid-run: steps follow each other with no pause
    ASSERT_EQ(job.wait_for_exit(std::chrono::seconds(30)), 128 + SIGKILL);
  }
  EXPECT_EQ(spill_files(spill_dir), 1) << "SIGKILL runs no cleanup: the file is left for the next start";

  Job again("env OMP_NUM_THREADS=1 " + strand_binary() + " train " + config +
                " --quiet-config --set train.steps=2 --set checkpoint.resume=none --set run.dir=" + run_dir,
            dir / "second.out");
  ASSERT_EQ(again.wait_for_exit(std::chrono::seconds(120)), 0) << read_text((dir / "second.out").string());
  const std::string out = read_text((dir / "second.out").string());
  EXPECT_NE(out.find("removed 1 spill file of an interrupted run"), std::string::npos) << out;
  EXPECT_EQ(spill_files(spill_dir), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace strand
