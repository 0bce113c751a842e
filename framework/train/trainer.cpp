// The training loop of `strand train`: one step, evaluation, logging and checkpoint cadence.
//
// Note [Exact resume]
// A run stopped at step s and resumed gives, bit for bit, the losses and weights of a run that
// never stopped, because everything a step reads is either in the checkpoint or a pure function
// of (config, step): parameters and AdamW moments are stored as exact fp32 bits; AdamW's step
// count and the learning rate (a function of the step) follow; the loader's batches are a pure
// function of the loader step (data/loader.h), which is restored; every random stream (init,
// dropout, synthetic rows) is Philox keyed by run.seed and indexed by step; and every kernel is
// deterministic for a fixed thread count (so resume with the same OMP_NUM_THREADS and ranks).
//
// Note [Loss normalisation]
// The loss of a step is sum(token losses) / N with N the scored tokens of all micro-batches on
// all ranks (dp x sp: each sp rank scores the tokens of its shard), so the logged loss and the
// gradient are those of one process with the whole batch. The masked objective of the encoder
// decides which tokens it scores inside forward(), so N is known only after every micro-batch
// ran: each micro-batch back-propagates its summed loss, the gradients are summed over ranks
// (in buckets that start during the last micro-batch's backward, parallel/grad_sync.h), and
// then scaled by 1/N once.
#include "framework/train/trainer.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "framework/core/allocator.h"
#include "framework/io/checkpoint_dir.h"
#include "framework/io/run_dir.h"
#include "framework/nn/autocast.h"
#include "framework/train/offload.h"
#include "framework/optim/clip.h"
#include "framework/train/precision.h"
#include "framework/train/sample.h"
#include "framework/train/signals.h"
#include "models/model.h"
#include "parallel/comm/group.h"
#include "parallel/grad_sync.h"
#include "parallel/watchdog.h"

namespace strand::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int64_t tokens_per_step(const Config& config) {
  return config.data.batch_size * config.data.seq_len * config.train.grad_accum * config.parallel.dp;
}

void LogInterval::add(const StepReport& report) {
  seconds += report.seconds;
  tokens += report.tokens;
  ++steps;
}

Trainer::Trainer(TrainerParts parts, TrainerOptions options)
    : watchdog_(std::move(parts.watchdog)),
      config_(std::move(parts.config)),
      model_(std::move(parts.model)),
      ranks_(std::move(parts.ranks)),
      grad_sync_(std::move(parts.grad_sync)),
      optimizer_(std::move(parts.optimizer)),
      schedule_(parts.schedule),
      data_spec_(std::move(parts.data)),
      train_loader_(std::move(parts.train_loader)),
      options_(std::move(options)) {
  STRAND_CHECK(model_ != nullptr && grad_sync_ != nullptr && optimizer_ != nullptr && train_loader_ != nullptr,
               ValueError, "Trainer: a part is missing (build them with build_trainer_parts)");
  // Parameters in the model's order; the optimizer, clipping and gradient sums use this order.
  for (const auto& named : model_->named_parameters()) params_.push_back(named.second);
  state_.seed = static_cast<uint64_t>(config_.run.seed);
  state_.loader = train_loader_->position();
  state_.loss_scale = initial_loss_scale(config_);  // Note [Loss scaling]; a resume restores it
  log_ = options_.log != nullptr ? options_.log : std::make_shared<RunLog>(options_.print ? options_.out : nullptr);

  if (options_.allow_resume) {
    if (auto path = io::resolve_resume(config_.checkpoint.resume, config_.checkpoint.dir)) restore(*path);
  }
}

Trainer::~Trainer() = default;

Trainer make_trainer(Config config, std::shared_ptr<models::Model> model, parallel::Group* group,
                     TrainerOptions options) {
  return Trainer(build_trainer_parts(std::move(config), std::move(model), group), std::move(options));
}

void Trainer::print_line(const std::string& line) const {
  if (ranks_.rank != 0) return;
  log_->line(line);
}

