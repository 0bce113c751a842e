// Test helpers for training runs: metrics.jsonl read back as numbers, two checkpoints compared
// bit for bit (model, optimizer moments, trainer state), and the built `strand` program run as
// a subprocess.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "framework/io/checkpoint.h"

namespace strand::testing_support {

// One metrics.jsonl line: key -> number (nullopt for null). The writer emits a flat object of
// numbers and nulls only, so this small reader is all it takes.
using MetricsRow = std::map<std::string, std::optional<double>>;

inline MetricsRow parse_metrics_line(const std::string& line) {
  MetricsRow row;
  size_t at = 0;
  while ((at = line.find('"', at)) != std::string::npos) {
    const size_t end = line.find('"', at + 1);
    const std::string key = line.substr(at + 1, end - at - 1);
    size_t value = line.find(':', end) + 1;
    while (line[value] == ' ') ++value;
    if (line.compare(value, 4, "null") == 0) {
      row[key] = std::nullopt;
    } else {
      row[key] = std::strtod(line.c_str() + value, nullptr);
    }
    at = line.find_first_of(",}", value) + 1;
  }
  return row;
}

inline std::vector<MetricsRow> read_metrics(const std::string& path) {
  std::vector<MetricsRow> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(parse_metrics_line(line));
  }
  return rows;
}

// step -> the value of `key` (a number on every line) of every line of a metrics file.
inline std::map<int64_t, double> metric_by_step(const std::string& path, const std::string& key) {
  std::map<int64_t, double> values;
  for (const MetricsRow& row : read_metrics(path)) {
    const auto found = row.find(key);
    EXPECT_TRUE(found != row.end() && found->second.has_value()) << path << ": step " << *row.at("step") << ": " << key;
    if (found != row.end() && found->second) values[static_cast<int64_t>(*row.at("step"))] = *found->second;
  }
  return values;
}

// step -> loss of every line of a metrics file.
inline std::map<int64_t, double> losses_by_step(const std::string& path) { return metric_by_step(path, "loss"); }

// step -> the gradient norm before clipping (the summed gradient of every rank, before the
// optimizer step) of every line of a metrics file. A gradient scaled by a constant, e.g.
// normalised by a rank's own token count instead of the global one, leaves losses and AdamW's
// steps nearly as they are but shows here.
inline std::map<int64_t, double> grad_norms_by_step(const std::string& path) {
  return metric_by_step(path, "grad_norm");
}

inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.is_contiguous() && b.is_contiguous() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

inline void expect_groups_identical(const io::CheckpointGroup& a, const io::CheckpointGroup& b, const char* group) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size()) << group;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].first, b.tensors[i].first) << group;
    EXPECT_TRUE(same_bits(a.tensors[i].second, b.tensors[i].second)) << group << "/" << a.tensors[i].first;
  }
  EXPECT_EQ(a.int64s, b.int64s) << group;
  EXPECT_EQ(a.uint64s, b.uint64s) << group;
}

// Model weights, AdamW moments and step, and the trainer's step, tokens and loader position,
// bit for bit. (The config attribute differs when the runs' directories differ.)
inline void expect_checkpoints_identical(const std::string& path_a, const std::string& path_b) {
  const io::CheckpointData a = io::read_checkpoint(path_a);
  const io::CheckpointData b = io::read_checkpoint(path_b);
  expect_groups_identical(a.model, b.model, "model");
  expect_groups_identical(a.optimizer, b.optimizer, "optimizer");
  for (const char* key : {"step", "tokens_seen", "loader_position"}) {
    EXPECT_EQ(a.trainer.get_ints(key), b.trainer.get_ints(key)) << "trainer/" << key;
  }
}

// The `strand` program of this build: STRAND_BIN when set, else BUILD/strand beside BUILD/tests/
// where this test program lives.
inline std::string strand_binary() {
  if (const char* env = std::getenv("STRAND_BIN")) return env;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  return (self.parent_path().parent_path() / "strand").string();
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CommandResult {
  int exit_code = -1;  // the exit status, or 128 + signal when killed
  std::string out, err;
  // Non-empty lines of stderr.
  std::vector<std::string> error_lines() const {
    std::vector<std::string> lines;
    std::istringstream in(err);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) lines.push_back(line);
    }
    return lines;
  }
};

// Runs a shell command line with stdout and stderr captured in files under `dir`.
inline CommandResult run_command(const std::string& command, const std::filesystem::path& dir) {
  const std::string out = (dir / "cmd.out").string(), err = (dir / "cmd.err").string();
  const int status = std::system((command + " >" + out + " 2>" + err + " </dev/null").c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

// The one error line of a failed command: a non-zero exit and exactly one non-empty stderr
// line, starting "strand: error: " (each checked); that line, or "" when there is none.
inline std::string one_error_line(const CommandResult& r) {
  EXPECT_NE(r.exit_code, 0);
  const auto lines = r.error_lines();
  EXPECT_EQ(lines.size(), 1u) << r.err;
  if (lines.empty()) return "";
  EXPECT_EQ(lines[0].rfind("strand: error: ", 0), 0u) << lines[0];
  return lines[0];
}

}  // namespace strand::testing_support
