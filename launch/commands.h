// Subcommands of the `strand` program; each registers itself on the CLI11 app.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framework/config/config.h"

namespace strand::train {
class Trainer;
struct TrainerParts;
struct TrainerOptions;
}  // namespace strand::train

namespace strand::launch {

// A CLI11 check that the option's value is a number > 0 ("must be > 0, got -5").
inline CLI::Validator positive() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v)) return "expected a number, got '" + text + "'";
        return v > 0 ? std::string() : "must be > 0, got " + text;
      },
      "POSITIVE");
}

// `strand --version`: version, git commit, build options, BLAS kernels, MPI library, CUDA (cli.cpp).
std::string version_text();
// Throws a CLI::ParseError "unknown command 'trian'; did you mean 'train'?" when argv names a
// command that `app` (or the command it selects) does not have (cli.cpp).
void check_command_names(const CLI::App& app, int argc, const char* const* argv);
// The name of `names` closest to `typed` by edit distance, or "" when none is close.
std::string suggest_name(const std::string& typed, const std::vector<std::string>& names);

// `strand bench ...`: registers the benchmarks below under one `bench` subcommand.
void add_bench_command(CLI::App& app);
void add_bench_ops(CLI::App& bench);        // bench_ops.cpp
void add_bench_attention(CLI::App& bench);  // bench_attention.cpp

// `strand data prepare ...`: text to .bin token shards (data_command.cpp).
void add_data_command(CLI::App& app);

// `strand inspect CKPT`: config, step and parameter table of a checkpoint (inspect_command.cpp).
void add_inspect_command(CLI::App& app);

// `strand export CKPT --format safetensors --out DIR`: Hugging Face GPT-2 layout (export_command.cpp).
void add_export_command(CLI::App& app);

// `strand config get KEY CONFIG [--set k=v ...]`: one resolved value, for scripts (config_command.cpp).
void add_config_command(CLI::App& app);

// `strand train CONFIG [--set k=v ...]`: pretraining (train_command.cpp).
void add_train_command(CLI::App& app);
// A job that runs like train (mpirun, dp x sp, the same log, metrics and checkpoints) with a
// Trainer of its own: `check` refuses configs the job cannot run (a ConfigError, on every rank
// before anything is built), `make` builds its Trainer from the parts.
struct TrainingJob {
  std::function<void(const config::Config&)> check;
  std::function<std::unique_ptr<train::Trainer>(train::TrainerParts, const train::TrainerOptions&)> make;
};
// Registers `strand NAME CONFIG [--set k=v ...] [--peak-tflops X] [--quiet-config]` (train_command.cpp).
void add_training_command(CLI::App& app, const std::string& name, const std::string& help, TrainingJob job);
// `strand distill CONFIG [--set k=v ...]`: knowledge distillation from distill.teacher (distill_command.cpp).
void add_distill_command(CLI::App& app);
// The exit status a finished `strand train` asks for beyond errors: 141 after a closed stdout.
int train_exit_status();
// `strand prune CONFIG --checkpoint CKPT`: attention-head pruning with fine-tuning (prune_command.cpp).
void add_prune_command(CLI::App& app);
// `strand eval CONFIG --checkpoint CKPT [--data PATH]`: loss and accuracy, one JSON line (eval_command.cpp).
void add_eval_command(CLI::App& app);
// `strand generate CONFIG --checkpoint CKPT --prompt TEXT`: text from a GPT (generate_command.cpp).
void add_generate_command(CLI::App& app);
// `strand analyze CONFIG --checkpoint CKPT --text TEXT`: attention statistics and pictures (analyze_command.cpp).
void add_analyze_command(CLI::App& app);
// `strand bench train CONFIG [--steps N]`: tokens/s and peak memory, one JSON line (bench_train.cpp).
void add_bench_train(CLI::App& bench);
// `strand report RUN_DIR [--out FILE]`: one HTML page of a run (report_command.cpp).
void add_report_command(CLI::App& app);
// `strand bench generate CONFIG`: KV cache vs recomputing, and a long stream's memory (bench_generate.cpp).
void add_bench_generate(CLI::App& bench);

}  // namespace strand::launch
