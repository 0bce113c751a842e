// A failure on one rank ends the whole job: runs abort_helper (run_guarded) and abort_gtest_helper
// (a failed GoogleTest assertion under mpi_test_main.cpp) under mpiexec, each a child process
// bounded by `timeout`, and asserts the exit status and the error line. Built by mpi_tests.cmake.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

struct JobResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `program args` on `ranks` ranks. `timeout` ends a hung job after 30 s with status 124
// (and SIGKILL 5 s later), so a regression fails this test instead of hanging it.
JobResult run_program(int ranks, const std::string& program, const std::string& args) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  const std::string command = std::string("timeout -k 5 30 ") + STRAND_MPIEXEC + " " + STRAND_MPIEXEC_NUMPROC_FLAG +
                              " " + std::to_string(ranks) + " " + STRAND_MPIEXEC_EXTRA_FLAGS + " " + program + " " +
                              args + " 2>&1";
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

// abort_helper on `ranks` ranks: rank `failing_rank` throws while the others wait in `mode`.
JobResult run_job(int ranks, int failing_rank, const std::string& mode) {
  return run_program(ranks, STRAND_ABORT_HELPER, std::to_string(failing_rank) + " " + mode);
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

// Rank 1 fails an EXPECT while rank 0 waits in the next test's barrier: mpi_test_main.cpp ends
// the job from rank 1 when its test ends, well before the 30 s bound.
TEST(MpiTestMain, FailedAssertionOnOneRankEndsTheJobInSeconds) {
  const auto start = std::chrono::steady_clock::now();
  const JobResult job = run_program(2, STRAND_ABORT_GTEST_HELPER, "");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  expect_job_ended_by(job, "[rank 1] AbortOnFailure.LastRankFails failed; ending the job");
  EXPECT_NE(job.output.find("deliberate failure on the last rank"), std::string::npos) << job.output;
  EXPECT_LT(seconds, 20.0) << job.output;
}

// With one rank nothing waits: the failure is reported and the program exits 1 after all tests.
TEST(MpiTestMain, OneRankReportsTheFailureWithoutAbort) {
  const JobResult job = run_program(1, STRAND_ABORT_GTEST_HELPER, "");
  EXPECT_EQ(job.exit_code, 1) << job.output;
  EXPECT_NE(job.output.find("deliberate failure on the last rank"), std::string::npos) << job.output;
  EXPECT_EQ(job.output.find("ending the job"), std::string::npos) << job.output;
}

}  // namespace
