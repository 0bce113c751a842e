// A training run's hold on its directories: an exclusive lock that the kernel releases when the
// process dies, a writability probe at start, and the removal of temp files that writers
// killed mid-write left behind. docs/checkpoint-format.md ("Directories of a run") says more.
#pragma once
#include <string>

#include "framework/core/error.h"

namespace strand::io {

// A directory in use by another run, or one that cannot be written.
struct RunDirError : Error { using Error::Error; };

// Holds DIR/.strand.lock with flock while alive; the file records "pid host" of the holder.
// Creating it when another live process holds the lock is a RunDirError naming `key`, the
// directory and the holder's pid and host. A process that dies releases the lock with it.
class DirectoryLock {
 public:
  DirectoryLock(const std::string& dir, const std::string& key);
  ~DirectoryLock();
  DirectoryLock(DirectoryLock&& other) noexcept;
  DirectoryLock& operator=(DirectoryLock&& other) noexcept;
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Creates `dir` when needed and writes and removes a probe file in it; a RunDirError naming
// `key`, the directory and the reason when either fails (so that a run learns at its start,
// not at its first save, that its checkpoints cannot be written).
void check_writable_dir(const std::string& dir, const std::string& key);

// Removes the ".tmp-*" files in `dir`: partial files of writers that were killed mid-write.
// Call it only with the directory's lock held (no live writer then). Returns how many went.
int remove_stale_temp_files(const std::string& dir);

}  // namespace strand::io
