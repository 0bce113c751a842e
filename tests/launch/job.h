// Jobs run in the background for tests that signal them: a shell command in its own process
// group with its output in a file (Job), and the strand processes of a run found through /proc
// (rank_processes), with their MPI rank.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "launch/run_compare.h"

namespace strand::testing_support {

using JobClock = std::chrono::steady_clock;

// /proc/PID/cmdline (or environ): the NUL-separated strings.
inline std::vector<std::string> proc_strings(const std::filesystem::path& file) {
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
  int rank = -1;  // -1: no launcher variable names it
};

// The strand processes of this job: argv[0] is the strand program and an argument names our
// unique run directory; the rank comes from the environment Open MPI (or PMI) gives each rank.
inline std::vector<RankProcess> rank_processes(const std::string& run_dir) {
  std::vector<RankProcess> found;
  for (const std::filesystem::directory_entry& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::vector<std::string> argv = proc_strings(entry.path() / "cmdline");
    if (argv.empty() || std::filesystem::path(argv[0]).filename() != "strand") continue;
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
  Job(const std::string& command, const std::filesystem::path& out) {
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
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !status_; }

  // The exit code (128 + signal when killed), or nullopt if still running after `limit`.
  std::optional<int> wait_for_exit(std::chrono::milliseconds limit) {
    const auto deadline = JobClock::now() + limit;
    while (!status_) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (JobClock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Waits until `file` has at least `lines` lines; "" then, else why not: the job ended first, or
// `limit` passed.
inline std::string wait_for_lines(Job& job, const std::string& file, size_t lines, std::chrono::seconds limit) {
  const auto deadline = JobClock::now() + limit;
  while (true) {
    const std::string text = read_text(file);
    if (static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) >= lines) return "";
    if (job.wait_for_exit(std::chrono::milliseconds(100)).has_value()) return "the job ended before " + file + " had " + std::to_string(lines) + " line(s)";
    if (JobClock::now() >= deadline) return file + " did not reach " + std::to_string(lines) + " line(s) in " + std::to_string(limit.count()) + " s";
  }
}

}  // namespace strand::testing_support
