// `strand bench ...`: benchmarks that print one JSON line.
#include <cstdio>

#include "launch/commands.h"
#include "launch/bench_ops.h"

namespace strand::launch {

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks; each prints one JSON line");
  bench->require_subcommand(1);
  auto* ops = bench->add_subcommand("ops", "GEMM, elementwise, LayerNorm and cross-entropy rates");
  auto opts = std::make_shared<BenchOpsOptions>();
  ops->add_option("--threads", opts->threads, "OpenMP/OpenBLAS threads (0: the runtime default)");
  ops->add_option("--reps", opts->reps, "timed repetitions per measurement (best is reported)");
  ops->callback([opts] { std::puts(run_bench_ops(*opts).c_str()); });
}

}  // namespace strand::launch
