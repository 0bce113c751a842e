// What the job launcher (mpirun/mpiexec, Slurm) tells a process about its place in the job, and
// run_guarded: the wrapper that turns an error on one rank into the end of the whole job.
#pragma once
#include <functional>
#include <string>

#include "parallel/comm/group.h"

namespace strand::parallel {

struct LaunchInfo {
  int rank = 0;        // this process in the job
  int size = 1;        // processes in the job; 0 when the launcher does not say (PMIx)
  int local_rank = 0;  // this process among those on its machine (which GPU it drives)
  // The variable that announced the job ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK",
  // "SLURM_NTASKS"), empty when no launcher started this process.
  std::string source;
  // Whether the world group must be MPI: under mpirun/mpiexec (even with one rank), or a
  // launcher reporting more than one rank. A lone process needs no MPI at all.
  bool use_mpi = false;
};

// Reads an environment variable; null when unset. Tests pass a fake environment.
using EnvReader = std::function<const char*(const char*)>;

// Open MPI (OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK), PMI/Hydra (PMI_RANK/PMI_SIZE, MPI_LOCALRANKID),
// PMIx (PMIX_RANK) and Slurm (SLURM_PROCID/NTASKS/LOCALID), in that order of preference.
// Throws ValueError naming the variable when a value is not a valid count or rank.
LaunchInfo detect_launch(const EnvReader& env);
LaunchInfo detect_launch();  // the process environment

// The error line for `message` on rank `rank` of `size`: "strand: error: <message>" (the
// message in printable form: no control bytes or broken UTF-8 reach the terminal), prefixed
// "[rank r] " when size > 1 so that interleaved output says which rank failed.
std::string error_line(const std::string& message, int rank, int size);

// Runs body on this rank. An exception is printed to stderr as error_line(...). With several
// ranks it then ends the whole job through group.abort (MPI_Abort): the other ranks would wait
// forever in their next collective otherwise, and only the failing rank needs to call it.
// Returns 0 when body returns, and exit_code after a reported error on a one-rank group (so the
// program can return from main normally and finalize).
int run_guarded(Group& group, const std::function<void()>& body, int exit_code = 1);

}  // namespace strand::parallel
