// `strand bench train CONFIG [--steps N] [--set ...]`: training throughput and memory of the
// config's model, as one JSON line (under mpirun: dp x sp ranks, every rank's peak memory).
// No checkpoints, metrics or resume; the first steps warm up. --fwd-bwd times one gradient pass
// (forward and backward, no optimizer) of a fresh process instead: the memory figure of docs/memory.md.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "framework/backend/cpu/gemm.h"
#include "framework/config/config.h"
#include "framework/core/allocator.h"
#include "framework/core/error.h"
#include "data/loader.h"
#include "framework/core/json.h"
#include "framework/core/progress.h"
#include "framework/train/components.h"
#include "framework/train/trainer.h"
#include "launch/commands.h"
#include "models/model.h"
#include "parallel/comm/group.h"

namespace strand::launch {

namespace {

struct BenchTrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  int64_t steps = 3;
  int64_t warmup = 1;
  bool fwd_bwd = false;  // one forward + backward, no optimizer step and no warm-up
  bool gemm_profile = false;  // time the GEMMs of the timed steps, per shape
};

// The "gemm_profile" member of the JSON line: the timed steps' GEMM time per step, its share of
// those steps and its rate, and each shape's (slowest first). Rates count 2mnk per product.
std::string gemm_profile_json(const std::vector<cpu::GemmShapeTime>& shapes, double timed_seconds, int64_t steps) {
  double seconds = 0, flops = 0;
  std::string list;
  for (const cpu::GemmShapeTime& s : shapes) {
    const double f = 2.0 * static_cast<double>(s.m * s.n * s.k * s.batch) * static_cast<double>(s.calls);
    seconds += s.seconds;
    flops += f;
    list += detail::concat(list.empty() ? "" : ", ", "{\"dtype\": \"", dtype_name(s.dtype), "\", \"a_trans\": ",
                           s.a_trans ? "true" : "false", ", \"b_trans\": ", s.b_trans ? "true" : "false",
                           ", \"m\": ", s.m, ", \"n\": ", s.n, ", \"k\": ", s.k, ", \"batch\": ", s.batch,
                           ", \"library\": \"", cpu::gemm_library_name(s.library), "\", \"calls_per_step\": ",
                           json_number(static_cast<double>(s.calls) / static_cast<double>(steps)),
                           ", \"ms_per_step\": ", json_number(s.seconds * 1e3 / static_cast<double>(steps)),
                           ", \"gflops\": ", json_number(s.seconds > 0 ? f / s.seconds / 1e9 : 0.0), "}");
  }
  return detail::concat("{\"ms_per_step\": ", json_number(seconds * 1e3 / static_cast<double>(steps)),
                        ", \"share_of_steps\": ", json_number(timed_seconds > 0 ? seconds / timed_seconds : 0.0),
                        ", \"gflops\": ", json_number(seconds > 0 ? flops / seconds / 1e9 : 0.0),
                        ", \"shapes\": [", list, "]}");
}

void run_bench_train(const BenchTrainArgs& args, parallel::Group& world) {
  STRAND_CHECK(args.steps >= 1 && args.warmup >= 0, ValueError, "bench train: --steps ", args.steps,
               " must be >= 1 and --warmup ", args.warmup, " >= 0");
  train::Config config = train::load_config(args.config, args.overrides);
  config.train.steps = args.warmup + args.steps;
  config.train.warmup_steps = std::min(config.train.warmup_steps, config.train.steps);
  config.train.eval_every = 0;
  config.checkpoint.resume = "none";

  std::vector<double> step_seconds;
  double loss = 0.0;
  train::TrainerOptions options;
  options.write_files = false;
  options.allow_resume = false;
  options.print = false;
  options.final_eval = false;
  // Steps of a long sequence take minutes: rank 0 shows how far the bench is.
  ProgressOptions shown;
  shown.label = "bench train";
  shown.unit = args.fwd_bwd ? "gradient passes" : "steps";
  shown.total = args.fwd_bwd ? 1 : config.train.steps;
  if (world.rank() != 0) shown.mode = ProgressMode::Off;
  Progress progress(shown);
  options.on_step = [&](const train::StepReport& r) {
    if (r.step > args.warmup) step_seconds.push_back(r.seconds);
    if (args.gemm_profile && r.step == args.warmup) cpu::gemm_profile_start();  // the timed steps follow
    loss = r.loss;
    progress.update(r.step);
  };
  // Before the first allocation; the ranks on this machine share its memory.
  train::check_memory_fits(config, true, train::machine_memory_bytes(), parallel::ranks_on_this_machine(world));
  std::shared_ptr<models::Model> model = models::build_model(config);
  const int64_t params = model->parameter_count();
  const int64_t model_bytes = memory::stats(Device::cpu()).current_bytes;
  train::Trainer trainer(train::build_trainer_parts(config, model, &world), options);
  // What the trainer's parts hold before any step (AdamW's moments): not part of a gradient pass.
  const int64_t optimizer_bytes = memory::stats(Device::cpu()).current_bytes - model_bytes;
  if (args.fwd_bwd) {
    // What activations cost: the peak of one gradient pass, before AdamW allocates its moments.
    const std::unique_ptr<data::Loader> rows =
        data::make_loader(train::data_spec_of(config, trainer.dp_rank(), config.parallel.dp), data::Split::train);
    if (args.gemm_profile) cpu::gemm_profile_start();
    const auto start = std::chrono::steady_clock::now();
    const train::GradientPass pass = trainer.forward_backward(*rows, config.train.grad_accum);
    step_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    loss = pass.loss_sum / static_cast<double>(std::max<int64_t>(pass.scored_tokens, 1));
  } else {
    if (args.gemm_profile && args.warmup == 0) cpu::gemm_profile_start();
    trainer.run();
  }
  progress.finish();
  const std::vector<cpu::GemmShapeTime> gemm_shapes =
      args.gemm_profile ? cpu::gemm_profile_stop() : std::vector<cpu::GemmShapeTime>{};
  double timed_seconds = 0;
  for (double s : step_seconds) timed_seconds += s;

  // The median step, as /work/shared/peers/torch_gpt.py reports it.
  std::sort(step_seconds.begin(), step_seconds.end());
  const double step = step_seconds[step_seconds.size() / 2];
  const int64_t tokens = train::tokens_per_step(config);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  // Every rank's peaks (sequence parallelism divides activations, not the weights): slot r of
  // each half is rank r's, summed into place.
  const int ranks = world.size();
  std::vector<int64_t> peaks(static_cast<size_t>(2 * ranks), 0);
  peaks[static_cast<size_t>(world.rank())] = memory::stats(Device::cpu()).peak_bytes;
  peaks[static_cast<size_t>(ranks + world.rank())] = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  world.all_reduce(std::span<int64_t>(peaks));
  const auto json_list = [&](int half) {
    std::string s = "[";
    for (int r = 0; r < ranks; ++r) s += (r ? ", " : "") + std::to_string(peaks[static_cast<size_t>(half * ranks + r)]);
    return s + "]";
  };
  const int64_t peak_max = *std::max_element(peaks.begin(), peaks.begin() + ranks);
  const int64_t rss_max = *std::max_element(peaks.begin() + ranks, peaks.end());
  if (world.rank() == 0) {
    std::printf(
        "{\"impl\": \"strand\", \"config\": %s, \"params\": %lld, \"batch\": %lld, \"seq\": %lld, \"grad_accum\": %lld, "
        "\"ranks\": %d, \"dp\": %lld, \"sp\": %lld, \"sp_mode\": \"%s\", \"layout\": \"%s\", \"threads\": %d, "
        "\"steps\": %lld, \"fwd_bwd\": %s, \"step_ms\": %s, \"tokens_per_s\": %s, \"loss\": %s, "
        "\"peak_mem_bytes\": %lld, \"max_rss_bytes\": %lld, \"peak_mem_bytes_per_rank\": %s, "
        "\"max_rss_bytes_per_rank\": %s, \"optimizer_state_bytes\": %lld%s}\n",
        json_string(args.config).c_str(), static_cast<long long>(params),
        static_cast<long long>(config.data.batch_size), static_cast<long long>(config.data.seq_len),
        static_cast<long long>(config.train.grad_accum), world.size(), static_cast<long long>(config.parallel.dp),
        static_cast<long long>(config.parallel.sp), train::name_of(config.parallel.sp_mode),
        train::name_of(train::resolved_layout(config)), omp_get_max_threads(),
        static_cast<long long>(args.fwd_bwd ? 1 : args.steps), args.fwd_bwd ? "true" : "false",
        json_number(step * 1e3).c_str(), json_number(static_cast<double>(tokens) / step).c_str(),
        json_number(loss).c_str(), static_cast<long long>(peak_max), static_cast<long long>(rss_max),
        json_list(0).c_str(), json_list(1).c_str(), static_cast<long long>(optimizer_bytes),
        args.gemm_profile ? (", \"gemm_profile\": " +
                             gemm_profile_json(gemm_shapes, timed_seconds, static_cast<int64_t>(step_seconds.size())))
                                .c_str()
                          : "");
    std::fflush(stdout);
  }
}

}  // namespace

void add_bench_train(CLI::App& bench) {
  auto args = std::make_shared<BenchTrainArgs>();
  CLI::App* cmd = bench.add_subcommand("train", "Training tokens/s, step time and peak memory of a config; JSON line");
  cmd->add_option("config", args->config, "YAML config")->required();
  cmd->add_option("--steps", args->steps, "Timed steps (the median is reported)")->capture_default_str();
  cmd->add_option("--warmup", args->warmup, "Untimed steps first")->capture_default_str();
  cmd->add_flag("--fwd-bwd", args->fwd_bwd, "Time one forward + backward (no optimizer step, no warm-up)");
  cmd->add_flag("--gemm-profile", args->gemm_profile,
                "Also report the timed steps' GEMM time per shape (the CPU products of rank 0; JSON member gemm_profile)");
  cmd->add_option("--set", args->overrides, "Override a config key (repeatable)")->allow_extra_args(false)->take_all();
  // Errors propagate to main, whose guarded runner prints the one line and ends every rank.
  cmd->callback([args]() { run_bench_train(*args, parallel::world()); });
}

}  // namespace strand::launch
