// A deliberately failing multi-rank GoogleTest program for abort_job.cpp: the last rank fails an
// assertion while rank 0 passes and goes on to the next test's barrier, which the failing rank never
// reaches unless mpi_test_main.cpp ends the job when a test fails. The last rank fails, so a
// one-rank run fails too. Not registered with CTest.
#include <gtest/gtest.h>

#include "parallel/comm/group.h"

namespace strand::parallel {
namespace {

TEST(AbortOnFailure, LastRankFails) {
  EXPECT_NE(world().rank(), world().size() - 1) << "deliberate failure on the last rank";
}

TEST(AbortOnFailure, EveryRankWaitsInABarrier) { world().barrier(); }

}  // namespace
}  // namespace strand::parallel
