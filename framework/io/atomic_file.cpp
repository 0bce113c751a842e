// Temp-file + fsync + rename commit, the one way checkpoint files and `latest` reach disk.
#include "framework/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace strand::io {
namespace {

// fsync through a read-only descriptor: Linux flushes the file's (or directory's) dirty pages.
void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw CheckpointError(path + ": cannot open to flush: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw CheckpointError(path + ": cannot flush to disk: " + std::strerror(err));
}

std::string directory_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

std::string temp_path_for(const std::string& final_path) {
  const std::filesystem::path p(final_path);
  const std::string name = ".tmp-" + p.filename().string() + "-" + std::to_string(::getpid());
  return (p.parent_path() / name).string();
}

void commit_file(const std::string& temp_path, const std::string& final_path) {
  try {
    fsync_path(temp_path, false);
    if (std::rename(temp_path.c_str(), final_path.c_str()) != 0)
      throw CheckpointError(final_path + ": cannot rename " + temp_path + " into place: " + std::strerror(errno));
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(temp_path, ignored);
    throw;
  }
  // The rename is durable once the directory entry is flushed.
  fsync_path(directory_of(final_path), true);
}

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string temp = temp_path_for(path);
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temp, ignored);
      throw CheckpointError(path + ": cannot write " + temp);
    }
  }
  commit_file(temp, path);
}

}  // namespace strand::io
