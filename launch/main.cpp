// The `strand` program: registers the subcommands and runs the chosen one. Any error becomes one
// line "strand: error: ..." and a non-zero exit; under mpirun a failing rank ends every rank.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "framework/backend/cpu/blas_setup.h"
#include "launch/commands.h"
#include "parallel/comm/group.h"
#include "parallel/comm/launcher.h"

int main(int argc, char** argv) {
  strand::cpu::select_blas_kernels(argv);
  CLI::App app{"strand: training transformers on very long sequences"};
  app.require_subcommand(1);
  // A command-line mistake is one line, like every other error.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "strand: error: " + std::string(e.what()) + " (see strand --help)\n";
  });
  strand::launch::add_train_command(app);
  strand::launch::add_eval_command(app);
  strand::launch::add_generate_command(app);
  strand::launch::add_data_command(app);
  strand::launch::add_inspect_command(app);
  strand::launch::add_export_command(app);
  strand::launch::add_config_command(app);
  strand::launch::add_bench_command(app);

  // The launcher's environment is read here, before the guarded runner exists: a bad one
  // (SLURM_NTASKS without srun, a non-integer rank) is the same one line.
  strand::parallel::Group* world = nullptr;
  try {
    world = &strand::parallel::world();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", strand::parallel::error_line(e.what(), 0, 1).c_str());
    return 1;
  }
  int parse_status = 0;
  const int status = strand::parallel::run_guarded(*world, [&] {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      parse_status = app.exit(e);
    }
  });
  strand::parallel::finalize();
  if (status != 0) return status;
  return parse_status != 0 ? parse_status : strand::launch::train_exit_status();
}
