// What rank 0 of a training run prints: the console and RUN_DIR/train.log, which keeps a copy
// of every line, and RUN_DIR/config.yaml, the resolved config of the run.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

namespace strand::train {

// Note [train.log]
// Every line rank 0 prints during `strand train` goes through one RunLog: to the console
// (stdout for progress, stderr for stop lines) and to RUN_DIR/train.log. Lines printed before the
// run directory is locked (the resolved config, the notices of a resume) are kept and written
// when the file opens, so the file holds the whole run. A fresh run truncates train.log; a
// resumed one appends after a separator line. When stdout is gone (a closed pipe: the write
// fails with EPIPE, SIGPIPE being a stop request or ignored) the console copy stops, the run is
// asked to stop (as SIGPIPE does), and the file still gets every later line: the stop line,
// the last save, the error that ended the run.
class RunLog {
 public:
  // `console`: where progress lines go (stdout); nullptr: nowhere but the file.
  explicit RunLog(std::FILE* console = stdout);
  ~RunLog();
  RunLog(const RunLog&) = delete;
  RunLog& operator=(const RunLog&) = delete;

  // Opens run_dir/train.log (run_dir exists): truncated when `append` is false, else appended to
  // after a separator line with the time; then writes the lines kept so far.
  void open(const std::string& run_dir, bool append);
  bool is_open() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }

  void line(const std::string& text);        // console (when not gone) and the file
  void error_line(const std::string& text);  // stderr and the file
  void file_line(const std::string& text);   // the file only (a line someone else prints)
  // A write to the console failed with EPIPE: whoever read it is gone.
  bool console_gone() const { return console_gone_; }

 private:
  void to_file(const std::string& text);

  std::FILE* console_;
  std::FILE* file_ = nullptr;
  std::string path_;
  std::vector<std::string> kept_;  // lines printed before open()
  bool console_gone_ = false;
};

// Writes run_dir/config.yaml (the resolved config, as `strand train` prints it) through a
// temporary file, so that a reader never sees half of it. A failure is a ValueError naming it.
void write_run_config(const std::string& run_dir, const std::string& yaml);

// The current time as ISO 8601 UTC, "2026-12-03T10:27:17Z".
std::string utc_timestamp();

}  // namespace strand::train
