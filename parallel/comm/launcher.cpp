// Launcher detection from the environment, and run_guarded (see launcher.h).
#include "parallel/comm/launcher.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>

#include "framework/core/error.h"
#include "framework/core/json.h"

namespace strand::parallel {
namespace {

// The integer value of variable `name`, or nothing when it is unset; `min` is its least valid value.
std::optional<int> read_int(const EnvReader& env, const char* name, int min) {
  const char* text = env(name);
  if (text == nullptr) return std::nullopt;
  int value = 0;
  const char* end = text + std::strlen(text);
  auto [ptr, ec] = std::from_chars(text, end, value);
  STRAND_CHECK(ec == std::errc() && ptr == end && ptr != text && value >= min, ValueError,
               "launcher: environment variable ", name, " is '", text, "', not an integer >= ", min);
  return value;
}

struct LauncherVariables {
  const char* size;        // announces the launcher; null when it gives no size
  const char* rank;
  const char* local_rank;  // null when the launcher gives none
};

// Preference order: an MPI launcher's own variables describe the MPI job exactly, while Slurm's
// also appear in batch scripts that start a single process.
constexpr LauncherVariables kOpenMpi{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"};
constexpr LauncherVariables kPmi{"PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"};
constexpr LauncherVariables kSlurm{"SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"};

std::optional<LaunchInfo> read_launcher(const EnvReader& env, const LauncherVariables& vars) {
  std::optional<int> size = read_int(env, vars.size, 1);
  if (!size) return std::nullopt;
  LaunchInfo info;
  info.size = *size;
  info.rank = read_int(env, vars.rank, 0).value_or(0);
  info.local_rank = read_int(env, vars.local_rank, 0).value_or(0);
  info.source = vars.size;
  STRAND_CHECK(info.rank < info.size, ValueError, "launcher: ", vars.rank, " = ", info.rank,
               " is not below ", vars.size, " = ", info.size);
  return info;
}

}  // namespace

LaunchInfo detect_launch(const EnvReader& env) {
  // Under mpirun/mpiexec the world is MPI even with one rank: the launcher expects MPI_Init.
  for (const LauncherVariables* vars : {&kOpenMpi, &kPmi}) {
    if (auto info = read_launcher(env, *vars)) {
      info->use_mpi = true;
      return *info;
    }
  }
  // PMIx launchers (srun --mpi=pmix, prterun) give the rank but not always the size.
  if (auto rank = read_int(env, "PMIX_RANK", 0)) {
    LaunchInfo info;
    info.rank = *rank;
    info.size = 0;  // unknown until MPI starts
    info.source = "PMIX_RANK";
    info.use_mpi = true;
    return info;
  }
  if (auto info = read_launcher(env, kSlurm)) {
    info->use_mpi = info->size > 1;
    return *info;
  }
  return LaunchInfo{};
}

LaunchInfo detect_launch() {
  return detect_launch([](const char* name) -> const char* { return std::getenv(name); });
}

std::string error_line(const std::string& message, int rank, int size) {
  // Bytes quoted from a file (a config value, a data header) stay one line of plain text.
  std::string line = "strand: error: " + printable(message);
  if (size > 1) line = "[rank " + std::to_string(rank) + "] " + line;
  return line;
}

int run_guarded(Group& group, const std::function<void()>& body, int exit_code) {
  std::string message;
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "an exception that is not a std::exception";
  }
  const std::string line = error_line(message, group.rank(), group.size());
  if (group.size() > 1) group.abort(line, exit_code);  // prints the line, ends every rank
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  return exit_code;
}

}  // namespace strand::parallel
