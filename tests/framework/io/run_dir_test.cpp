// A run's hold on its directories: one live holder per directory (released when the holder
// dies), the writability probe, and the removal of partial files of killed writers.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "framework/io/run_dir.h"
#include "support/temp_dir.h"

namespace strand::io {
namespace {
namespace fs = std::filesystem;

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

std::string run_dir_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const RunDirError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected RunDirError";
  return "";
}

TEST(RunDir, ASecondHolderIsRefusedNamingTheFirst) {
  testing::TempDir tmp;
  const std::string dir = tmp.file("run");
  {
    DirectoryLock first(dir, "run.dir");
    const std::string msg = run_dir_error([&] { DirectoryLock second(dir, "run.dir"); });
    EXPECT_CONTAINS(msg, "run.dir " + dir + ": in use by another strand run (pid " + std::to_string(::getpid()) + " on ");
    EXPECT_CONTAINS(msg, "set another run.dir");
  }
  DirectoryLock again(dir, "run.dir");  // released with the first
  EXPECT_TRUE(fs::exists(again.path()));
}

TEST(RunDir, AHolderThatDiesReleasesTheLock) {
  testing::TempDir tmp;
  const std::string dir = tmp.file("run");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    DirectoryLock held(dir, "run.dir");
    const char byte = 1;
    if (::write(ready[1], &byte, 1) != 1) ::_exit(2);
    ::pause();  // until killed
    ::_exit(0);
  }
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  EXPECT_CONTAINS(run_dir_error([&] { DirectoryLock mine(dir, "run.dir"); }), "(pid " + std::to_string(child) + " on ");
  ::kill(child, SIGKILL);  // as kill -9 or the OOM killer would
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  DirectoryLock mine(dir, "run.dir");
  EXPECT_TRUE(fs::exists(mine.path()));
}

TEST(RunDir, AnUnwritableDirectoryIsFoundByTheProbe) {
  testing::TempDir tmp;
  // A file where a directory should be: no process, root included, can write below it.
  std::ofstream(tmp.file("plain")) << "x";
  const std::string dir = tmp.file("plain") + "/checkpoints";
  EXPECT_CONTAINS(run_dir_error([&] { check_writable_dir(dir, "checkpoint.dir"); }),
                  "checkpoint.dir " + dir + ": cannot create the directory");
  check_writable_dir(tmp.file("ok"), "checkpoint.dir");
  EXPECT_TRUE(fs::is_directory(tmp.file("ok")));
  EXPECT_TRUE(fs::is_empty(tmp.file("ok"))) << "the probe file is removed";
}

TEST(RunDir, OnlyPartialFilesAreRemoved) {
  testing::TempDir tmp;
  for (const char* name : {".tmp-step_00000010.h5-123", ".tmp-latest-123", "step_00000010.h5", "latest", ".strand.lock"})
    std::ofstream(tmp.file(name)) << "x";
  EXPECT_EQ(remove_stale_temp_files(tmp.path.string()), 2);
  EXPECT_FALSE(fs::exists(tmp.file(".tmp-step_00000010.h5-123")));
  EXPECT_FALSE(fs::exists(tmp.file(".tmp-latest-123")));
  for (const char* name : {"step_00000010.h5", "latest", ".strand.lock"}) EXPECT_TRUE(fs::exists(tmp.file(name))) << name;
  EXPECT_EQ(remove_stale_temp_files(tmp.file("absent")), 0);
}

}  // namespace
}  // namespace strand::io
