// `strand report`'s reading and page: one chart per logged series with one point per value,
// every string from the run directory escaped, a half-written last line of metrics.jsonl left
// out (a run in progress), a malformed line named by file and line, missing files reported as
// not present, checkpoints and the files of other commands shown.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "framework/core/error.h"
#include "framework/io/run_dir.h"
#include "framework/train/report.h"
#include "support/temp_dir.h"

namespace strand::train {
namespace {

namespace fs = std::filesystem;

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::string metrics_line(int step, double loss, const std::string& extra = "") {
  return "{\"step\": " + std::to_string(step) + ", \"loss\": " + std::to_string(loss) +
         ", \"lr\": 0.001, \"grad_norm\": 0.5, \"tokens_per_s\": 1000, \"mfu\": null, \"peak_mem_bytes\": 1048576"
         ", \"loss_scale\": 1, \"skipped\": 0, \"step_ms\": 12.5, \"tokens_seen\": " + std::to_string(step * 64) +
         ", \"elapsed_s\": 1.0, \"timestamp\": 1764758400.0" + extra + "}\n";
}

// The <figure> of one chart.
std::string chart(const std::string& html, const std::string& id) {
  const size_t at = html.find("<figure class=\"chart\" id=\"chart-" + id + "\"");
  if (at == std::string::npos) return "";
  return html.substr(at, html.find("</figure>", at) - at);
}

// The number of "x,y" pairs of series `key` in the linear (or log) drawing of a chart, -1 when absent.
int points(const std::string& figure, const std::string& key, bool log = false) {
  const std::string group = log ? "<g class=\"log\">" : "<g class=\"lin\">";
  const size_t g = figure.find(group);
  if (g == std::string::npos) return -1;
  const std::string drawing = figure.substr(g, figure.find("</g>", g) - g);
  std::smatch m;
  const std::regex series("<polyline[^>]*data-series=\"" + key + "\"[^>]*points=\"([^\"]*)\"");
  if (!std::regex_search(drawing, m, series)) return -1;
  const std::string pts = m[1];
  int n = 0;
  const std::regex pair("-?[0-9.]+,-?[0-9.]+");
  for (auto it = std::sregex_iterator(pts.begin(), pts.end(), pair); it != std::sregex_iterator(); ++it) ++n;
  return n;
}

int count(const std::string& text, const std::string& part) {
  int n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

TEST(Report, TinyRunHasOneChartPerSeriesWithItsPoints) {
  testing::TempDir dir("report");
  const fs::path run = dir.path / "run";
  std::string metrics;
  for (int step = 1; step <= 5; ++step)
    metrics += metrics_line(step, 3.0 - 0.1 * step, step % 2 == 0 ? ", \"val_loss\": 2.9" : "");
  write(run / "metrics.jsonl", metrics);
  write(run / "config.yaml", "run:\n  dir: x\n");
  write(run / "train.log", "step 1/5 | loss 2.9\n");

  const RunReport report = read_run_dir(run.string());
  ASSERT_EQ(report.rows.size(), 5u);
  EXPECT_FALSE(report.partial_last_line);
  const std::string html = report_html(report, "2026-12-03T10:00:00Z");

  // The six curves the trainer always logs, and step time (present); not mfu (null throughout)
  // nor the counters.
  for (const char* id : {"loss", "lr", "grad_norm", "tokens_per_s", "peak_mem", "loss_scale", "step_ms"})
    EXPECT_FALSE(chart(html, id).empty()) << id;
  EXPECT_EQ(count(html, "<figure class=\"chart\""), 7) << "loss, lr, grad, tok/s, mem, scale, step time";
  EXPECT_EQ(chart(html, "tokens_seen"), "");
  EXPECT_EQ(points(chart(html, "loss"), "loss"), 5);
  EXPECT_EQ(points(chart(html, "loss"), "val_loss"), 2);
  EXPECT_EQ(points(chart(html, "loss"), "loss", /*log=*/true), 5);
  EXPECT_EQ(points(chart(html, "lr"), "lr"), 5);
  EXPECT_EQ(points(chart(html, "peak_mem"), "peak_mem_bytes"), 5);
  EXPECT_EQ(chart(html, "mfu"), "");
  // Memory is shown in MiB: 1048576 bytes is 1.
  EXPECT_NE(chart(html, "peak_mem").find("peak memory: last 1 (step 5)"), std::string::npos);
  EXPECT_NE(html.find("id=\"logscale\""), std::string::npos);
  EXPECT_NE(html.find("<h2 id=\"config\">"), std::string::npos);
  EXPECT_NE(html.find("checkpoint directory: not present."), std::string::npos);
  EXPECT_NE(html.find("step 1/5 | loss 2.9"), std::string::npos);
  // Self-contained: nothing is fetched.
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));
  EXPECT_EQ(html.find("https://"), std::string::npos);
}

TEST(Report, HalfWrittenLastLineIsLeftOut) {
  bool partial = false;
  const std::string text = metrics_line(1, 2.5) + metrics_line(2, 2.4) + "{\"step\": 3, \"loss\": 2.";
  EXPECT_EQ(parse_metrics_text(text, "m.jsonl", &partial).size(), 2u);
  EXPECT_TRUE(partial);
  // A complete last line without its newline counts.
  std::string whole = metrics_line(1, 2.5) + metrics_line(2, 2.4);
  whole.pop_back();
  EXPECT_EQ(parse_metrics_text(whole, "m.jsonl", &partial).size(), 2u);
  EXPECT_FALSE(partial);

  testing::TempDir dir("report");
  write(dir.path / "metrics.jsonl", text);
  const RunReport report = read_run_dir(dir.path.string());
  EXPECT_TRUE(report.partial_last_line);
  const std::string html = report_html(report, "now");
  EXPECT_NE(html.find("still being written"), std::string::npos);
  EXPECT_EQ(points(chart(html, "loss"), "loss"), 2);
}

TEST(Report, ARunHoldingTheDirectoryIsInProgress) {
  testing::TempDir dir("report");
  write(dir.path / "metrics.jsonl", metrics_line(1, 2.5));
  EXPECT_FALSE(read_run_dir(dir.path.string()).in_progress);
  {
    // The lock `strand train` holds while it runs (flock: a second open file conflicts, also in
    // this process).
    io::DirectoryLock lock(dir.path.string(), "run.dir");
    const RunReport report = read_run_dir(dir.path.string());
    EXPECT_TRUE(report.in_progress);
    EXPECT_NE(report_html(report, "now").find("<b>in progress</b>"), std::string::npos);
  }
  EXPECT_FALSE(read_run_dir(dir.path.string()).in_progress);
}

TEST(Report, MalformedLineIsNamedByFileAndLine) {
  try {
    parse_metrics_text(metrics_line(1, 2.5) + "{\"step\": 2, \"loss\": oops}\n" + metrics_line(3, 2.3), "run/metrics.jsonl",
                       nullptr);
    ADD_FAILURE() << "accepted a malformed line";
  } catch (const ValueError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("run/metrics.jsonl:2: at byte ", 0), 0u) << e.what();
  }
  try {
    parse_metrics_text("{\"loss\": 1}\n", "m.jsonl", nullptr);
    ADD_FAILURE() << "accepted a line without a step";
  } catch (const ValueError& e) {
    EXPECT_EQ(std::string(e.what()), "m.jsonl:1: no numeric \"step\" field");
  }
}

