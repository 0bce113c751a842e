// Storage: one allocation shared by a tensor and its views, with the version counter that
// in-place writes bump (autograd compares it to detect a saved tensor modified in place).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "framework/core/device.h"

namespace strand {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace strand
