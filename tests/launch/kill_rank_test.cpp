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

#include "launch/run_compare.h"

namespace strand {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing_support::read_text;
using testing_support::strand_binary;

constexpr std::chrono::seconds kStartLimit{120};  // a loaded machine may take a while to step
constexpr std::chrono::seconds kEndLimit{30};     // the contract: the job ends within 30 s

// /proc/PID/cmdline (or environ): the NUL-separated strings.
std::vector<std::string> proc_strings(const fs::path& file) {
  std::vector<std::string> out;
  const std::string text = read_text(file.string());
  size_t at = 0;
  while (at < text.size()) {
    const size_t end = text.find('\0', at);
    out.push_back(text.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}

struct RankProcess {
  pid_t pid = 0;
  int rank = -1;
};

// The strand processes of this job: argv[0] is the strand program and an argument names our
// unique run directory; the rank comes from the environment Open MPI (or PMI) gives each rank.
std::vector<RankProcess> rank_processes(const std::string& run_dir) {
  std::vector<RankProcess> found;
  for (const fs::directory_entry& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::vector<std::string> argv = proc_strings(entry.path() / "cmdline");
    if (argv.empty() || fs::path(argv[0]).filename() != "strand") continue;
    bool ours = false;
    for (const std::string& arg : argv) ours = ours || arg.find(run_dir) != std::string::npos;
    if (!ours) continue;
    RankProcess p;
    p.pid = static_cast<pid_t>(std::stol(name));
    for (const std::string& var : proc_strings(entry.path() / "environ")) {
      for (const char* key : {"OMPI_COMM_WORLD_RANK=", "PMI_RANK="}) {
        if (var.rfind(key, 0) == 0) p.rank = std::atoi(var.c_str() + std::strlen(key));
      }
    }
    found.push_back(p);
  }
  return found;
}

// mpiexec started in its own process group, output to files, reaped by wait_for_exit().
class Job {
 public:
  Job(const std::string& command, const fs::path& out) {
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      const int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      const int null_in = open("/dev/null", O_RDONLY);
      dup2(null_in, STDIN_FILENO);
      execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    if (pid_ > 0) setpgid(pid_, pid_);  // also here: the destructor may run before the child does
  }
  ~Job() {
    if (running()) {  // a failed assertion left it running: take the whole group down
      kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }
  bool running() const { return pid_ > 0 && !status_; }

  // The exit code (128 + signal when killed), or nullopt if still running after `limit`.
  std::optional<int> wait_for_exit(std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (!status_) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (Clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

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
  const auto start_deadline = Clock::now() + kStartLimit;
  const std::string metrics = run_dir + "/metrics.jsonl";
  while (!(fs::exists(metrics) && fs::file_size(metrics) > 0)) {
    ASSERT_FALSE(job.wait_for_exit(std::chrono::milliseconds(100)).has_value())
        << "the job ended before its first step:\n" << read_text(output.string());
    ASSERT_LT(Clock::now(), start_deadline) << "no step logged in " << kStartLimit.count() << " s:\n"
                                            << read_text(output.string());
  }

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