TEST(Report, MissingRunDirIsOneError) {
  testing::TempDir dir("report");
  try {
    read_run_dir((dir.path / "nope").string());
    ADD_FAILURE() << "read a missing directory";
  } catch (const ValueError& e) {
    EXPECT_EQ(std::string(e.what()), "report: " + (dir.path / "nope").string() + ": no such directory");
  }
}

TEST(Report, EmptyRunDirSaysWhatIsNotPresent) {
  testing::TempDir dir("report");
  const std::string html = report_html(read_run_dir(dir.path.string()), "now");
  for (const char* what : {"metrics.jsonl: not present.", "config.yaml: not present.", "train.log: not present.",
                           "checkpoint directory: not present."})
    EXPECT_NE(html.find(what), std::string::npos) << what;
  EXPECT_EQ(count(html, "<figure"), 0);
  EXPECT_NE(html.find("data-report-ready"), std::string::npos);  // the page's script still runs
}

TEST(Report, EveryStringFromTheRunDirIsEscaped) {
  testing::TempDir dir("report");
  const fs::path run = dir.path / "run<b>&\"x\"";
  write(run / "metrics.jsonl", metrics_line(1, 2.0, ", \"<img src=x onerror=alert(1)>\": 3"));
  write(run / "config.yaml", "name: </pre><script>alert(1)</script>\n");
  write(run / "train.log", "loss <1> & \x01 \xff done\n");
  write(run / "prune_report.json", R"({"<script>": "</table><script>alert(2)</script>", "heads": [{"layer": 0, "name": "<i>"}]})");
  write(run / "prune_report.md", "# Pruned <heads>\n");
  const std::string html = report_html(read_run_dir(run.string()), "<now>");
  for (const char* raw : {"<script>alert", "<img src=x", "run<b>", "</pre><script>", "<i>", "<heads>", "<now>", "\xff", "\x01"})
    EXPECT_EQ(html.find(raw), std::string::npos) << raw;
  for (const char* escaped : {"&lt;script&gt;alert(1)&lt;/script&gt;", "run&lt;b&gt;&amp;&quot;x&quot;",
                              "&lt;img src=x onerror=alert(1)&gt;", "loss &lt;1&gt; &amp; \xEF\xBF\xBD \xEF\xBF\xBD done",
                              "&lt;/table&gt;&lt;script&gt;alert(2)&lt;/script&gt;", "# Pruned &lt;heads&gt;"})
    EXPECT_NE(html.find(escaped), std::string::npos) << escaped;
  // An unknown field still gets its chart, under its escaped name.
  EXPECT_NE(html.find("<b>&lt;img src=x onerror=alert(1)&gt;</b>"), std::string::npos);
  EXPECT_EQ(html_escape("a\xC3\xA9" "b"), "a\xC3\xA9" "b");  // UTF-8 passes through
  EXPECT_EQ(html_escape("\xC3"), "\xEF\xBF\xBD");              // a cut sequence does not
}

