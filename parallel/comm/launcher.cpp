// Launcher detection from the environment, and run_guarded (see launcher.h).
#include "parallel/comm/launcher.h"

#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <thread>

#include "framework/core/error.h"
#include "framework/core/text.h"

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

namespace {

std::string message_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

}  // namespace

void agree_on_errors(Group& group, const std::function<void()>& body) {
  std::exception_ptr error;
  try {
    body();
  } catch (...) {
    error = std::current_exception();
  }
  if (group.size() <= 1) {
    if (error) std::rethrow_exception(error);
    return;
  }
  std::array<int64_t, 1> first{error ? group.rank() : group.size()};
  group.all_reduce(std::span<int64_t>(first), ReduceOp::Min);
  if (first[0] == group.size()) return;
  const std::string message = error ? message_of(error) : std::string();
  if (first[0] == group.rank()) {
    std::fprintf(stderr, "%s\n", error_line(message, group.rank(), group.size()).c_str());
    std::fflush(stderr);
  }
  group.barrier();  // the line is out before any rank ends
  throw ErrorReported(message.empty() ? "reported by rank " + std::to_string(first[0]) : message);
}

int run_guarded(Group& group, const std::function<void()>& body, int exit_code) {
  std::string message;
  try {
    body();
    return 0;
  } catch (const ErrorReported&) {
    return exit_code;  // printed once already, and every rank is here
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "an exception that is not a std::exception";
  }
  const std::string line = error_line(message, group.rank(), group.size());
  if (group.size() > 1) {
    // Note [One error line per job]: rank 0's MPI_Abort may end this rank first.
    if (group.rank() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(kOtherRankGraceMs));
    group.abort(line, exit_code);  // prints the line, ends every rank
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
  return exit_code;
}

}  // namespace strand::parallel
