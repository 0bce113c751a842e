// Subcommands of the `strand` program; each registers itself on the CLI11 app.
#pragma once
#include <CLI/CLI.hpp>

namespace strand::launch {

// `strand bench ops`, `strand bench attention`, ...
void add_bench_command(CLI::App& app);

}  // namespace strand::launch
