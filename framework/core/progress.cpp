// Progress lines and bars for long work; see progress.h.
#include "framework/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "framework/core/error.h"

namespace strand {

namespace {

constexpr int kBarWidth = 30;
constexpr auto kRedrawEvery = std::chrono::milliseconds(100);

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// Counts shown with one decimal when scaled (MB), as integers when counted one by one.
std::string count(double v, double scale) { return scale == 1.0 ? fixed(v, 0) : fixed(v / scale, 1); }

}  // namespace

ProgressMode resolve_progress_mode(ProgressMode requested, std::FILE* out) {
  if (requested != ProgressMode::Auto) return requested;
  if (const char* env = std::getenv("STRAND_PROGRESS"); env != nullptr && *env != '\0') {
    const std::string_view v(env);
    if (v == "bar") return ProgressMode::Bar;
    if (v == "lines") return ProgressMode::Lines;
    if (v == "off") return ProgressMode::Off;
    STRAND_CHECK(false, ValueError, "environment variable STRAND_PROGRESS='", v, "': expected bar, lines or off");
  }
  return ::isatty(::fileno(out)) ? ProgressMode::Bar : ProgressMode::Lines;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(std::llround(seconds));
  char buf[48];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  }
  return buf;
}

Progress::Progress(ProgressOptions options)
    : o_(std::move(options)), mode_(resolve_progress_mode(o_.mode, o_.out)), start_(Clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (mode_ == ProgressMode::Bar && drawn_ && !finished_) {
    std::fputc('\n', o_.out);
    std::fflush(o_.out);
  }
}

void Progress::update(int64_t done) {
  done_ = std::max(done_, done);
  if (mode_ == ProgressMode::Off || finished_) return;
  const auto now = Clock::now();
  if (now - start_ < std::chrono::duration<double>(o_.quiet_below_s)) return;
  const auto since = now - last_draw_;
  if (mode_ == ProgressMode::Bar && since < kRedrawEvery) return;
  if (mode_ == ProgressMode::Lines && since < std::chrono::duration<double>(o_.line_every_s)) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish() {
  if (mode_ == ProgressMode::Off || finished_) return;
  finished_ = true;
  if (o_.total > 0) done_ = std::max(done_, o_.total);
  if (!drawn_ && Clock::now() - start_ < std::chrono::duration<double>(o_.quiet_below_s)) return;
  draw(true);
}

std::string Progress::status(double seconds) const {
  const double rate = seconds > 0 ? static_cast<double>(done_) / seconds : 0.0;
  std::string s = count(static_cast<double>(done_), o_.unit_scale);
  if (o_.total > 0) s += "/" + count(static_cast<double>(o_.total), o_.unit_scale);
  if (!o_.unit.empty()) s += " " + o_.unit;
  s += "  " + fixed(rate / o_.unit_scale, o_.unit_scale == 1.0 && rate >= 10 ? 0 : 1) + " " +
       (o_.unit.empty() ? std::string("/s") : o_.unit + "/s");
  return s;
}

void Progress::draw(bool final_line) {
  const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
  const double frac = o_.total > 0 ? std::min(1.0, static_cast<double>(done_) / static_cast<double>(o_.total)) : 0.0;
  std::string line = o_.label;
  if (o_.total > 0 && mode_ == ProgressMode::Bar) {
    std::string bar(static_cast<size_t>(frac * kBarWidth), '#');
    bar.resize(kBarWidth, '.');
    line += " [" + bar + "]";
  }
  if (o_.total > 0) line += " " + fixed(frac * 100.0, 0) + "%";
  line += "  " + status(seconds);
  if (final_line) {
    line += "  in " + format_duration(seconds);
  } else if (o_.total > 0 && done_ > 0) {
    line += "  ETA " + format_duration(seconds * static_cast<double>(o_.total - done_) / static_cast<double>(done_));
  }
  if (mode_ == ProgressMode::Bar) {
    // Pad over a longer previous line; the newline only when the work is done.
    std::fprintf(o_.out, "\r%-*s", static_cast<int>(std::max<size_t>(line.size(), 79)), line.c_str());
    if (final_line) std::fputc('\n', o_.out);
  } else {
    std::fprintf(o_.out, "%s\n", line.c_str());
  }
  drawn_ = true;
  std::fflush(o_.out);
}

}  // namespace strand
