// The `strand` program: registers the subcommands and runs the chosen one. Any error becomes one
// line "strand: error: ..." and a non-zero exit; under mpirun a failing rank ends every rank.
#include <CLI/CLI.hpp>

#include "framework/backend/cpu/blas_setup.h"
#include "launch/commands.h"
#include "parallel/comm/group.h"
#include "parallel/comm/launcher.h"

int main(int argc, char** argv) {
  strand::cpu::select_blas_kernels(argv);
  CLI::App app{"strand: training transformers on very long sequences"};
  app.require_subcommand(1);
  strand::launch::add_train_command(app);
  strand::launch::add_eval_command(app);
  strand::launch::add_data_command(app);
  strand::launch::add_inspect_command(app);
  strand::launch::add_export_command(app);
  strand::launch::add_config_command(app);
  strand::launch::add_bench_command(app);

  int parse_status = 0;
  const int status = strand::parallel::run_guarded(strand::parallel::world(), [&] {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      parse_status = app.exit(e);
    }
  });
  strand::parallel::finalize();
  return status != 0 ? status : parse_status;
}
