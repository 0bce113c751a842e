// `strand report RUN_DIR`: what a run directory holds (metrics.jsonl, config.yaml, train.log,
// checkpoints, and the files other commands leave there) read into a RunReport, and the
// self-contained HTML page (inline SVG charts, no network) written from it. docs/report.md.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "framework/core/json_value.h"

namespace strand::train {

// One metrics.jsonl line: every number-valued field by name (nullopt where the writer put null,
// e.g. a NaN loss). Fields of other kinds are left out.
using MetricsRow = std::map<std::string, std::optional<double>>;

struct CheckpointFile {
  std::string name;      // "step_00000040.h5"
  int64_t step = -1;     // from the name
  int64_t bytes = 0;
  double mtime = 0.0;    // unix seconds
  bool latest = false;   // the file the `latest` pointer names
};

// A file another command wrote into the run directory, shown as it is: a picture, a JSON
// document (its top-level fields as a table) or text (Markdown shown verbatim).
struct ExtraFile {
  enum class Kind { Png, Json, Text } kind = Kind::Text;
  std::string relative_path;  // from the run directory
  std::string content;        // Png: the file's bytes; Text: the text
  JsonValue json;             // Json
  std::string problem;        // non-empty: why the file could not be read (shown in its place)
};

struct RunReport {
  std::string run_dir;
  bool metrics_present = false;
  std::vector<MetricsRow> rows;      // in file order
  bool partial_last_line = false;    // a last line without newline that does not parse (being written)
  std::optional<std::string> config_yaml;
  std::string checkpoint_dir;        // "" when none was found
  std::vector<CheckpointFile> checkpoints;  // by step
  std::vector<std::string> log_tail;        // the last lines of train.log
  bool log_present = false;
  bool in_progress = false;          // a live `strand train` holds the directory's lock
  std::vector<ExtraFile> extras;     // by path
};

// The lines of train.log the page keeps (its end).
inline constexpr size_t kLogTailLines = 40;
// Series longer than this are thinned to every k-th point (and the last) in the charts.
inline constexpr size_t kMaxChartPoints = 2000;

// Reads metrics.jsonl text: complete lines only, so a run being written can be reported. A last
// line without its newline is kept when it parses and skipped (partial_last_line) when not; any
// other line that is not a JSON object with a numeric "step" is a ValueError "FILE:LINE: ...".
std::vector<MetricsRow> parse_metrics_text(const std::string& text, const std::string& file, bool* partial_last_line);

// Reads the run directory. A missing directory or metrics.jsonl line that cannot be read is a
// ValueError naming the path (and line); every other missing file is reported as absent.
RunReport read_run_dir(const std::string& run_dir);

// The page. `generated_at` is shown as the time the page was made.
std::string report_html(const RunReport& report, const std::string& generated_at);

// Text for HTML: & < > " ' as entities, and bytes of invalid UTF-8 and control characters
// (other than tab and newline) as U+FFFD, so no input can open a tag or break the page.
std::string html_escape(const std::string& text);

}  // namespace strand::train