void Trainer::restore(const std::string& path) {
  const io::CheckpointData data = io::read_checkpoint(path);
  LoopState state = restore_checkpoint(data, *model_, *optimizer_);
  train_loader_->restore(state.loader);
  state.loader = train_loader_->position();  // this run's geometry from here on
  if (state.seed != static_cast<uint64_t>(config_.run.seed)) {
    print_line(detail::concat("warning: ", path, " was trained with run.seed ", state.seed, ", this run has ",
                              config_.run.seed, "; random streams follow the new seed"));
    state.seed = static_cast<uint64_t>(config_.run.seed);
  }
  report_config_changes(path, data.config_yaml);
  state_ = state;
  resumed_from_ = path;
}

void Trainer::report_config_changes(const std::string& path, const std::string& saved_yaml) const {
  Config saved;
  try {
    saved = parse_config(saved_yaml, path);
  } catch (const ConfigError&) {
    return;  // a config this build no longer accepts: nothing to compare against
  }
  // Every key whose value differs, old -> new; run.seed and the data's identity have their own
  // warnings below, and checkpoint.resume says how the run was started, not what it trains.
  std::vector<std::string> changed;
  for (const std::string& key : config_keys()) {
    if (key == "checkpoint.resume" || key == "run.seed" || key == "data.format" || key == "data.task" ||
        key == "data.train")
      continue;
    const std::string was = value_of(saved, key), now = value_of(config_, key);
    if (was != now) changed.push_back(detail::concat("  ", key, ": ", was, " \u2192 ", now));
  }
  if (!changed.empty()) {
    print_line(detail::concat("config changed since ", path, " (old \u2192 new):"));
    for (const std::string& line : changed) print_line(line);
  }
  // The loader resumes at its saved position whatever the data: a resume on other data is
  // allowed (fine-tuning does it), but never silent.
  const DataConfig &was = saved.data, &now = config_.data;
  std::string what;
  if (was.format != now.format) what = detail::concat("data.format ", name_of(was.format), ", this run has ", name_of(now.format));
  else if (now.format == DataFormat::Synthetic && was.task != now.task)
    what = detail::concat("data.task ", name_of(was.task), ", this run has ", name_of(now.task));
  else if (now.format != DataFormat::Synthetic && was.train != now.train)
    what = detail::concat("data.train ", was.train, ", this run has ", now.train);
  if (!what.empty())
    print_line(detail::concat("warning: ", path, " was trained on ", what,
                              "; training continues on this run's data from the saved position"));
}

models::LossOutput Trainer::micro_batch_loss(const data::Batch& batch) {
  return model_->forward(batch, sharder().sequence_shard());
}

DiskOffload* Trainer::activation_offload() {
  if (config_.memory.offload != config::Offload::Disk) return nullptr;
  if (!offload_) {
    const std::string& dir = config_.memory.offload_dir;
    if (const int removed = remove_stale_spill_files(dir); removed > 0)
      print_line(detail::concat("removed ", removed, " spill file", removed == 1 ? "" : "s",
                                " of an interrupted run from ", dir));
    offload_ = std::make_unique<DiskOffload>(
        OffloadOptions{dir, ranks_.rank, config_.memory.offload_min_bytes});
    std::vector<const void*> params;  // parameters stay in memory: they live for the whole run
    for (const Tensor& p : params_) params.push_back(p.storage().get());
    offload_->keep_storages(std::move(params));
  }
  return offload_.get();
}

