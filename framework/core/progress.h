// Progress of long work (data prepare, eval, generate's prefill, bench train) on stderr: a bar
// with rate and ETA redrawn in place on a terminal, plain periodic lines when stderr is a file or
// a pipe, so logs stay readable and a job under a scheduler still shows it is alive.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace strand {

enum class ProgressMode {
  Auto,      // Bar when the stream is a terminal, else Lines; STRAND_PROGRESS overrides (below)
  Bar,       // one line redrawn in place (carriage return), at most 10 times a second
  Lines,     // a full line every `line_every_s` seconds and one when done
  Off,
};

struct ProgressOptions {
  std::string label;        // what is being done: "tokenizing (byte)", "eval", "prefill"
  int64_t total = 0;        // units of work in all; <= 0 when unknown (no bar, no ETA)
  std::string unit;         // shown after the counts: "MB", "batches", "layers"
  double unit_scale = 1.0;  // units per shown unit (1e6 to count bytes and show MB)
  ProgressMode mode = ProgressMode::Auto;
  double line_every_s = 10.0;  // Lines mode: the period of the plain lines
  double quiet_below_s = 0.0;  // work done sooner than this shows nothing at all (short prompts)
  std::FILE* out = stderr;
};

// The mode Auto resolves to: the environment variable STRAND_PROGRESS (bar | lines | off) when
// set, otherwise Bar on a terminal and Lines elsewhere. A value it does not know is an error
// naming it.
ProgressMode resolve_progress_mode(ProgressMode requested, std::FILE* out);

// "1:02:03" (hours when needed), or "?" for a negative or non-finite duration.
std::string format_duration(double seconds);

// Reports one piece of work. Not thread-safe: one thread updates it. A Progress destroyed before
// finish() (an error is unwinding) ends a half-drawn bar line, so the error starts on its own line.
class Progress {
 public:
  explicit Progress(ProgressOptions options);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `done` units finished so far (monotonic); draws when it is time to.
  void update(int64_t done);
  void advance(int64_t by = 1) { update(done_ + by); }
  // The final line: the count, the time taken and the mean rate. Idempotent.
  void finish();

  ProgressMode mode() const { return mode_; }

 private:
  using Clock = std::chrono::steady_clock;
  void draw(bool final_line);
  std::string status(double seconds) const;

  ProgressOptions o_;
  ProgressMode mode_;
  int64_t done_ = 0;
  bool finished_ = false;
  bool drawn_ = false;  // something was written
  Clock::time_point start_, last_draw_;
};

}  // namespace strand
