// Stand-in for the NCCL backend when strand is built without CUDA or NCCL is not found.
#include "framework/core/error.h"
#include "parallel/comm/backends.h"

namespace strand::parallel {

bool built_with_nccl() { return false; }

std::unique_ptr<Group> make_nccl_group(Group&, int) {
  throw DeviceError("parallel: strand was built without NCCL (parallel.backend: nccl needs a CUDA build "
                    "with NCCL found); use parallel.backend: mpi");
}

}  // namespace strand::parallel