GradientPass Trainer::forward_backward(data::Loader& loader, int64_t micro_batches) {
  model_->train(true);
  model_->zero_grad();
  const nn::AutocastGuard autocast(compute_dtype(config_));  // Note [Mixed precision] (nn/autocast.h)
  for (const Tensor& p : params_) {
    STRAND_CHECK(p.dtype() == DType::F32, DTypeError, "trainer: parameter ", describe(p),
                 " is not float32 (only fp32 training is available)");
  }

  // Note [Loss normalisation]: summed losses back-propagate; the 1/N scale comes after.
  double loss_sum = 0.0;
  int64_t scored = 0;
  begin_gradient_pass();
  for (int64_t micro = 0; micro < micro_batches; ++micro) {
    // Each sp rank keeps its shard of the rows only (the whole rows are freed here).
    const data::Batch batch = sharder().shard(loader.next());
    std::optional<autograd::SavedTensorHooksGuard> offloading;  // framework/train/offload.h
    if (DiskOffload* offload = activation_offload()) offloading.emplace(offload->hooks());
    models::LossOutput out = micro_batch_loss(batch);
    offloading.reset();
    loss_sum += out.loss_sum.item();
    scored += out.tokens;
    // Note [Loss normalisation]: only the last micro-batch's backward starts the bucketed
    // all-reduces (parallel/grad_sync.h); earlier ones accumulate locally.
    // With memory.offload_gradients the gradients are on disk until the backward ends, so the
    // all-reduce waits for finish() (no overlap with the backward).
    if (micro + 1 == micro_batches && !config_.memory.offload_gradients) grad_sync_->arm();
    const GradientSpill spill(config_.memory.offload_gradients ? offload_.get() : nullptr, params_);
    // Note [Loss scaling]: the scaled loss back-propagates; finish() divides the scale out.
    const double scale = backward_scale(config_, state_.loss_scale);
    if (scale == 1.0) out.loss_sum.backward();
    else out.loss_sum.backward(Tensor::full(out.loss_sum.shape(), scale, out.loss_sum.dtype(), out.loss_sum.device()));
    spill.restore();
    if (offload_) offload_->reset();
  }
  // Over every rank: dp replicas and the sp shards of each row.
  std::array<double, 1> sums{loss_sum};
  std::array<int64_t, 1> counts{scored};
  if (ranks_.group != nullptr && ranks_.world > 1) {
    ranks_.group->all_reduce(std::span<double>(sums));
    ranks_.group->all_reduce(std::span<int64_t>(counts));
  }
  GradientPass pass;
  pass.loss_sum = sums[0];
  pass.scored_tokens = counts[0];
  STRAND_CHECK(pass.scored_tokens > 0, ValueError, "trainer: step ", state_.step,
               " scored no tokens (every target is ignored); check data.* and the model objective");
  grad_sync_->finish(1.0 / (static_cast<double>(pass.scored_tokens) * backward_scale(config_, state_.loss_scale)));
  end_gradient_pass(pass);
  return pass;
}

StepReport Trainer::train_step() {
  const auto start = Clock::now();
  const GradientPass pass = forward_backward(*train_loader_, config_.train.grad_accum);

  StepReport report;
  report.loss = pass.loss_sum / static_cast<double>(pass.scored_tokens);
  report.grad_norm = config_.train.grad_clip > 0 ? optim::clip_grad_norm(params_, config_.train.grad_clip)
                                                 : optim::grad_norm(params_);
  report.lr = schedule_.lr_at(state_.step);
  const bool finite = std::isfinite(report.grad_norm);
  if (finite) {
    optimizer_->set_lr(report.lr);
    optimizer_->step();
  } else {
    // Skip the update rather than write NaN into the weights (fp16: the scaler backs off).
    report.skipped = true;
    ++state_.skipped_steps;
  }
  const ScaleUpdate scale = update_loss_scale(config_, state_, finite);
  if (!finite)
    print_line(detail::concat("warning: step ", state_.step + 1, ": gradient norm is ", report.grad_norm,
                              "; optimizer step skipped", scale.note));
  model_->zero_grad();
  // Every rank sees the same norm (the gradients are summed first), so all stop together. An
  // fp16 overflow the scaler absorbs neither counts nor breaks the run of skips (Note [Loss scaling]).
  if (finite) skipped_in_a_row_ = 0;
  else if (scale.counts_as_divergence) ++skipped_in_a_row_;
  if (skipped_in_a_row_ >= config_.train.max_skipped_steps)
    throw DivergedError(detail::concat("train.max_skipped_steps: ", skipped_in_a_row_,
                                       " optimizer steps in a row were skipped for non-finite gradients (steps ",
                                       state_.step + 2 - skipped_in_a_row_, " to ", state_.step + 1,
                                       "); the run stops. The newest checkpoint holds finite weights: resume from it "
                                       "with a lower train.lr, more train.warmup_steps or train.grad_clip"));

  ++state_.step;
  report.step = state_.step;
  report.tokens = tokens_per_step(config_);
  report.scored_tokens = pass.scored_tokens;
  state_.tokens_seen += report.tokens;
  state_.loader = train_loader_->position();
  report.seconds = seconds_since(start);
  return report;
}

