// Reading a run directory for `strand report`: metrics.jsonl (complete lines only), the resolved
// config, the end of train.log, the checkpoint files, and the pictures, JSON and Markdown that
// other commands (analyze, prune) leave in the directory.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "framework/config/config.h"
#include "framework/core/error.h"
#include "framework/train/report.h"

namespace strand::train {

namespace fs = std::filesystem;

namespace {

// Pictures larger than this are listed, not embedded, so that the page stays small enough to open.
constexpr std::uintmax_t kMaxEmbeddedBytes = 8u << 20;
// JSON and text files larger than this are listed as too large to show.
constexpr std::uintmax_t kMaxShownBytes = 4u << 20;

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

MetricsRow row_of(const JsonValue& line, const std::string& where) {
  STRAND_CHECK(line.kind == JsonValue::Kind::Object, ValueError, where, ": expected a JSON object");
  const JsonValue* step = line.find("step");
  STRAND_CHECK(step != nullptr && step->kind == JsonValue::Kind::Number && std::isfinite(step->number), ValueError,
               where, ": no numeric \"step\" field");
  MetricsRow row;
  for (const auto& [key, value] : line.members) {
    if (value.kind == JsonValue::Kind::Number) row[key] = value.number;
    if (value.kind == JsonValue::Kind::Null) row[key] = std::nullopt;
  }
  return row;
}

// A live `strand train` holds an exclusive flock on DIR/.strand.lock (framework/io/run_dir.h);
// taking a shared one without waiting fails exactly while it runs.
bool locked_by_a_run(const fs::path& dir) {
  const int fd = ::open((dir / ".strand.lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

int64_t step_of_name(const std::string& name) {
  // step_NNNNNNNN.h5 (docs/checkpoint-format.md)
  if (name.rfind("step_", 0) != 0 || name.size() <= 8 || name.compare(name.size() - 3, 3, ".h5") != 0) return -1;
  const std::string digits = name.substr(5, name.size() - 8);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::strtoll(digits.c_str(), nullptr, 10);
}

double mtime_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0.0;
  return static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) * 1e-9;
}

// The checkpoint directory: RUN_DIR/checkpoints, else the config's checkpoint.dir when it exists
// (it may be relative to where the run started, which need not be here).
std::string find_checkpoint_dir(const fs::path& run_dir, const std::optional<std::string>& config_yaml) {
  std::error_code ec;
  if (fs::is_directory(run_dir / "checkpoints", ec)) return (run_dir / "checkpoints").string();
  if (!config_yaml) return "";
  try {
    const config::Config config = config::parse_config(*config_yaml, (run_dir / "config.yaml").string());
    if (!config.checkpoint.dir.empty() && fs::is_directory(config.checkpoint.dir, ec)) return config.checkpoint.dir;
  } catch (const std::exception&) {
    // A config this build cannot read (newer keys) still gets its text shown; only the
    // checkpoint directory it names is not looked up.
  }
  return "";
}

std::vector<CheckpointFile> list_checkpoints(const std::string& dir) {
  std::vector<CheckpointFile> found;
  if (dir.empty()) return found;
  std::string latest;
  if (const auto text = read_file(fs::path(dir) / "latest")) {
    latest = *text;
    while (!latest.empty() && (latest.back() == '\n' || latest.back() == '\r' || latest.back() == ' ')) latest.pop_back();
  }
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    CheckpointFile f;
    f.name = it->path().filename().string();
    f.step = step_of_name(f.name);
    std::error_code entry_ec;  // a file removed meanwhile (pruned by the run) is passed over
    if (f.step < 0 || !it->is_regular_file(entry_ec)) continue;
    f.bytes = static_cast<int64_t>(it->file_size(entry_ec));
    if (entry_ec) continue;
    f.mtime = mtime_of(it->path());
    f.latest = f.name == latest;
    found.push_back(f);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return found;
}

std::vector<std::string> tail_lines(const std::string& text, size_t count) {
  std::deque<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > count) lines.pop_front();
  }
  return {lines.begin(), lines.end()};
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The run directory's own files are shown in their sections, not again as extras.
bool is_run_file(const std::string& relative) {
  return relative == "config.yaml" || relative == "metrics.jsonl" || relative == "train.log";
}

std::optional<ExtraFile> read_extra(const fs::path& path, const std::string& relative) {
  ExtraFile f;
  f.relative_path = relative;
  if (ends_with(relative, ".png")) {
    f.kind = ExtraFile::Kind::Png;
  } else if (ends_with(relative, ".json")) {
    f.kind = ExtraFile::Kind::Json;
  } else if (ends_with(relative, ".md")) {
    f.kind = ExtraFile::Kind::Text;
  } else {
    return std::nullopt;
  }
  std::error_code ec;
  const std::uintmax_t bytes = fs::file_size(path, ec);
  const std::uintmax_t limit = f.kind == ExtraFile::Kind::Png ? kMaxEmbeddedBytes : kMaxShownBytes;
  if (ec || bytes > limit) {
    f.problem = ec ? "cannot read its size: " + ec.message()
                   : "too large to show (" + std::to_string(bytes) + " bytes); open the file itself";
    return f;
  }
  const auto text = read_file(path);
  if (!text) {
    f.problem = std::string("cannot read: ") + std::strerror(errno);
    return f;
  }
  if (f.kind == ExtraFile::Kind::Json) {
    try {
      f.json = parse_json(*text);
    } catch (const ValueError& e) {
      f.problem = std::string("not valid JSON (it may still be being written): ") + e.what();
    }
  } else {
    f.content = *text;
    if (f.kind == ExtraFile::Kind::Png && f.content.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0)
      f.problem = "not a PNG file";
  }
  return f;
}

// Pictures, JSON and Markdown in the run directory and its folders one level down (where
// `strand analyze --out RUN_DIR/analyze` puts them), except the checkpoint folder.
std::vector<ExtraFile> find_extras(const fs::path& run_dir, const std::string& checkpoint_dir) {
  std::vector<ExtraFile> found;
  std::error_code ec;
  const fs::path ckpt = checkpoint_dir.empty() ? fs::path() : fs::weakly_canonical(checkpoint_dir, ec);
  for (fs::recursive_directory_iterator it(run_dir, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    // An entry that cannot be examined (removed meanwhile) is passed over; `ec` is the walk's own.
    std::error_code entry_ec;
    if (it->is_directory(entry_ec)) {
      if (it.depth() >= 1 || (!ckpt.empty() && fs::weakly_canonical(it->path(), entry_ec) == ckpt) ||
          it->path().filename() == "checkpoints")
        it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(entry_ec)) continue;
    const std::string relative = fs::relative(it->path(), run_dir, entry_ec).generic_string();
    if (entry_ec || is_run_file(relative)) continue;
    if (auto extra = read_extra(it->path(), relative)) found.push_back(std::move(*extra));
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.relative_path < b.relative_path; });
  return found;
}

}  // namespace

std::vector<MetricsRow> parse_metrics_text(const std::string& text, const std::string& file, bool* partial_last_line) {
  std::vector<MetricsRow> rows;
  if (partial_last_line != nullptr) *partial_last_line = false;
  size_t at = 0;
  int64_t line_number = 0;
  while (at < text.size()) {
    ++line_number;
    const size_t newline = text.find('\n', at);
    const bool complete = newline != std::string::npos;
    std::string line = text.substr(at, complete ? newline - at : std::string::npos);
    at = complete ? newline + 1 : text.size();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = file + ":" + std::to_string(line_number);
    try {
      rows.push_back(row_of(parse_json(line), where));
    } catch (const ValueError& e) {
      // The writer appends whole lines and flushes; text after the last newline is one it is
      // still writing, and no prefix of an object line is itself a complete object.
      if (!complete) {
        if (partial_last_line != nullptr) *partial_last_line = true;
        break;
      }
      const std::string what = e.what();
      throw ValueError(what.rfind(where, 0) == 0 ? what : where + ": " + what);
    }
  }
  return rows;
}

RunReport read_run_dir(const std::string& run_dir) {
  RunReport report;
  report.run_dir = run_dir;
  const fs::path dir(run_dir);
  std::error_code ec;
  STRAND_CHECK(fs::exists(dir, ec), ValueError, "report: ", run_dir, ": no such directory");
  STRAND_CHECK(fs::is_directory(dir, ec), ValueError, "report: ", run_dir, ": not a directory");

  const fs::path metrics = dir / "metrics.jsonl";
  if (fs::exists(metrics, ec)) {
    const auto text = read_file(metrics);
    STRAND_CHECK(text.has_value(), ValueError, metrics.string(), ": cannot read: ", std::strerror(errno));
    report.metrics_present = true;
    report.rows = parse_metrics_text(*text, metrics.string(), &report.partial_last_line);
  }
  if (fs::exists(dir / "config.yaml", ec)) report.config_yaml = read_file(dir / "config.yaml");
  if (const auto log = read_file(dir / "train.log"); log && fs::is_regular_file(dir / "train.log", ec)) {
    report.log_present = true;
    report.log_tail = tail_lines(*log, kLogTailLines);
  }
  report.checkpoint_dir = find_checkpoint_dir(dir, report.config_yaml);
  report.checkpoints = list_checkpoints(report.checkpoint_dir);
  report.in_progress = locked_by_a_run(dir);
  report.extras = find_extras(dir, report.checkpoint_dir);
  return report;
}

}  // namespace strand::train
