// RUN_DIR/train.log and RUN_DIR/config.yaml (see Note [train.log] in run_log.h).
#include "framework/train/run_log.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "framework/core/error.h"
#include "framework/train/signals.h"

namespace strand::train {

RunLog::RunLog(std::FILE* console) : console_(console) {}

RunLog::~RunLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void RunLog::open(const std::string& run_dir, bool append) {
  if (file_ != nullptr) return;
  path_ = (std::filesystem::path(run_dir) / "train.log").string();
  const bool had_lines = append && std::filesystem::exists(path_) && std::filesystem::file_size(path_) > 0;
  file_ = std::fopen(path_.c_str(), append ? "a" : "w");
  STRAND_CHECK(file_ != nullptr, ValueError, path_, ": cannot open for writing: ", std::strerror(errno));
  if (had_lines) to_file("----- " + utc_timestamp() + ": the run goes on -----");
  for (const std::string& text : kept_) to_file(text);
  kept_.clear();
}

void RunLog::to_file(const std::string& text) {
  if (file_ == nullptr) {
    kept_.push_back(text);
    return;
  }
  // Flushed per line: a killed run keeps every line it printed.
  std::fprintf(file_, "%s\n", text.c_str());
  std::fflush(file_);
}

void RunLog::line(const std::string& text) {
  if (console_ != nullptr && !console_gone_) {
    const bool written = std::fprintf(console_, "%s\n", text.c_str()) >= 0 && std::fflush(console_) == 0;
    if (!written && errno == EPIPE) {
      // The reader went away; as a SIGPIPE would, this asks the run to stop (with a save).
      console_gone_ = true;
      std::clearerr(console_);
      if (stop_signal() == 0) request_stop(SIGPIPE);
    }
  }
  to_file(text);
}

void RunLog::error_line(const std::string& text) {
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fflush(stderr);
  to_file(text);
}

void RunLog::file_line(const std::string& text) { to_file(text); }

void write_run_config(const std::string& run_dir, const std::string& yaml) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(run_dir) / "config.yaml").string();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << yaml;
    out.flush();
    STRAND_CHECK(out.good(), ValueError, tmp, ": cannot write the run's config");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  STRAND_CHECK(!ec, ValueError, path, ": cannot write the run's config: ", ec.message());
}

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

}  // namespace strand::train
