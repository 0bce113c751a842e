// `strand config get KEY CONFIG [--set key=value ...]`: the value of one key as strand resolves
// it (file, overrides, derived defaults, rules), one line on stdout, for scripts such as
// launch/train.sh, which read the config through this and never parse the YAML themselves.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "launch/commands.h"

namespace strand::launch {

namespace {

struct GetArgs {
  std::string key;
  std::string config;
  std::vector<std::string> overrides;
};

void run_get(const GetArgs& args) {
  // The key first: a misspelt key is named even when the config has errors of its own.
  (void)config::value_of(config::Config{}, args.key);
  const config::Config config = config::load_config(args.config, args.overrides);
  std::printf("%s\n", config::value_of(config, args.key).c_str());
  std::fflush(stdout);
}

}  // namespace

void add_config_command(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("config", "Read a config as strand resolves it (docs/config.md)");
  cmd->require_subcommand(1);
  auto args = std::make_shared<GetArgs>();
  CLI::App* get = cmd->add_subcommand(
      "get", "Print the resolved value of one key, as the YAML emitter writes it (strings without quotes)");
  get->add_option("key", args->key, "Dotted key, such as parallel.dp")->required();
  get->add_option("config", args->config, "YAML config (docs/config.md)")->required();
  get->add_option("--set", args->overrides, "Override a key: --set train.lr=1e-3 (repeatable)")
      ->allow_extra_args(false)
      ->take_all();
  // Errors go to main's guarded runner: one line "strand: error: ...", non-zero exit.
  get->callback([args]() { run_get(*args); });
}

}  // namespace strand::launch
