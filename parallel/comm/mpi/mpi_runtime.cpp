// MPI start and end: initialisation of the world group, finalisation, and MPI error messages.
#include <atomic>
#include <cstdio>
#include <string>

#include "framework/core/error.h"
#include "parallel/comm/backends.h"
#include "parallel/comm/mpi/mpi_group.h"

namespace strand::parallel {
namespace {
// Whether strand called MPI_Init (then it also calls MPI_Finalize; a host program that
// initialised MPI itself keeps that duty).
std::atomic<bool> initialised_here{false};
}  // namespace

void mpi::check(int rc, const char* op) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) std::snprintf(text, sizeof text, "MPI error %d", rc);
  throw Error(strand::detail::concat(op, ": ", text));
}

bool built_with_mpi() { return true; }

std::string mpi_library_version() {
  // Callable before MPI_Init. Open MPI's text is several lines; the first names library and version.
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  if (MPI_Get_library_version(text, &length) != MPI_SUCCESS) return "unknown";
  std::string line(text, static_cast<size_t>(length));
  line = line.substr(0, line.find('\n'));
  while (!line.empty() && (line.back() == ',' || line.back() == ' ' || line.back() == '\0')) line.pop_back();
  return line;
}

std::unique_ptr<Group> internal::make_mpi_world(int expected_size, const char* size_source) {
  int initialized = 0;
  mpi::check(MPI_Initialized(&initialized), "parallel::world (MPI_Initialized)");
  if (!initialized) {
    int provided = 0;
    mpi::check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided),
               "parallel::world (MPI_Init_thread)");
    initialised_here = true;
    // Only the main thread calls MPI; OpenMP workers never do.
    STRAND_CHECK(provided >= MPI_THREAD_FUNNELED, Error, "parallel::world: MPI provides thread level ",
                 provided, ", strand needs MPI_THREAD_FUNNELED");
  }
  // Errors of calls on the world itself (MPI_Comm_dup) return instead of aborting the job.
  mpi::check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN),
             "parallel::world (MPI_Comm_set_errhandler)");
  // A duplicate keeps strand's messages apart from any other MPI user in the program.
  MPI_Comm comm = MPI_COMM_NULL;
  mpi::check(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "parallel::world (MPI_Comm_dup)");
  auto world = std::make_unique<mpi::MpiGroup>(comm);
  if (expected_size > 0 && world->size() != expected_size) {
    const int started = world->size();
    world.reset();
    finalize_mpi();
    throw Error(strand::detail::concat("parallel::world: the launcher announced ", expected_size, " ranks (",
                               size_source, ") but MPI started ", started,
                               "; launch with mpirun/srun using the MPI strand was built with"));
  }
  return world;
}

void internal::finalize_mpi() {
  if (!initialised_here.exchange(false)) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace strand::parallel