EvalResult Trainer::evaluate_val() {
  if (!val_loader_) val_loader_ = data::make_loader(data_spec_, data::Split::val);
  const nn::AutocastGuard autocast(compute_dtype(config_));
  // A stop signal ends a long evaluation between batches (every rank agrees on it).
  return evaluate(*model_, *val_loader_, config_.train.eval_batches, ranks_.group, sharder(),
                  [this] { return stop_requested_anywhere(); });
}

uint64_t Trainer::parameter_fingerprint() const {
  // A word-wise multiply-xor hash of every parameter's bits: cheap next to a checkpoint write.
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (const Tensor& param : params_) {
    const Tensor p = param.device().is_cpu() ? param : param.copy_as(param.dtype(), Device::cpu());  // run.device
    const auto* words = static_cast<const uint32_t*>(p.raw_data());
    const int64_t n = p.nbytes() / sizeof(uint32_t);
    for (int64_t i = 0; i < n; ++i) h = (h ^ words[i]) * 0x100000001B3ull;
  }
  return h;
}

std::string Trainer::save_checkpoint() {
  // The directory keeps the newest checkpoint.keep files (0: all).
  const io::CheckpointDir dir(config_.checkpoint.dir, config_.checkpoint.keep);
  if (ranks_.group != nullptr && ranks_.world > 1) {
    // Rank 0 writes for everyone, which is right only while every rank (each replica and each
    // sp rank of it) holds the same bits (the gradients summed over all of them and a
    // deterministic optimizer keep it so); check it, cheaply.
    const uint64_t mine = parameter_fingerprint();
    std::array<int64_t, 2> range{static_cast<int64_t>(mine), static_cast<int64_t>(mine)};
    ranks_.group->all_reduce(std::span<int64_t>(range.data(), 1), parallel::ReduceOp::Min);
    ranks_.group->all_reduce(std::span<int64_t>(range.data() + 1, 1), parallel::ReduceOp::Max);
    STRAND_CHECK(range[0] == range[1], ValueError, "trainer: the ranks hold different weights at step ",
                 state_.step, " (a non-deterministic reduction?); refusing to save a checkpoint of one of them");
  }
  if (ranks_.rank != 0) return dir.path_for_step(state_.step);
  const auto start = Clock::now();
  io::CheckpointData data = make_checkpoint(config_, *model_, *optimizer_, schedule_, state_);
  add_checkpoint_groups(data);
  // Never a checkpoint of a diverged model: with keep-N it would push out the good ones.
  for (const auto* group : {&data.model, &data.optimizer}) {
    for (const auto& [name, t] : group->tensors) {
      if (!std::isfinite(optim::sum_of_squares(t)))
        throw DivergedError(detail::concat("step ", state_.step, ": ", group == &data.model ? "parameter" : "optimizer state",
                                           " '", name, "' holds non-finite values; no checkpoint written (the newest "
                                           "one in ", dir.dir(), " holds finite weights)"));
    }
  }
  const std::string path = dir.save(state_.step, data);
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(path, ec);
  char what[64];
  std::snprintf(what, sizeof what, " (%.1f MB, %.2f s)", ec ? 0.0 : static_cast<double>(bytes) / 1e6, seconds_since(start));
  print_line("checkpoint " + path + what);
  return path;
}

bool Trainer::stop_requested_anywhere() const {
  std::array<int64_t, 1> flag{stop_signal()};
  // Ranks must agree, or one would wait in the next all-reduce for a rank that stopped.
  if (ranks_.group != nullptr && ranks_.world > 1) {
    ranks_.group->all_reduce(std::span<int64_t>(flag), parallel::ReduceOp::Max);
  }
  if (flag[0] != 0 && stop_signal() == 0) request_stop(static_cast<int>(flag[0]));
  return flag[0] != 0;
}