TEST(Report, ChecksCheckpointsAndOtherCommandsOutputs) {
  testing::TempDir dir("report");
  const fs::path run = dir.path / "run";
  write(run / "metrics.jsonl", metrics_line(1, 2.0));
  write(run / "checkpoints" / "step_00000002.h5", std::string(100, 'x'));
  write(run / "checkpoints" / "step_00000010.h5", std::string(300, 'x'));
  write(run / "checkpoints" / "latest", "step_00000010.h5\n");
  write(run / "checkpoints" / ".tmp-123", "partial");
  write(run / "analyze" / "heads.png", std::string("\x89PNG\r\n\x1a\n", 8) + "rest");
  write(run / "analyze" / "attention.json", R"({"layers": 2, "entropy": [[1.5, 2.0], [0.5, 1.0]], "note": "ok"})");
  write(run / "analyze" / "deeper" / "skipped.json", "{}");  // one folder down only
  write(run / "analyze_bad.json", "{\"a\": ");               // being written
  write(run / "fake.png", "not a picture");
  const RunReport report = read_run_dir(run.string());
  ASSERT_EQ(report.checkpoints.size(), 2u);
  EXPECT_EQ(report.checkpoints[0].step, 2);
  EXPECT_EQ(report.checkpoints[1].step, 10);
  EXPECT_TRUE(report.checkpoints[1].latest);
  EXPECT_EQ(report.checkpoints[1].bytes, 300);
  ASSERT_EQ(report.extras.size(), 4u);
  EXPECT_EQ(report.extras[0].relative_path, "analyze/attention.json");
  EXPECT_EQ(report.extras[1].relative_path, "analyze/heads.png");
  EXPECT_EQ(report.extras[2].relative_path, "analyze_bad.json");
  EXPECT_NE(report.extras[2].problem.find("not valid JSON"), std::string::npos);
  EXPECT_EQ(report.extras[3].problem, "not a PNG file");
  const std::string html = report_html(report, "now");
  EXPECT_NE(html.find("<code>step_00000010.h5</code></td><td>10</td><td>300 B</td>"), std::string::npos);
  EXPECT_NE(html.find("src=\"data:image/png;base64,iVBORw0KGgpyZXN0\""), std::string::npos);
  EXPECT_NE(html.find("<tr><th>layers</th><td>2</td></tr>"), std::string::npos);
  EXPECT_NE(html.find("<code>[[1.5, 2.0], [0.5, 1.0]]</code>"), std::string::npos);
}

TEST(Report, NearlyConstantAndExtremeCurvesAreDrawn) {
  // Values one ulp apart, zeros and negatives (no log drawing for those), huge and tiny numbers.
  std::string text;
  const double values[] = {1.0, 1.0000000000000002, 1.0};
  for (int step = 1; step <= 3; ++step)
    text += "{\"step\": " + std::to_string(step) + ", \"loss\": " + std::to_string(values[step - 1]) +
            ", \"loss_scale\": " + (step == 2 ? "1.0000000000000002" : "1") + ", \"lr\": 0, \"grad_norm\": " +
            (step == 1 ? "-1" : "1e300") + ", \"tokens_per_s\": 1e-300}\n";
  RunReport report;
  report.metrics_present = true;
  report.rows = parse_metrics_text(text, "m", nullptr);
  const std::string html = report_html(report, "now");
  EXPECT_EQ(points(chart(html, "loss_scale"), "loss_scale"), 3);
  EXPECT_EQ(points(chart(html, "lr"), "lr"), 3);
  EXPECT_EQ(points(chart(html, "lr"), "lr", /*log=*/true), -1);
  EXPECT_NE(chart(html, "lr").find("no positive values for a log scale"), std::string::npos);
  EXPECT_EQ(points(chart(html, "grad_norm"), "grad_norm", /*log=*/true), 2);
  EXPECT_NE(chart(html, "grad_norm").find("1 values &#8804; 0 not drawn"), std::string::npos);
  EXPECT_EQ(points(chart(html, "tokens_per_s"), "tokens_per_s", /*log=*/true), 3);
}

TEST(Report, LongRunsAreThinnedKeepingTheLastPoint) {
  std::string text;
  for (int step = 1; step <= 5000; ++step) text += metrics_line(step, 1.0 + 1.0 / step);
  RunReport report;
  report.metrics_present = true;
  report.rows = parse_metrics_text(text, "m", nullptr);
  const std::string html = report_html(report, "now");
  const int n = points(chart(html, "loss"), "loss");
  EXPECT_GT(n, 1000);
  EXPECT_LE(n, static_cast<int>(kMaxChartPoints) + 1);
  EXPECT_NE(chart(html, "loss").find("last 1.0002 (step 5000)"), std::string::npos);
}

}  // namespace
}  // namespace strand::train
