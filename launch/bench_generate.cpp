// `strand bench generate CONFIG [--prompt-tokens 1024] [--new-tokens 1024] [--recompute-every 8]
// [--stream-tokens 0] [--rss-every 1000] [--set ...]`: generation speed with the KV cache beside
// recomputing the whole sequence for every token, in the same run, and the resident memory of a
// long cached stream; one JSON line. The model is the config's, freshly initialised (speed and
// memory do not depend on the weights); the prompt is random tokens.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "framework/config/config.h"
#include "framework/core/json.h"
#include "framework/core/random.h"
#include "framework/train/components.h"
#include "launch/commands.h"
#include "models/gpt/decoder.h"
#include "parallel/comm/group.h"

namespace strand::launch {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchGenerateArgs {
  std::string config;
  std::vector<std::string> overrides;
  int64_t prompt_tokens = 1024;
  int64_t new_tokens = 1024;
  int64_t recompute_every = 8;  // time every k-th recomputing step (0: none)
  int64_t stream_tokens = 0;    // a second, long cached generation whose memory is sampled
  int64_t rss_every = 1000;
};

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// VmRSS of this process, bytes (from /proc/self/status).
int64_t resident_bytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

Tensor ids_of(std::span<const int32_t> ids) {
  return Tensor::from_vector(std::vector<double>(ids.begin(), ids.end()), {1, static_cast<int64_t>(ids.size())},
                             DType::I32);
}

std::string json_list(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

void run_bench_generate(const BenchGenerateArgs& args, parallel::Group& world) {
  STRAND_CHECK(world.size() == 1, ValueError, "bench generate runs in one process, not under mpirun with ",
               world.size(), " ranks");
  STRAND_CHECK(args.prompt_tokens >= 1 && args.new_tokens >= 1 && args.recompute_every >= 0 &&
                   args.stream_tokens >= 0 && args.rss_every >= 1,
               ValueError, "bench generate: --prompt-tokens and --new-tokens must be >= 1, --recompute-every and "
                           "--stream-tokens >= 0, --rss-every >= 1");
  const train::Config config = train::load_config(args.config, args.overrides);
  STRAND_CHECK(config.model.arch == config::Arch::Gpt, ValueError, args.config,
               ": key 'model.arch': bench generate needs a gpt, not ", config::name_of(config.model.arch));
  std::shared_ptr<models::Model> built = models::build_model(config);
  auto& model = dynamic_cast<models::Gpt&>(*built);
  model.train(false);
  const int64_t P = args.prompt_tokens, N = args.new_tokens, V = config.model.vocab_size;
  models::check_generation(config.model, P + N, true);
  std::vector<int32_t> prompt(static_cast<size_t>(P));
  for (int64_t i = 0; i < P; ++i)
    prompt[static_cast<size_t>(i)] = static_cast<int32_t>(random::philox4x32(1, 0, static_cast<uint64_t>(i))[0] % V);
  const models::SamplingOptions greedy{0.0, 0, 1.0, 0};

  // With the cache: prefill, then N - 1 one-token steps (N tokens picked).
  std::vector<int32_t> sequence = prompt;
  models::GptDecoder decoder(model, 1, P + N);
  auto start = Clock::now();
  Tensor logits = decoder.prefill(ids_of(prompt));
  const double prefill_s = seconds_since(start);
  start = Clock::now();
  for (int64_t i = 0; i < N; ++i) {
    const int32_t token = models::sample_token(logits.to_vector(), greedy, 0);
    sequence.push_back(token);
    if (i + 1 < N) logits = decoder.step(ids_of(std::span<const int32_t>(&sequence.back(), 1)));
  }
  const double cached_s = prefill_s + seconds_since(start);

  // Recomputing: step i runs the whole sequence of P + i tokens (the same tokens). Every k-th
  // step is timed and the sum scaled by k: the steps are evenly spaced over the growing lengths,
  // so this estimates the full N-step time without running all of it.
  double recompute_timed_s = 0;
  int64_t recompute_timed = 0;
  if (args.recompute_every > 0) {
    for (int64_t i = 0; i < N; i += args.recompute_every) {
      start = Clock::now();
      const Tensor l = models::recompute_last_logits(
          model, ids_of(std::span<const int32_t>(sequence.data(), static_cast<size_t>(P + i))));
      models::sample_token(l.to_vector(), greedy, 0);
      recompute_timed_s += seconds_since(start);
      ++recompute_timed;
    }
  }
  const double recompute_s =
      recompute_timed_s * static_cast<double>(N) / static_cast<double>(std::max<int64_t>(1, recompute_timed));

  // A long cached stream: resident memory every rss_every tokens.
  std::vector<int64_t> rss;
  double stream_s = 0;
  int64_t stream_cache = 0;
  if (args.stream_tokens > 0) {
    models::check_generation(config.model, P + args.stream_tokens, true);
    models::GenerateOptions options;
    options.max_new_tokens = args.stream_tokens;
    options.sampling = {1.0, 0, 1.0, 7};  // sampled, so the stream does not settle on one token
    options.keep_tokens = false;
    int64_t produced = 0;
    start = Clock::now();
    models::generate(model, prompt, options, [&](int32_t) {
      if (++produced % args.rss_every == 0) rss.push_back(resident_bytes());
    });
    stream_s = seconds_since(start);
    models::GptDecoder sized(model, 1, P + args.stream_tokens);
    stream_cache = sized.cache_bytes();
  }

  std::printf(
      "{\"bench\": \"generate\", \"config\": %s, \"params\": %lld, \"threads\": %d, \"prompt_tokens\": %lld, "
      "\"new_tokens\": %lld, \"prefill_s\": %s, \"cached_s\": %s, \"cached_tokens_per_s\": %s, "
      "\"cache_bytes\": %lld, \"recompute_every\": %lld, \"recompute_steps_timed\": %lld, "
      "\"recompute_timed_s\": %s, \"recompute_s\": %s, \"speedup\": %s, \"stream_tokens\": %lld, \"stream_s\": %s, "
      "\"stream_cache_bytes\": %lld, \"rss_every\": %lld, \"rss_bytes\": %s}\n",
      json_string(args.config).c_str(), static_cast<long long>(model.parameter_count()), omp_get_max_threads(),
      static_cast<long long>(P), static_cast<long long>(N), json_number(prefill_s).c_str(),
      json_number(cached_s).c_str(), json_number(static_cast<double>(N) / cached_s).c_str(),
      static_cast<long long>(decoder.cache_bytes()), static_cast<long long>(args.recompute_every),
      static_cast<long long>(recompute_timed), json_number(recompute_timed_s).c_str(),
      json_number(recompute_s).c_str(), json_number(recompute_timed > 0 ? recompute_s / cached_s : 0.0).c_str(),
      static_cast<long long>(args.stream_tokens), json_number(stream_s).c_str(), static_cast<long long>(stream_cache),
      static_cast<long long>(args.rss_every), json_list(rss).c_str());
  std::fflush(stdout);
}

}  // namespace

void add_bench_generate(CLI::App& bench) {
  auto args = std::make_shared<BenchGenerateArgs>();
  CLI::App* cmd = bench.add_subcommand(
      "generate", "Generation with the KV cache vs recomputing each step, and memory of a long stream; JSON line");
  cmd->add_option("config", args->config, "YAML config of a gpt")->required();
  cmd->add_option("--prompt-tokens", args->prompt_tokens, "Random prompt tokens")->capture_default_str();
  cmd->add_option("--new-tokens", args->new_tokens, "Tokens generated after the prompt")->capture_default_str();
  cmd->add_option("--recompute-every", args->recompute_every,
                  "Time every k-th recomputing step and scale by k (1: all; 0: skip)")
      ->capture_default_str();
  cmd->add_option("--stream-tokens", args->stream_tokens, "Then a cached stream of this many tokens (0: none)")
      ->capture_default_str();
  cmd->add_option("--rss-every", args->rss_every, "VmRSS sampled every this many stream tokens")->capture_default_str();
  cmd->add_option("--set", args->overrides, "Override a config key (repeatable)")->allow_extra_args(false)->take_all();
  cmd->callback([args]() { run_bench_generate(*args, parallel::world()); });
}

}  // namespace strand::launch