void Trainer::log_run_start() const {
  const int world = ranks_.world;
  print_line(detail::concat("model: ", name_of(config_.model.arch), ", ", model_->parameter_count(), " parameters, ",
                            name_of(config_.model.attention.pattern), " attention; data: ",
                            train_loader_->describe(), "; ", tokens_per_step(config_), " tokens per step on ",
                            world, world == 1 ? " rank" : " ranks",
                            config_.parallel.sp > 1
                                ? detail::concat(" (dp ", config_.parallel.dp, " x sp ", config_.parallel.sp, ", ",
                                                 name_of(config_.parallel.sp_mode), " attention, ",
                                                 name_of(resolved_layout(config_)), " layout)")
                                : std::string()));
  if (!resumed_from_.empty()) {
    print_line(detail::concat("resumed from ", resumed_from_, " at step ", state_.step));
  }
}

std::optional<EvalResult> Trainer::evaluate_if_due() {
  const TrainConfig& tc = config_.train;
  const int64_t step = state_.step;
  if (!has_val_split(config_)) return std::nullopt;
  const bool periodic = tc.eval_every > 0 && step % tc.eval_every == 0;
  const bool final = step == tc.steps && options_.final_eval;
  if (!periodic && !final) return std::nullopt;
  EvalResult result = evaluate_val();
  if (result.interrupted) return std::nullopt;
  return result;
}

bool Trainer::log_due(int64_t step, bool evaluated) const {
  return step % config_.train.log_every == 0 || step == config_.train.steps || evaluated;
}

StepMetrics Trainer::step_metrics(const StepReport& report, const LogInterval& interval,
                                  const std::optional<EvalResult>& eval) const {
  StepMetrics m;
  m.step = report.step;
  m.total_steps = config_.train.steps;
  m.loss = report.loss;
  m.lr = report.lr;
  m.grad_norm = report.grad_norm;
  m.tokens_per_s = interval.seconds > 0 ? static_cast<double>(interval.tokens) / interval.seconds : 0.0;
  if (options_.peak_flops > 0) {
    const double model_flops = flops_per_token(config_, model_->parameter_count());
    m.mfu = model_flops * m.tokens_per_s / (options_.peak_flops * static_cast<double>(ranks_.world));
  }
  m.peak_mem_bytes = memory::stats(Device::cpu()).peak_bytes;
  m.loss_scale = state_.loss_scale;
  m.skipped = state_.skipped_steps;
  if (const int64_t per_epoch = train_loader_->steps_per_epoch(); per_epoch > 0)
    m.epoch = (train_loader_->step() - 1) / per_epoch;  // the epoch of the step's last batch
  m.step_ms = interval.steps > 0 ? 1e3 * interval.seconds / static_cast<double>(interval.steps) : 0.0;
  m.tokens_seen = state_.tokens_seen;
  m.elapsed_s = seconds_since(run_started_);
  m.timestamp = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  // The mean wall time per step of this run so far (evaluations and saves included), which
  // a slow or fast last interval does not swing.
  const int64_t done = report.step - run_start_step_;
  m.eta_s = done > 0 ? m.elapsed_s / static_cast<double>(done) * static_cast<double>(config_.train.steps - report.step)
                     : 0.0;
  if (eval) {
    m.val_loss = eval->loss();
    if (eval->score) {
      m.val_accuracy = eval->score->token_accuracy();
      m.val_row_accuracy = eval->score->row_accuracy();
    }
  }
  return m;
}

void Trainer::log_step(const StepReport& report, const std::optional<EvalResult>& eval, LogInterval& interval,
                       MetricsLog& metrics) const {
  const StepMetrics m = step_metrics(report, interval, eval);
  metrics.write(m);
  print_line(metrics_line(m));
  interval = {};
}

bool Trainer::checkpoint_due(int64_t step) const {
  return options_.write_files && config_.checkpoint.every > 0 && step % config_.checkpoint.every == 0;
}

