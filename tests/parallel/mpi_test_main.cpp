// main() of the multi-rank GoogleTest programs (*_mpitest.cpp): every rank runs every test, rank 0
// prints the usual report, other ranks print only their failures. A rank whose test failed ends
// the whole job (MPI_Abort) as soon as that test ends, so the other ranks do not wait in their
// next collective until CTest's timeout. Exit codes: 0 all passed, 1 a failure, 77 a case skipped
// (mpi_tests.cmake sets SKIP_RETURN_CODE 77, so CTest reports the entry as skipped, not passed).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "parallel/comm/group.h"

namespace {

// The exit code CTest reads as "skipped" (SKIP_RETURN_CODE in mpi_tests.cmake).
constexpr int kSkipExitCode = 77;

// Prints a failed assertion of a rank other than 0, which has no default printer.
class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.summary());
  }

 private:
  int rank_;
};

// Ends the job from the rank whose test failed. The other ranks may already wait in the next
// test's collective, which would never complete; with one rank there is nobody to wait, so the
// report runs to its end as in a single-process program.
class AbortJobOnFailure : public testing::EmptyTestEventListener {
 public:
  explicit AbortJobOnFailure(strand::parallel::Group& world) : world_(world) {}
  void OnTestEnd(const testing::TestInfo& info) override {
    if (world_.size() == 1 || !info.result()->Failed()) return;
    std::fflush(stdout);
    world_.abort("[rank " + std::to_string(world_.rank()) + "] " + info.test_suite_name() + "." + info.name() +
                 " failed; ending the job");
  }

 private:
  strand::parallel::Group& world_;
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  strand::parallel::Group& world = strand::parallel::world();
  testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
  if (world.rank() != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(world.rank()));
  }
  // Appended after the printers, so the failure is on screen before the job ends.
  listeners.Append(new AbortJobOnFailure(world));
  const int code = RUN_ALL_TESTS();
  const testing::UnitTest& unit = *testing::UnitTest::GetInstance();
  // [failed, skipped]: the maxima over the ranks, so every rank returns the same code.
  int64_t counts[2] = {code != 0 ? 1 : 0, unit.skipped_test_count()};
  world.all_reduce(std::span<int64_t>(counts, 2), strand::parallel::ReduceOp::Max);
  if (world.rank() == 0 && counts[0]) std::fprintf(stderr, "a test failed on at least one of %d ranks\n", world.size());
  if (world.rank() == 0 && !counts[0] && counts[1])
    std::fprintf(stderr, "strand-mpitest: %lld of %d cases skipped at %d ranks; reported as skipped\n",
                 static_cast<long long>(counts[1]), unit.test_to_run_count(), world.size());
  strand::parallel::finalize();
  if (counts[0]) return 1;
  return counts[1] ? kSkipExitCode : 0;
}
