// `strand report RUN_DIR [--out FILE]`: one self-contained HTML page of a run (curves, config,
// checkpoints, the analyze and prune outputs in the directory), also of a run still in progress.
// The reading and the page are framework/train/report.h; docs/report.md shows the page.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "framework/core/error.h"
#include "framework/train/report.h"
#include "framework/train/run_log.h"
#include "launch/commands.h"

namespace strand::launch {

namespace {

struct ReportArgs {
  std::string run_dir;
  std::string out;  // "": RUN_DIR/report.html
};

// Through a temporary file and a rename, so that a browser reloading the page while a new one is
// written sees the old page or the new one, never half of one.
void write_page(const std::string& path, const std::string& html) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  STRAND_CHECK(f != nullptr, ValueError, "report: --out ", path, ": cannot write: ", std::strerror(errno));
  const bool written = std::fwrite(html.data(), 1, html.size(), f) == html.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed) {
    std::remove(tmp.c_str());
    throw ValueError("report: --out " + path + ": write failed: " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw ValueError("report: --out " + path + ": " + ec.message());
  }
}

void run_report(const ReportArgs& args) {
  const train::RunReport report = train::read_run_dir(args.run_dir);
  const std::string out =
      args.out.empty() ? (std::filesystem::path(args.run_dir) / "report.html").string() : args.out;
  write_page(out, train::report_html(report, train::utc_timestamp()));
  std::printf("report: wrote %s (%zu metrics lines, %zu checkpoints, %zu other files)\n", out.c_str(),
              report.rows.size(), report.checkpoints.size(), report.extras.size());
  std::fflush(stdout);
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Write one self-contained HTML page of a run: curves, config, checkpoints, analyze/prune outputs");
  cmd->add_option("run_dir", args->run_dir, "Run directory (run.dir of the training config)")->required();
  cmd->add_option("--out", args->out, "HTML file to write (default RUN_DIR/report.html)");
  // Errors go to main's guarded runner: one line "strand: error: ...", non-zero exit.
  cmd->callback([args]() { run_report(*args); });
}

}  // namespace strand::launch
