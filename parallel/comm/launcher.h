// What the job launcher (mpirun/mpiexec, Slurm) tells a process about its place in the job, and
// run_guarded: the wrapper that turns an error on one rank into the end of the whole job.
#pragma once
#include <functional>
#include <string>

#include "framework/core/error.h"
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

// Note [One error line per job]
// An error every rank hits alike (a bad config, a missing file) must be printed once, not once
// per rank. Two ways get there:
// - agree_on_errors, for checks that make no collective call (config validation): every rank
//   runs them, then all agree (one all-reduce) on the lowest rank that failed; that rank prints
//   its line, and every rank throws ErrorReported, which run_guarded turns into a plain non-zero
//   exit (every rank is at the same point, so the job ends without MPI_Abort).
// - run_guarded, for any other error: rank 0 prints and ends the job at once; another rank first
//   waits kOtherRankGrace, so that when rank 0 failed too its MPI_Abort ends this rank before it
//   prints. An error that only that rank hit is still printed, that much later.
inline constexpr int kOtherRankGraceMs = 2000;

// An error already printed by one rank for the whole job (agree_on_errors).
struct ErrorReported : Error {
  using Error::Error;
};

// Runs body on every rank of group, then agrees on the outcome (collective; body makes no
// collective call). When body threw on some rank, the lowest such rank prints its error_line,
// and after a barrier every rank throws ErrorReported. With one rank, body's error propagates.
void agree_on_errors(Group& group, const std::function<void()>& body);

// Runs body on this rank. An exception is printed to stderr as error_line(...). With several
// ranks it then ends the whole job through group.abort (MPI_Abort): the other ranks would wait
// forever in their next collective otherwise, and only the failing rank needs to call it; a rank
// other than 0 waits kOtherRankGraceMs first (Note [One error line per job]). ErrorReported is
// not printed again and ends nothing: every rank has it. Returns 0 when body returns, and
// exit_code after an error on a one-rank group or an ErrorReported (so the program can return
// from main normally and finalize).
int run_guarded(Group& group, const std::function<void()>& body, int exit_code = 1);

}  // namespace strand::parallel
