// A tiny MPI program for the job-abort test: `abort_helper FAILING_RANK MODE` runs under
// run_guarded; rank FAILING_RANK throws while the others wait in MODE ("collective": a barrier,
// "recv": a receive nobody sends, "busy": a loop outside MPI). FAILING_RANK -1: nobody fails.
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "framework/core/error.h"
#include "parallel/comm/group.h"
#include "parallel/comm/launcher.h"

int main(int argc, char** argv) {
  using namespace strand;
  const int failing_rank = argc > 1 ? std::atoi(argv[1]) : 1;
  const std::string mode = argc > 2 ? argv[2] : "collective";
  parallel::Group& world = parallel::world();
  const int code = parallel::run_guarded(world, [&] {
    if (world.rank() == failing_rank) {
      // Let the other ranks reach their wait first, so that the test covers a rank that blocks.
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      throw ValueError("deliberate failure on rank " + std::to_string(failing_rank));
    }
    if (failing_rank < 0) {
      world.barrier();
      return;
    }
    if (mode == "recv") {
      Tensor in = Tensor::zeros({4});
      world.irecv(in, failing_rank, 99)->wait();
    } else if (mode == "busy") {
      for (;;) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    } else {
      world.barrier();  // the failing rank never arrives
    }
  });
  parallel::finalize();
  return code;
}
