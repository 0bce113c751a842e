// Stand-in for the MPI backend when strand is built with STRAND_MPI=OFF: single-process runs only.
#include "framework/core/error.h"
#include "parallel/comm/backends.h"

namespace strand::parallel {

bool built_with_mpi() { return false; }
std::string mpi_library_version() { return ""; }

std::unique_ptr<Group> internal::make_mpi_world(int expected_size, const char* size_source) {
  // mpirun -np 1 of a build without MPI is still a valid single-process run.
  if (expected_size == 1) return make_local_group();
  throw Error(strand::detail::concat("parallel::world: strand was built without MPI (STRAND_MPI=OFF), but the "
                             "launcher started this process as one of several ranks (",
                             size_source, " = ", expected_size, ")"));
}

void internal::finalize_mpi() {}

}  // namespace strand::parallel
