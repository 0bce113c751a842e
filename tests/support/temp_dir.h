// A fresh directory per test (named after the test and the process), removed afterwards; and
// the files of a directory with a given name prefix (temp files, spill files).
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace strand::testing {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix = "strand") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = std::filesystem::temp_directory_path() /
           (prefix + "_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// The paths of the files in `dir` whose names start with `prefix` (".tmp-", "spill-"); none
// when `dir` does not exist.
inline std::vector<std::string> files_starting_with(const std::filesystem::path& dir, const std::string& prefix) {
  std::vector<std::string> found;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().rfind(prefix, 0) == 0) found.push_back(it->path().string());
  return found;
}

}  // namespace strand::testing
