// Progress output: the in-place bar, the plain periodic lines, the environment override and the
// line an unwinding error leaves.
#include "framework/core/progress.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <string>

#include "framework/core/error.h"

namespace strand {
namespace {

// A temporary stream and what was written to it.
class Captured {
 public:
  Captured() : f_(std::tmpfile()) {}
  ~Captured() { std::fclose(f_); }
  std::FILE* stream() const { return f_; }
  std::string text() const {
    std::fflush(f_);
    std::rewind(f_);
    std::string s;
    for (int c; (c = std::fgetc(f_)) != EOF;) s.push_back(static_cast<char>(c));
    return s;
  }

 private:
  std::FILE* f_;
};

int count_of(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

ProgressOptions options_for(std::FILE* out, ProgressMode mode) {
  ProgressOptions o;
  o.label = "eval";
  o.total = 4;
  o.unit = "batches";
  o.mode = mode;
  o.line_every_s = 0.0;  // a line at every update
  o.out = out;
  return o;
}

TEST(Progress, LinesModeWritesOnePlainLinePerPeriodWithEtaAndAFinalSummary) {
  Captured out;
  {
    Progress p(options_for(out.stream(), ProgressMode::Lines));
    for (int i = 1; i <= 3; ++i) p.update(i);
    p.finish();
    p.finish();  // idempotent
  }
  const std::string s = out.text();
  EXPECT_EQ(count_of(s, "\n"), 4) << s;
  EXPECT_EQ(count_of(s, "\r"), 0) << s;
  EXPECT_NE(s.find("eval 25%  1/4 batches"), std::string::npos) << s;
  EXPECT_NE(s.find("eval 75%  3/4 batches"), std::string::npos) << s;
  EXPECT_EQ(count_of(s, "ETA "), 3) << s;
  EXPECT_NE(s.find("eval 100%  4/4 batches"), std::string::npos) << s;
  EXPECT_NE(s.find(" in 0:00"), std::string::npos) << s;
}

TEST(Progress, LinesModeStaysQuietWithinThePeriod) {
  Captured out;
  ProgressOptions o = options_for(out.stream(), ProgressMode::Lines);
  o.line_every_s = 3600.0;
  Progress p(o);
  for (int i = 1; i <= 4; ++i) p.update(i);
  EXPECT_EQ(out.text(), "");
  p.finish();
  EXPECT_EQ(count_of(out.text(), "\n"), 1);
}

TEST(Progress, BarModeRedrawsInPlaceAndEndsWithOneNewline) {
  Captured out;
  Progress p(options_for(out.stream(), ProgressMode::Bar));
  p.update(2);  // within 100 ms of the start: not drawn
  p.finish();
  const std::string s = out.text();
  EXPECT_EQ(count_of(s, "\r"), 1) << s;
  EXPECT_EQ(count_of(s, "\n"), 1) << s;
  EXPECT_NE(s.find("eval [##############################] 100%  4/4 batches"), std::string::npos) << s;
}

TEST(Progress, AnUnfinishedBarEndsItsLineSoAnErrorStartsOnItsOwn) {
  Captured out;
  {
    ProgressOptions o = options_for(out.stream(), ProgressMode::Bar);
    Progress p(o);
    // Drawn once the redraw interval has passed.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(150);
    while (std::chrono::steady_clock::now() < until) {
    }
    p.update(1);
  }
  const std::string s = out.text();
  EXPECT_NE(s.find("eval [#######.......................] 25%"), std::string::npos) << s;
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s.back(), '\n');
}

TEST(Progress, ScaledCountsAndUnknownTotals) {
  Captured out;
  ProgressOptions o = options_for(out.stream(), ProgressMode::Lines);
  o.label = "tokenizing";
  o.total = 0;  // unknown
  o.unit = "MB";
  o.unit_scale = 1e6;
  Progress p(o);
  p.update(2'500'000);
  p.finish();
  const std::string s = out.text();
  EXPECT_NE(s.find("tokenizing  2.5 MB"), std::string::npos) << s;
  EXPECT_EQ(count_of(s, "%"), 0) << s;
  EXPECT_EQ(count_of(s, "ETA"), 0) << s;
}

TEST(Progress, WorkFinishedSoonerThanTheQuietTimeShowsNothing) {
  Captured out;
  ProgressOptions o = options_for(out.stream(), ProgressMode::Lines);
  o.quiet_below_s = 3600.0;
  Progress p(o);
  for (int i = 1; i <= 4; ++i) p.update(i);
  p.finish();
  EXPECT_EQ(out.text(), "");
}

TEST(Progress, OffWritesNothing) {
  Captured out;
  Progress p(options_for(out.stream(), ProgressMode::Off));
  p.update(3);
  p.finish();
  EXPECT_EQ(out.text(), "");
}

TEST(Progress, TheEnvironmentChoosesTheModeAndAnUnknownValueIsNamed) {
  Captured out;  // a file: Lines unless the environment says otherwise
  ::unsetenv("STRAND_PROGRESS");
  EXPECT_EQ(resolve_progress_mode(ProgressMode::Auto, out.stream()), ProgressMode::Lines);
  ::setenv("STRAND_PROGRESS", "bar", 1);
  EXPECT_EQ(resolve_progress_mode(ProgressMode::Auto, out.stream()), ProgressMode::Bar);
  ::setenv("STRAND_PROGRESS", "off", 1);
  EXPECT_EQ(resolve_progress_mode(ProgressMode::Auto, out.stream()), ProgressMode::Off);
  EXPECT_EQ(resolve_progress_mode(ProgressMode::Lines, out.stream()), ProgressMode::Lines);  // explicit wins
  ::setenv("STRAND_PROGRESS", "fancy", 1);
  try {
    resolve_progress_mode(ProgressMode::Auto, out.stream());
    ADD_FAILURE() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("STRAND_PROGRESS='fancy'"), std::string::npos) << e.what();
  }
  ::unsetenv("STRAND_PROGRESS");
}

TEST(Progress, DurationsReadAsClockTimes) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(65.4), "1:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
}

}  // namespace
}  // namespace strand