void Trainer::finish_run(TrainResult& result, bool saved_this_step) {
  // A run that stepped ends on a checkpoint, whatever checkpoint.every says.
  if (options_.write_files && !saved_this_step && state_.step > result.start_step) {
    result.checkpoint = save_checkpoint();
  }
  if (result.stop_signal != 0) {
    const std::string line = detail::concat("stopped by ", signal_name(result.stop_signal), " after step ", state_.step,
                                            result.checkpoint.empty() ? "" : "; checkpoint " + result.checkpoint,
                                            "; run the same command to resume");
    // After a hangup or a broken pipe stdout is likely gone: the line goes to stderr (and
    // train.log).
    const bool stdout_gone = result.stop_signal == SIGHUP || result.stop_signal == SIGPIPE || log_->console_gone();
    if (stdout_gone && ranks_.rank == 0 && options_.print) log_->error_line(line);
    else print_line(line);
  }
  // The file is complete before any rank returns.
  if (ranks_.group != nullptr && ranks_.world > 1) ranks_.group->barrier();
  result.end_step = state_.step;
}

std::vector<io::DirectoryLock> Trainer::hold_run_dirs() const {
  // Note [One run per directory]: rank 0 writes every file of the run, so it alone locks. The
  // lock comes first: a second run in the same directories stops here, before it touches a
  // file. Temp files there are then of writers that were killed, never of a live one.
  std::vector<io::DirectoryLock> locks;
  locks.emplace_back(config_.run.dir, "run.dir");
  const auto same = [](const std::string& a, const std::string& b) {
    return std::filesystem::weakly_canonical(a) == std::filesystem::weakly_canonical(b);
  };
  const std::string& ckpt = config_.checkpoint.dir;
  if (!same(ckpt, config_.run.dir)) locks.emplace_back(ckpt, "checkpoint.dir");
  io::check_writable_dir(ckpt, "checkpoint.dir");
  if (const int removed = io::remove_stale_temp_files(ckpt); removed > 0)
    print_line(detail::concat("removed ", removed, removed == 1 ? " partial file" : " partial files",
                              " of an interrupted save from ", ckpt));
  return locks;
}

void Trainer::open_run_files() {
  log_->open(config_.run.dir, !resumed_from_.empty());
  write_run_config(config_.run.dir, to_yaml(config_));
}

TrainResult Trainer::run() {
  std::vector<io::DirectoryLock> locks;
  if (ranks_.rank == 0 && options_.write_files) {
    locks = hold_run_dirs();
    open_run_files();
  }
  StopSignalGuard signals;
  clear_stop_signal();
  // Note [train.log]: a stdout that closed before the run began (`| head -1`) is a stop request.
  if (ranks_.rank == 0 && log_->console_gone()) request_stop(SIGPIPE);
  TrainResult result;
  result.start_step = state_.step;
  result.end_step = state_.step;
  result.resumed_from = resumed_from_;
  if (!resumed_from_.empty() && state_.step >= config_.train.steps) {
    // Running a finished run's command again is not an error (a script may rerun until done).
    print_line(detail::concat(config_.run.dir, " already reached step ", state_.step,
                              "; raise train.steps to continue"));
    result.already_finished = true;
    clear_stop_signal();
    return result;
  }
  run_started_ = Clock::now();
  run_start_step_ = state_.step;
  MetricsLog metrics;
  if (ranks_.rank == 0 && options_.write_files) {
    metrics = MetricsLog(config_.run.dir, resumed_from_.empty() ? -1 : state_.step);
  }
  log_run_start();

  LogInterval interval;
  bool saved_this_step = false;
  while (state_.step < config_.train.steps) {
    const StepReport report = train_step();
    result.steps.push_back(report);
    if (options_.on_step) options_.on_step(report);
    interval.add(report);

    // The checkpoint comes before the evaluation, so that a stop or a failure during a long
    // evaluation never costs the step; the last step always saves.
    saved_this_step = checkpoint_due(report.step) || (options_.write_files && report.step == config_.train.steps);
    if (saved_this_step) result.checkpoint = save_checkpoint();
    const std::optional<EvalResult> eval = evaluate_if_due();
    if (eval) {
      result.eval = eval;
      result.eval_step = report.step;
    }
    if (log_due(report.step, eval.has_value())) log_step(report, eval, interval, metrics);
    if (sample_due(config_, report.step) && ranks_.rank == 0 && options_.print)
      print_line(training_sample(config_, *model_));  // rank 0's full model copy, no collective
    if (stop_requested_anywhere()) {
      result.stop_signal = stop_signal();
      break;
    }
  }
  finish_run(result, saved_this_step);
  clear_stop_signal();
  return result;
}

}  // namespace strand::train
