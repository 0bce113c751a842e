// Subcommands of the `strand` program; each registers itself on the CLI11 app.
#pragma once
#include <CLI/CLI.hpp>

namespace strand::launch {

// `strand bench ...`: registers the benchmarks below under one `bench` subcommand.
void add_bench_command(CLI::App& app);
void add_bench_ops(CLI::App& bench);        // bench_ops.cpp
void add_bench_attention(CLI::App& bench);  // bench_attention.cpp

// `strand data prepare ...`: text to .bin token shards (data_command.cpp).
void add_data_command(CLI::App& app);

}  // namespace strand::launch
