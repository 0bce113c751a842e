// The `strand` program: parses the subcommand and reports any error as one line with a non-zero exit.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "launch/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"strand: training transformers on very long sequences"};
  app.require_subcommand(1);
  strand::launch::add_bench_command(app);
  strand::launch::add_data_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "strand: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
