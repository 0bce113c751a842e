// `strand generate CONFIG --checkpoint CKPT (--prompt TEXT | --prompt-file FILE) [...]`: text from a
// trained GPT. The prompt is encoded with the run's tokenizer (data.tokenizer), run through the
// model once (prefill), and each new token, picked by greedy / temperature / top-k / top-p
// sampling, goes through the per-layer KV caches and is printed as soon as it is decoded.
// docs/generation.md.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/core/progress.h"
#include "framework/io/checkpoint.h"
#include "framework/ops/attention_contract.h"
#include "framework/train/components.h"
#include "framework/train/pruned_heads.h"
#include "framework/train/sample.h"
#include "launch/commands.h"
#include "models/gpt/decoder.h"
#include "parallel/comm/group.h"

namespace strand::launch {

namespace {

struct GenerateArgs {
  std::string config;
  std::string checkpoint;
  std::string prompt;
  std::string prompt_file;
  std::vector<std::string> overrides;
  std::string attention_precision = "fp32";  // or int8: inference attention with INT8 scores
  int64_t max_new_tokens = 256;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  int64_t seed = 0;
  bool no_cache = false;
};

std::string read_prompt(const GenerateArgs& args, bool prompt_given) {
  STRAND_CHECK(prompt_given != !args.prompt_file.empty(), ValueError,
               "generate: give the prompt with exactly one of --prompt TEXT and --prompt-file FILE");
  if (prompt_given) return args.prompt;
  std::ifstream in(args.prompt_file, std::ios::binary);
  STRAND_CHECK(in.good(), ValueError, "--prompt-file ", args.prompt_file, ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void run_generate(const GenerateArgs& args, bool prompt_given, parallel::Group& world) {
  // Generation is one sequence on one process; more ranks would each print the same text.
  STRAND_CHECK(world.size() == 1, ValueError, "generate runs in one process, not under mpirun with ", world.size(),
               " ranks (run it without mpirun)");
  STRAND_CHECK(args.max_new_tokens >= 1, ValueError, "--max-new-tokens ", args.max_new_tokens, " must be >= 1");
  STRAND_CHECK(args.temperature >= 0, ValueError, "--temperature ", args.temperature, " must be >= 0 (0 is greedy)");
  STRAND_CHECK(args.top_k >= 0, ValueError, "--top-k ", args.top_k, " must be >= 0 (0 keeps every token)");
  STRAND_CHECK(args.top_p > 0 && args.top_p <= 1, ValueError, "--top-p ", args.top_p, " must be in (0, 1]");
  STRAND_CHECK(args.seed >= 0, ValueError, "--seed ", args.seed, " must be >= 0");
  const std::string text = read_prompt(args, prompt_given);

  train::Config config = train::load_config(args.config, args.overrides);
  STRAND_CHECK(config.model.arch == config::Arch::Gpt, ValueError, args.config,
               ": key 'model.arch': generate needs a decoder (gpt), not ", config::name_of(config.model.arch));
  std::unique_ptr<data::Tokenizer> tokenizer;
  try {
    tokenizer = train::run_tokenizer(config);
  } catch (const config::ConfigError& e) {
    throw config::ConfigError(args.config + ": " + e.what());
  }
  const std::vector<int32_t> prompt = tokenizer->encode(text);
  STRAND_CHECK(!prompt.empty(), ValueError, "generate: the prompt is empty");
  const int64_t total = static_cast<int64_t>(prompt.size()) + args.max_new_tokens;
  STRAND_CHECK(config.model.pos != config::PosEncoding::Learned || total <= config.model.max_seq_len, ValueError,
               "generate: the prompt's ", prompt.size(), " tokens and --max-new-tokens ", args.max_new_tokens,
               " make ", total, " positions, past the learned position table of model.max_seq_len = ",
               config.model.max_seq_len, " (shorten the prompt or lower --max-new-tokens)");
  try {
    models::check_generation(config.model, total, !args.no_cache);
  } catch (const ValueError& e) {
    throw ValueError(args.config + ": key 'model.attention.pattern': " + e.what() + " (or pass --no-cache)");
  }

  const io::CheckpointData ckpt = io::read_checkpoint(args.checkpoint);
  train::adopt_pruned_heads(config, ckpt);  // a pruned checkpoint's heads per layer
  std::shared_ptr<models::Model> model = models::build_model(config);
  io::load_into(model->named_parameters(), ckpt);
  auto& gpt = dynamic_cast<models::Gpt&>(*model);

  models::GenerateOptions options;
  options.max_new_tokens = args.max_new_tokens;
  options.sampling = {args.temperature, args.top_k, args.top_p, static_cast<uint64_t>(args.seed)};
  options.use_cache = !args.no_cache;
  options.keep_tokens = false;  // printed as they come
  // A long prompt's prefill can take minutes on CPU: its progress, block by block (none for a
  // prompt done within a second).
  ProgressOptions shown;
  shown.label = "prefill";
  shown.unit = "blocks";
  shown.total = config.model.n_layer;
  shown.quiet_below_s = 1.0;
  Progress prefill(shown);
  options.on_prefill_layer = [&](int64_t done, int64_t) {
    prefill.update(done);
    if (done == shown.total) prefill.finish();
  };
  train::TextStream stream(*tokenizer);
  const auto start = std::chrono::steady_clock::now();
  // INT8 scores reach the prompt's prefill; each new token's single-query step reads the cache in float.
  const ops::Int8AttentionScope attention_precision(args.attention_precision == "int8");
  models::generate(gpt, prompt, options, [&](int32_t id) {
    const std::string piece = stream.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  const std::string rest = stream.finish() + "\n";
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fflush(stdout);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "generated %lld tokens after a %zu-token prompt in %.2f s (%.1f tokens/s)\n",
               static_cast<long long>(args.max_new_tokens), prompt.size(), seconds,
               static_cast<double>(args.max_new_tokens) / seconds);
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text from a GPT checkpoint (KV cache, sampling)");
  cmd->add_option("config", args->config, "YAML config of the run (model, data.tokenizer)")->required();
  cmd->add_option("--checkpoint", args->checkpoint, "Checkpoint file (.h5)")->required();
  CLI::Option* prompt = cmd->add_option("--prompt", args->prompt, "Prompt text");
  cmd->add_option("--prompt-file", args->prompt_file, "Read the prompt from a file");
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", args->temperature, "Softmax temperature; 0 is greedy")->capture_default_str();
  cmd->add_option("--top-k", args->top_k, "Sample among the k most likely tokens; 0 keeps all")->capture_default_str();
  cmd->add_option("--top-p", args->top_p, "Sample among the most likely tokens of total probability p (0, 1]")
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "Seed of the sampling draws")->capture_default_str();
  cmd->add_flag("--no-cache", args->no_cache, "Recompute the whole sequence for every token (slow; the reference)");
  cmd->add_option("--attention-precision", args->attention_precision,
                  "fp32, or int8: the prefill's attention scores in INT8 (docs/attention.md)")
      ->check(CLI::IsMember({"fp32", "int8"}))
      ->capture_default_str();
  cmd->add_option("--set", args->overrides, "Override a config key (repeatable)")->allow_extra_args(false)->take_all();
  // Errors propagate to main, whose guarded runner prints the one line.
  cmd->callback([args, prompt]() { run_generate(*args, prompt->count() > 0, parallel::world()); });
}

}  // namespace strand::launch
