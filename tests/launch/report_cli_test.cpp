// `strand report` on real runs: the page written, one error line for a missing run directory or
// a malformed metrics line, a run reported while it trains, and the page loaded in headless
// Chromium (Debian's `chromium`): its script ran without an error, every chart has its series
// with one point per logged value, pictures decode, the log-scale toggle switches the drawing,
// and a screenshot is saved. Without chromium the browser test is skipped ("skipped: no
// chromium"); launch/setup.sh --tests installs it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <signal.h>
#include <string>

#include "launch/job.h"
#include "launch/run_compare.h"
#include "support/temp_dir.h"

namespace strand {
namespace {

namespace fs = std::filesystem;
using testing_support::CommandResult;
using testing_support::read_metrics;
using testing_support::read_text;
using testing_support::run_command;
using testing_support::strand_binary;

// The browser: STRAND_CHROMIUM when set, else `chromium` on PATH; "" when there is none.
std::string chromium_binary() {
  if (const char* env = std::getenv("STRAND_CHROMIUM")) return env;
  return std::system("command -v chromium >/dev/null 2>&1") == 0 ? "chromium" : "";
}

class ReportCliTest : public ::testing::Test {
 protected:
  testing::TempDir dir_{"strand_report_cli"};

  CommandResult strand(const std::string& args) const {
    return run_command("OMP_NUM_THREADS=1 " + strand_binary() + " " + args, dir_.path);
  }
  // A few steps of a tiny synthetic model, with validation and two checkpoints.
  std::string train_short_run() const {
    const std::string run = dir_.file("run");
    std::ofstream(dir_.file("tiny.yaml"))
        << "run: {dir: " << run << ", seed: 3}\n"
        << "model: {vocab_size: 32, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 32}\n"
        << "data: {format: synthetic, task: assoc_recall, seq_len: 32, batch_size: 2}\n"
        << "train: {steps: 6, log_every: 1, eval_every: 2, eval_batches: 1}\n"
        << "checkpoint: {every: 3}\n";
    const CommandResult r = strand("train " + dir_.file("tiny.yaml"));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return run;
  }
  // Headless Chromium on the page; `flags` picks --dump-dom or --screenshot=FILE. stderr (with
  // the page's console messages, --enable-logging) goes to `log`.
  CommandResult chromium(const std::string& flags, const std::string& url) const {
    return run_command("timeout 120 " + chromium_binary() +
                           " --headless=new --no-sandbox --disable-gpu --enable-logging=stderr --v=0 "
                           "--user-data-dir=" + dir_.file("profile") + " " + flags + " '" + url + "'",
                       dir_.path);
  }
};

TEST_F(ReportCliTest, MissingRunDirIsOneErrorLine) {
  const CommandResult r = strand("report " + dir_.file("no_such_run"));
  EXPECT_NE(r.exit_code, 0);
  ASSERT_EQ(r.error_lines().size(), 1u) << r.err;
  EXPECT_EQ(r.error_lines()[0], "strand: error: report: " + dir_.file("no_such_run") + ": no such directory");
}

TEST_F(ReportCliTest, MalformedMetricsLineIsOneErrorLineNamingIt) {
  fs::create_directories(dir_.file("run"));
  std::ofstream(dir_.file("run/metrics.jsonl")) << "{\"step\": 1, \"loss\": 2}\nnot json\n";
  const CommandResult r = strand("report " + dir_.file("run"));
  EXPECT_NE(r.exit_code, 0);
  ASSERT_EQ(r.error_lines().size(), 1u) << r.err;
  EXPECT_EQ(r.error_lines()[0].rfind("strand: error: " + dir_.file("run/metrics.jsonl") + ":2: at byte 0:", 0), 0u)
      << r.err;
}

TEST_F(ReportCliTest, ARunInProgressIsReported) {
  const std::string run = dir_.file("run");
  std::ofstream(dir_.file("long.yaml"))
      << "run: {dir: " << run << ", seed: 3}\n"
      << "model: {vocab_size: 32, n_layer: 1, n_head: 2, d_model: 16, max_seq_len: 32}\n"
      << "data: {format: synthetic, task: assoc_recall, seq_len: 32, batch_size: 2}\n"
      << "train: {steps: 1000000, log_every: 1}\n";
  testing_support::Job job("env OMP_NUM_THREADS=1 " + strand_binary() + " train " + dir_.file("long.yaml"),
                           dir_.path / "train.out");
  ASSERT_TRUE(job.started());
  ASSERT_EQ(testing_support::wait_for_lines(job, run + "/metrics.jsonl", 3, std::chrono::seconds(120)), "")
      << read_text(dir_.file("train.out"));
  const CommandResult r = strand("report " + run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string html = read_text(run + "/report.html");
  EXPECT_NE(html.find("<b>in progress</b>"), std::string::npos);
  EXPECT_NE(html.find("id=\"chart-loss\""), std::string::npos);
  // The run goes on undisturbed and stops as asked: a checkpoint, exit status 0.
  ::kill(job.pid(), SIGTERM);
  EXPECT_EQ(job.wait_for_exit(std::chrono::seconds(120)), 0) << read_text(dir_.file("train.out"));
  const CommandResult after = strand("report " + run);
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(read_text(run + "/report.html").find("<b>in progress</b>"), std::string::npos);
}

TEST_F(ReportCliTest, PageOfAShortRunHasEveryCurveInChromium) {
  const std::string run = train_short_run();
  // What analyze and prune leave in a run directory: a picture (a 1x1 PNG) and a JSON report.
  fs::create_directories(run + "/analyze");
  std::ofstream(run + "/analyze/head_view.png", std::ios::binary)
      << std::string("\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00"
                     "\x00\x01\x08\x04\x00\x00\x00\xb5\x1c\x0c\x02\x00\x00\x00\x0b\x49\x44\x41\x54\x78\xda\x63"
                     "\x64\x60\x00\x00\x00\x06\x00\x02\x30\x81\xd0\x2f\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42"
                     "\x60\x82",
                     68);
  std::ofstream(run + "/prune_report.json") << R"({"heads_removed": 1, "heads": [{"layer": 0, "head": 1}]})";
  const std::string page = dir_.file("report.html");
  const CommandResult r = strand("report " + run + " --out " + page);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("report: wrote " + page + " (6 metrics lines, 2 checkpoints, 2 other files)"), std::string::npos) << r.out;

  // What the page must draw: for every field, the number of lines that give it a value.
  std::map<std::string, int> values;
  for (const auto& row : read_metrics(run + "/metrics.jsonl"))
    for (const auto& [key, value] : row)
      if (value) ++values[key];
  ASSERT_EQ(values["loss"], 6);
  ASSERT_EQ(values["val_loss"], 3);

  if (chromium_binary().empty()) GTEST_SKIP() << "skipped: no chromium";
  const CommandResult shown = chromium("--dump-dom", "file://" + page);
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  const std::string& dom = shown.out;
  // The page's own script ran to its end, recorded no error, and the console has no message.
  EXPECT_NE(dom.find("data-report-ready=\"1\""), std::string::npos) << dom.substr(0, 400);
  EXPECT_EQ(dom.find("data-report-errors=\""), std::string::npos);  // the attribute, not the script
  EXPECT_EQ(shown.err.find("Uncaught"), std::string::npos) << shown.err;
  EXPECT_EQ(shown.err.find("CONSOLE"), std::string::npos) << shown.err;
  EXPECT_EQ(dom.find("<body class=\"log\">"), std::string::npos);  // linear scale first
  // The picture decoded; the JSON report is a table.
  EXPECT_NE(dom.find("data-report-images=\"1\""), std::string::npos);
  EXPECT_NE(dom.find("data-report-broken-images=\"0\""), std::string::npos);
  EXPECT_NE(dom.find("<tr><th>heads_removed</th><td>1</td></tr>"), std::string::npos);

  // Every chart has its series, each with one point per value, in both drawings.
  const std::regex figure_re("<figure class=\"chart\" id=\"chart-([a-z_]+)\"[\\s\\S]*?</figure>");
  const std::regex series_re("<polyline[^>]*data-series=\"([a-z_]+)\"[^>]*points=\"([^\"]*)\"");
  std::map<std::string, int> drawn;  // series -> points, over the linear and log drawings
  int charts = 0;
  for (auto f = std::sregex_iterator(dom.begin(), dom.end(), figure_re); f != std::sregex_iterator(); ++f) {
    ++charts;
    const std::string figure = (*f)[0];
    int in_chart = 0;
    for (auto s = std::sregex_iterator(figure.begin(), figure.end(), series_re); s != std::sregex_iterator(); ++s) {
      const std::string pts = (*s)[2];
      const int n = static_cast<int>(std::count(pts.begin(), pts.end(), ','));
      EXPECT_EQ(n, values[(*s)[1]]) << "chart " << (*f)[1] << ", series " << (*s)[1];
      drawn[(*s)[1]] += n;
      ++in_chart;
    }
    EXPECT_GT(in_chart, 0) << "chart " << (*f)[1] << " has no series";
  }
  EXPECT_GE(charts, 6);
  for (const char* key : {"loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_bytes", "loss_scale"})
    EXPECT_EQ(drawn[key], 2 * values[key]) << key << ": every value in the linear and the log drawing";

  // The toggle: #logscale in the address starts in log scale.
  const CommandResult log = chromium("--dump-dom", "file://" + page + "#logscale");
  EXPECT_NE(log.out.find("<body class=\"log\">"), std::string::npos);

  const std::string png = dir_.file("report.png");
  const CommandResult shot = chromium("--window-size=1480,1400 --screenshot=" + png, "file://" + page);
  ASSERT_EQ(shot.exit_code, 0) << shot.err;
  const std::string bytes = read_text(png);
  EXPECT_GT(bytes.size(), 10000u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // The temp dir goes at the end of the test; STRAND_REPORT_SCREENSHOT keeps a copy.
  if (const char* keep = std::getenv("STRAND_REPORT_SCREENSHOT")) fs::copy_file(png, keep, fs::copy_options::overwrite_existing);
}

}  // namespace
}  // namespace strand
