// Directory lock (flock), writability probe and stale temp-file removal for a run's directories.
#include "framework/io/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace strand::io {
namespace fs = std::filesystem;
namespace {

constexpr const char* kLockName = ".strand.lock";

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "an unknown host";
  return name;
}

void create_dir(const std::string& dir, const std::string& key) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw RunDirError(key + " " + dir + ": cannot create the directory (" + ec.message() + ")");
}

}  // namespace

DirectoryLock::DirectoryLock(const std::string& dir, const std::string& key) {
  create_dir(dir, key);
  path_ = (fs::path(dir) / kLockName).string();
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RunDirError(key + " " + dir + ": cannot open the lock file " + path_ + " (" + std::strerror(errno) + ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::ifstream in(path_);
    std::string pid, host;
    in >> pid >> host;
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK)
      throw RunDirError(key + " " + dir + ": cannot lock " + path_ + " (" + std::strerror(err) + ")");
    throw RunDirError(key + " " + dir + ": in use by another strand run (pid " + (pid.empty() ? "?" : pid) + " on " +
                      (host.empty() ? "an unknown host" : host) + "); wait for it or stop it, or set another " + key);
  }
  // The holder's name, for the message a second run prints.
  const std::string holder = std::to_string(::getpid()) + " " + host_name() + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, holder.data(), holder.size(), 0) != static_cast<ssize_t>(holder.size())) {
    // The lock holds all the same; only the message of a second run would lack the holder.
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

DirectoryLock::DirectoryLock(DirectoryLock&& other) noexcept : path_(std::move(other.path_)), fd_(other.fd_) {
  other.fd_ = -1;
}

DirectoryLock& DirectoryLock::operator=(DirectoryLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void check_writable_dir(const std::string& dir, const std::string& key) {
  create_dir(dir, key);
  const std::string probe = (fs::path(dir) / (".probe-" + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw RunDirError(key + " " + dir + ": cannot write there (" + std::strerror(errno) + ")");
  ::close(fd);
  std::error_code ec;
  fs::remove(probe, ec);
}

int remove_stale_temp_files(const std::string& dir) {
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().rfind(".tmp-", 0) != 0) continue;
    std::error_code rm;
    if (fs::remove(it->path(), rm)) ++removed;
  }
  return removed;
}

}  // namespace strand::io
