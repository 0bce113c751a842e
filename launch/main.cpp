// The `strand` program: registers the subcommands and runs the chosen one. Any error becomes one
// line "strand: error: ..." and a non-zero exit; under mpirun a failing rank ends every rank.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <ostream>
#include <string>

#include "framework/backend/cpu/blas_setup.h"
#include "framework/core/text.h"
#include "launch/commands.h"
#include "parallel/comm/group.h"
#include "parallel/comm/launcher.h"

int main(int argc, char** argv) {
  strand::cpu::select_blas_kernels(argv);
  CLI::App app{"strand: training transformers on very long sequences"};
  app.require_subcommand(1);
  // A command-line mistake is one line, like every other error.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "strand: error: " + strand::printable(e.what()) + " (see strand --help)\n";
  });
  app.set_version_flag("--version", [] { return strand::launch::version_text(); },
                       "Print the version, git commit, build options, BLAS kernels, MPI library and CUDA devices");
  // Every --help shows each option's default (subcommands inherit this when added).
  app.option_defaults()->always_capture_default();
  strand::launch::add_train_command(app);
  strand::launch::add_eval_command(app);
  strand::launch::add_prune_command(app);
  strand::launch::add_generate_command(app);
  strand::launch::add_analyze_command(app);
  strand::launch::add_distill_command(app);
  strand::launch::add_data_command(app);
  strand::launch::add_inspect_command(app);
  strand::launch::add_export_command(app);
  strand::launch::add_config_command(app);
  strand::launch::add_report_command(app);
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
      strand::launch::check_command_names(app, argc, argv);
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      // Every rank parses the same arguments: rank 0 alone prints help, version or the error.
      std::ostream quiet(nullptr);
      parse_status = world->rank() == 0 ? app.exit(e) : app.exit(e, quiet, quiet);
    }
  });
  strand::parallel::finalize();
  if (status != 0) return status;
  return parse_status != 0 ? parse_status : strand::launch::train_exit_status();
}
