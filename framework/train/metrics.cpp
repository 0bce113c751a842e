// The console line, metrics.jsonl and the FLOPs estimate of a training run.
#include "framework/train/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "framework/core/error.h"
#include "framework/core/json.h"

namespace strand::train {

namespace {

// ", \"loss_ce\": 1.2, \"loss_kd\": 0.3" of a loss with terms; "" without.
std::string terms_json(const StepMetrics& m) {
  std::string s;
  for (const auto& [name, value] : m.terms) s += ", \"loss_" + name + "\": " + json_number(value);
  return s;
}

}  // namespace

std::string metrics_json(const StepMetrics& m) {
  std::string s = "{\"step\": " + std::to_string(m.step) + ", \"loss\": " + json_number(m.loss) +
                  terms_json(m) + ", \"lr\": " + json_number(m.lr) + ", \"grad_norm\": " + json_number(m.grad_norm) +
                  ", \"tokens_per_s\": " + json_number(m.tokens_per_s) +
                  ", \"mfu\": " + (m.mfu ? json_number(*m.mfu) : "null") +
                  ", \"peak_mem_bytes\": " + std::to_string(m.peak_mem_bytes) +
                  ", \"loss_scale\": " + json_number(m.loss_scale) + ", \"skipped\": " + std::to_string(m.skipped) +
                  ", \"step_ms\": " + json_number(std::round(m.step_ms * 1e3) / 1e3) +
                  ", \"tokens_seen\": " + std::to_string(m.tokens_seen) +
                  ", \"elapsed_s\": " + json_number(std::round(m.elapsed_s * 1e3) / 1e3) +
                  ", \"timestamp\": " + json_number(std::round(m.timestamp * 1e3) / 1e3);
  if (m.epoch) s += ", \"epoch\": " + std::to_string(*m.epoch);
  if (m.val_loss) s += ", \"val_loss\": " + json_number(*m.val_loss);
  if (m.val_accuracy) s += ", \"val_accuracy\": " + json_number(*m.val_accuracy);
  if (m.val_row_accuracy) s += ", \"val_row_accuracy\": " + json_number(*m.val_row_accuracy);
  return s + "}";
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  }
  return buf;
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

namespace {

// "1.23B", "4.56M", "12.3k", "950".
std::string format_count(double count) {
  char buf[32];
  if (count >= 1e9) {
    std::snprintf(buf, sizeof buf, "%.2fB", count / 1e9);
  } else if (count >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2fM", count / 1e6);
  } else if (count >= 1e3) {
    std::snprintf(buf, sizeof buf, "%.1fk", count / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.0f", count);
  }
  return buf;
}

}  // namespace

std::string metrics_line(const StepMetrics& m) {
  const int width = static_cast<int>(std::to_string(m.total_steps).size());
  char buf[256];
  // Fixed digits for loss and grad norm, so that successive lines line up.
  std::snprintf(buf, sizeof buf, "step %*lld/%lld | loss %.4f | lr %.2e | grad %.4f | %.1f ms | %s tok/s | %s tok",
                width, static_cast<long long>(m.step), static_cast<long long>(m.total_steps), m.loss, m.lr,
                m.grad_norm, m.step_ms, format_count(m.tokens_per_s).c_str(),
                format_count(static_cast<double>(m.tokens_seen)).c_str());
  std::string s = buf;
  if (!m.terms.empty()) {
    // "loss 2.1234 (ce 2.3456, kd 0.5678) | lr ...": the terms beside the loss they make.
    std::string terms;
    for (const auto& [name, value] : m.terms) {
      std::snprintf(buf, sizeof buf, "%s%s %.4f", terms.empty() ? " (" : ", ", name.c_str(), value);
      terms += buf;
    }
    s.insert(s.find(" | lr "), terms + ")");
  }
  if (m.mfu) {
    std::snprintf(buf, sizeof buf, " | mfu %.1f%%", *m.mfu * 100.0);
    s += buf;
  }
  // Mixed precision only: fp32 lines keep their shape.
  if (m.loss_scale != 1.0 || m.skipped > 0) {
    std::snprintf(buf, sizeof buf, " | scale %g skipped %lld", m.loss_scale, static_cast<long long>(m.skipped));
    s += buf;
  }
  s += " | mem " + format_bytes(m.peak_mem_bytes) + " | " + format_duration(m.elapsed_s) + " elapsed, eta " +
       format_duration(m.eta_s);
  if (m.epoch) s += " | epoch " + std::to_string(*m.epoch);
  if (m.val_loss) {
    std::snprintf(buf, sizeof buf, " | val loss %.4f", *m.val_loss);
    s += buf;
  }
  if (m.val_accuracy) {
    std::snprintf(buf, sizeof buf, " acc %.1f%%", *m.val_accuracy * 100.0);
    s += buf;
  }
  if (m.val_row_accuracy) {
    std::snprintf(buf, sizeof buf, " (rows %.1f%%)", *m.val_row_accuracy * 100.0);
    s += buf;
  }
  return s;
}

double flops_per_token(const Config& config, int64_t params) {
  const double attention = 12.0 * static_cast<double>(config.model.n_layer) *
                           static_cast<double>(config.model.d_model) * static_cast<double>(config.data.seq_len);
  return 6.0 * static_cast<double>(params) + attention;
}

double peak_flops_per_rank(double cli_tflops) {
  if (cli_tflops > 0) return cli_tflops * 1e12;
  const char* env = std::getenv("STRAND_PEAK_FLOPS");
  if (env == nullptr || *env == '\0') return 0.0;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(env, &end);
  STRAND_CHECK(end != env && *end == '\0' && errno == 0 && std::isfinite(v) && v > 0, ValueError,
               "STRAND_PEAK_FLOPS: expected a positive number of FLOP/s (e.g. 1.5e12), got '", env, "'");
  return v;
}

MetricsLog::MetricsLog(const std::string& run_dir, int64_t resumed_step) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  STRAND_CHECK(!ec, ValueError, "run.dir: cannot create '", run_dir, "': ", ec.message());
  path_ = (fs::path(run_dir) / "metrics.jsonl").string();
  // A resumed run keeps what was logged up to its checkpoint; later lines are re-run.
  std::vector<std::string> kept;
  if (resumed_step >= 0) {
    std::ifstream in(path_);
    std::string line;
    while (std::getline(in, line)) {
      const auto at = line.find("\"step\": ");
      if (at == std::string::npos) continue;
      if (std::strtoll(line.c_str() + at + 8, nullptr, 10) <= resumed_step) kept.push_back(line);
    }
  }
  file_ = std::fopen(path_.c_str(), "w");
  STRAND_CHECK(file_ != nullptr, ValueError, path_, ": cannot open for writing: ", std::strerror(errno));
  for (const auto& line : kept) std::fprintf(file_, "%s\n", line.c_str());
  std::fflush(file_);
}

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
}

MetricsLog::MetricsLog(MetricsLog&& other) noexcept
    : file_(std::exchange(other.file_, nullptr)), path_(std::move(other.path_)) {}

MetricsLog& MetricsLog::operator=(MetricsLog&& other) noexcept {
  if (this != &other) {
    if (file_ != nullptr) std::fclose(file_);
    file_ = std::exchange(other.file_, nullptr);
    path_ = std::move(other.path_);
  }
  return *this;
}

void MetricsLog::write(const StepMetrics& m) {
  if (file_ == nullptr) return;
  std::fprintf(file_, "%s\n", metrics_json(m).c_str());
  std::fflush(file_);
}

}  // namespace strand::train
