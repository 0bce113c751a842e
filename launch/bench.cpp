// `strand bench ...`: benchmarks that print one JSON line each.
#include "launch/commands.h"

namespace strand::launch {

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks; each prints one JSON line");
  bench->require_subcommand(1);
  add_bench_ops(*bench);
  add_bench_attention(*bench);
  add_bench_train(*bench);
  add_bench_generate(*bench);
}

}  // namespace strand::launch
