// A failure on one rank ends the whole job: runs abort_helper under mpiexec (a child process,
// bounded by `timeout`) and asserts the exit status and the error line. Built by mpi_tests.cmake.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

struct JobResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs abort_helper on `ranks` ranks. `timeout` ends a hung job after 30 s with status 124
// (and SIGKILL 5 s later), so a regression fails this test instead of hanging it.
JobResult run_job(int ranks, int failing_rank, const std::string& mode) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  const std::string command = std::string("timeout -k 5 30 ") + STRAND_MPIEXEC + " " + STRAND_MPIEXEC_NUMPROC_FLAG +
                              " " + std::to_string(ranks) + " " + STRAND_MPIEXEC_EXTRA_FLAGS + " " +
                              STRAND_ABORT_HELPER + " " + std::to_string(failing_rank) + " " + mode + " 2>&1";
  JobResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

void expect_job_ended_by(const JobResult& job, const std::string& line) {
  EXPECT_NE(job.exit_code, 0) << job.output;
  EXPECT_NE(job.exit_code, 124) << "the job hung until timeout ended it:\n" << job.output;
  EXPECT_NE(job.exit_code, 137) << "the job hung until timeout killed it:\n" << job.output;
  EXPECT_NE(job.output.find(line), std::string::npos) << "missing '" << line << "' in:\n" << job.output;
}

TEST(RunGuarded, JobWithoutFailureExitsCleanly) {
  const JobResult job = run_job(2, -1, "collective");
  EXPECT_EQ(job.exit_code, 0) << job.output;
  EXPECT_EQ(job.output.find("strand: error"), std::string::npos) << job.output;
}

TEST(RunGuarded, FailureEndsRanksWaitingInACollective) {
  expect_job_ended_by(run_job(2, 1, "collective"), "[rank 1] strand: error: deliberate failure on rank 1");
}

TEST(RunGuarded, FailureEndsRanksWaitingForAMessage) {
  expect_job_ended_by(run_job(4, 3, "recv"), "[rank 3] strand: error: deliberate failure on rank 3");
}

TEST(RunGuarded, FailureEndsRanksBusyOutsideMpi) {
  expect_job_ended_by(run_job(2, 0, "busy"), "[rank 0] strand: error: deliberate failure on rank 0");
}

TEST(RunGuarded, SingleRankReportsWithoutRankPrefix) {
  const JobResult job = run_job(1, 0, "collective");
  EXPECT_EQ(job.exit_code, 1) << job.output;
  EXPECT_NE(job.output.find("strand: error: deliberate failure on rank 0"), std::string::npos) << job.output;
  EXPECT_EQ(job.output.find("[rank 0]"), std::string::npos) << job.output;
}

}  // namespace
