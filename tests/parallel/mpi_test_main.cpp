// main() of the multi-rank GoogleTest programs (*_mpitest.cpp): every rank runs every test, rank 0
// prints the usual report, other ranks print only their failures, and the exit code is non-zero
// on every rank when any rank failed, so that mpiexec and CTest see the failure.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>

#include "parallel/comm/group.h"

namespace {

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

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  strand::parallel::Group& world = strand::parallel::world();
  if (world.rank() != 0) {
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(world.rank()));
  }
  int64_t failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  world.all_reduce(std::span<int64_t>(&failed, 1), strand::parallel::ReduceOp::Max);
  if (world.rank() == 0 && failed) std::fprintf(stderr, "a test failed on at least one of %d ranks\n", world.size());
  strand::parallel::finalize();
  return failed ? 1 : 0;
}
