// Checkpoint directory bookkeeping: naming, the `latest` pointer, keep-N pruning, resume.
#include "framework/io/checkpoint_dir.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace strand::io {
namespace fs = std::filesystem;
namespace {

constexpr const char* kLatest = "latest";

// step_00000020.h5 -> 20; anything else (temp files, `latest`, other names) -> nullopt.
std::optional<int64_t> step_of(const std::string& filename) {
  constexpr std::string_view prefix = "step_", suffix = ".h5";
  if (filename.size() <= prefix.size() + suffix.size() || filename.rfind(prefix, 0) != 0 ||
      filename.compare(filename.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  const std::string digits = filename.substr(prefix.size(), filename.size() - prefix.size() - suffix.size());
  if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return std::nullopt;
  return std::stoll(digits);
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

CheckpointDir::CheckpointDir(std::string dir, int64_t keep)
    : dir_(dir.empty() ? std::string(".") : std::move(dir)), keep_(keep) {
  if (keep_ < 0) throw CheckpointError(detail::concat(dir_, ": checkpoint keep must be >= 0, got ", keep_));
}

std::string CheckpointDir::path_for_step(int64_t step) const {
  if (step < 0) throw CheckpointError(dir_ + ": checkpoint step must be >= 0, got " + std::to_string(step));
  char name[40];
  std::snprintf(name, sizeof name, "step_%08" PRId64 ".h5", step);
  return (fs::path(dir_) / name).string();
}

std::vector<std::pair<int64_t, std::string>> CheckpointDir::list() const {
  std::vector<std::pair<int64_t, std::string>> files;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return files;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    if (auto step = step_of(entry.path().filename().string())) files.emplace_back(*step, entry.path().string());
  }
  if (ec) throw CheckpointError(dir_ + ": cannot list the checkpoint directory: " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

std::optional<std::string> CheckpointDir::latest() const {
  const fs::path pointer = fs::path(dir_) / kLatest;
  std::error_code ec;
  if (fs::exists(pointer, ec)) {
    std::ifstream in(pointer);
    std::stringstream text;
    text << in.rdbuf();
    const std::string name = trim(text.str());
    if (!in || name.empty()) throw CheckpointError(pointer.string() + ": empty or unreadable latest pointer");
    const fs::path target = fs::path(name).is_absolute() ? fs::path(name) : fs::path(dir_) / name;
    if (!fs::exists(target, ec))
      throw CheckpointError(pointer.string() + ": names " + name + ", which does not exist");
    return target.string();
  }
  // No pointer (a directory assembled by hand): the highest step is the newest.
  const auto files = list();
  if (files.empty()) return std::nullopt;
  return files.back().second;
}

std::string CheckpointDir::save(int64_t step, const CheckpointData& data) const {
  const std::string path = path_for_step(step);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw CheckpointError(dir_ + ": cannot create the checkpoint directory: " + ec.message());
  write_checkpoint(path, data);
  // `latest` moves only once the file it names is complete on disk.
  write_text_atomically((fs::path(dir_) / kLatest).string(), fs::path(path).filename().string() + "\n");
  prune();
  return path;
}

void CheckpointDir::prune() const {
  if (keep_ == 0) return;
  const auto files = list();
  const std::optional<std::string> newest = latest();
  int64_t excess = static_cast<int64_t>(files.size()) - keep_;
  for (const auto& [step, path] : files) {
    if (excess <= 0) break;
    if (newest && fs::equivalent(*newest, path)) continue;  // never the one `latest` names
    std::error_code ec;
    fs::remove(path, ec);
    if (ec) throw CheckpointError(path + ": cannot delete this old checkpoint: " + ec.message());
    --excess;
  }
}

std::optional<std::string> resolve_resume(const std::string& resume, const std::string& dir) {
  if (resume == "none") return std::nullopt;
  if (resume == "auto") return CheckpointDir(dir, 0).latest();
  if (resume.empty()) throw CheckpointError("checkpoint.resume is empty: expected auto, none or a path");
  std::error_code ec;
  if (!fs::exists(resume, ec))
    throw CheckpointError(resume + ": checkpoint.resume names a path that does not exist");
  if (fs::is_directory(resume, ec)) {
    auto found = CheckpointDir(resume, 0).latest();
    if (!found) throw CheckpointError(resume + ": checkpoint.resume names a directory that holds no checkpoint");
    return found;
  }
  return resume;
}

}  // namespace strand::io
