// Entry points of the communicator backends. Each backend folder (mpi/, nccl/) defines them, or
// its stand-in (no_mpi/, no_nccl/) when CMake builds without it, so callers need no #ifdefs.
#pragma once
#include <memory>
#include <string>

#include "parallel/comm/group.h"

namespace strand::parallel {

bool built_with_mpi();
bool built_with_nccl();
// The MPI library's own version line (MPI_Get_library_version, first line), or "" without MPI.
std::string mpi_library_version();

// A single-process group (rank 0 of 1): collectives are identities, and point-to-point
// messages go to itself (an isend to rank 0 is received by a later irecv from rank 0).
std::unique_ptr<Group> make_local_group();

// An NCCL group over the ranks of `bootstrap` (same ranks, same order), on GPU `device` of this
// process; device -1 picks the launcher's local rank (one GPU per rank). Collective over
// bootstrap: rank 0 makes the NCCL unique id and broadcasts it through bootstrap.
// Throws "strand was built without NCCL" from the no_nccl stand-in.
std::unique_ptr<Group> make_nccl_group(Group& bootstrap, int device = -1);

namespace internal {

// MPI_COMM_WORLD as a Group, initialising MPI (MPI_THREAD_FUNNELED) unless the program did.
// expected_size > 0 is the rank count the launcher announced; a different MPI size is an error.
std::unique_ptr<Group> make_mpi_world(int expected_size, const char* size_source);
// MPI_Finalize when make_mpi_world initialised MPI; safe to call more than once.
void finalize_mpi();

}  // namespace internal

}  // namespace strand::parallel
