// What a run reports per logged step: the readable console line, RUN_DIR/metrics.jsonl
// (architecture.md §7), and the model-FLOPs estimate behind MFU.
#pragma once
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "framework/config/config.h"

namespace strand::train {

// The run configuration's types (framework/config) read as train's own: train is the layer above.
using namespace strand::config;

// One logged step. `step` counts completed optimizer steps (1 after the first step).
struct StepMetrics {
  int64_t step = 0;
  int64_t total_steps = 0;
  double loss = 0.0;            // mean over every scored token of the step (all micro-batches and ranks)
  double lr = 0.0;
  double grad_norm = 0.0;       // before clipping
  double tokens_per_s = 0.0;    // input tokens of all ranks per second of wall time
  std::optional<double> mfu;    // model FLOPs utilisation in [0, 1]; empty without a peak
  int64_t peak_mem_bytes = 0;   // the allocator's peak on this rank
  double loss_scale = 1.0;
  int64_t skipped = 0;          // optimizer steps skipped for non-finite gradients since the run began
  double step_ms = 0.0;         // mean wall time of the steps since the last logged one
  int64_t tokens_seen = 0;      // input tokens of all ranks since the run's first step (resumes included)
  double elapsed_s = 0.0;       // wall time since this process began training (a resume starts at 0)
  double timestamp = 0.0;       // wall clock: unix seconds (UTC), to the millisecond
  double eta_s = 0.0;           // seconds left at the mean wall time per step of this process
  std::optional<int64_t> epoch;  // token data: passes over the training rows completed before the step's last batch
  std::optional<double> val_loss;
  std::optional<double> val_accuracy;      // answer-token accuracy (synthetic tasks)
  std::optional<double> val_row_accuracy;  // rows with every answer token right
  // The terms of a loss made of several (distillation: ce, kd), each a mean over the step's
  // scored tokens: "loss_<name>" in the JSON, "<name> x" after the loss in the line.
  std::vector<std::pair<std::string, double>> terms;
};

// One JSON object (one line, no newline): step, loss, lr, grad_norm, tokens_per_s, mfu,
// peak_mem_bytes, loss_scale, skipped, step_ms, tokens_seen, elapsed_s, timestamp, epoch (token
// data), and val_* where evaluated.
std::string metrics_json(const StepMetrics& m);
// "step   20/200 | loss 2.3456 | lr 3.00e-04 | grad 1.2345 | 41.7 ms | 12.3k tok/s | 246k tok |
//  mfu 4.1% | mem 85.2 MiB | 0m52s elapsed, eta 3m12s" (one line)
std::string metrics_line(const StepMetrics& m);

// "1h02m", "3m12s", "42s".
std::string format_duration(double seconds);
// "85.2 MiB".
std::string format_bytes(int64_t bytes);

// Model FLOPs per trained token (forward + backward): 6 * params for the matmuls plus
// 12 * n_layer * d_model * seq_len for attention scores and values (the PaLM appendix B
// estimate; it counts a full T x T attention whatever the mask, as MFU figures usually do).
double flops_per_token(const Config& config, int64_t params);

// Peak FLOP/s of one rank for MFU: `cli_tflops` when > 0, else the environment variable
// STRAND_PEAK_FLOPS (FLOP/s, e.g. 1.2e12), else 0 (MFU not reported). A malformed variable is
// a ValueError naming it.
double peak_flops_per_rank(double cli_tflops);

// RUN_DIR/metrics.jsonl, written by rank 0 only. A fresh run truncates it; a resumed run keeps
// the lines of steps up to the checkpoint's step and drops the later ones (they are re-run).
class MetricsLog {
 public:
  MetricsLog() = default;
  // Opens run_dir/metrics.jsonl (creating run_dir). resumed_step < 0: fresh run.
  MetricsLog(const std::string& run_dir, int64_t resumed_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  MetricsLog(MetricsLog&& other) noexcept;
  MetricsLog& operator=(MetricsLog&& other) noexcept;

  bool is_open() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }
  // Appends one line and flushes, so a killed run keeps every line it logged.
  void write(const StepMetrics& m);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace strand::train
