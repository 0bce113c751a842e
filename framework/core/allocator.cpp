// Caching allocator: one mutex-guarded pool per device, blocks grouped by rounded size.
#include "framework/core/allocator.h"

#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "framework/core/device_runtime.h"
#include "framework/core/error.h"

namespace strand::memory {
namespace {

constexpr int kMaxDevices = 16;  // per device type

// Small blocks round to 512 bytes, large ones to 1 MiB, so that a repeated training step
// finds the same size classes again without wasting much.
size_t size_class(size_t n) {
  if (n == 0) n = 1;
  const size_t unit = n < (1u << 20) ? 512 : (1u << 20);
  return (n + unit - 1) / unit * unit;
}

struct Pool {
  Device device;
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free_blocks;
  Stats st;

  void* raw_alloc(size_t n) { return device_runtime(device.type).allocate(n, device.index); }
  void raw_free(void* p) { device_runtime(device.type).deallocate(p, device.index); }
  void release_cache() {
    for (auto& [sz, blocks] : free_blocks)
      for (void* p : blocks) {
        raw_free(p);
        st.reserved_bytes -= static_cast<int64_t>(sz);
      }
    free_blocks.clear();
  }
};

// The pools are never destroyed: tensors in static storage may be freed after main returns,
// and cached blocks stay reachable (leak checkers do not report them).
Pool& pool(Device d) {
  static Pool* cpu = new Pool{Device::cpu(), {}, {}, {}};
  static Pool* device_pools = new Pool[kDeviceTypes * kMaxDevices];  // per type, per index
  if (d.is_cpu()) return *cpu;
  STRAND_CHECK(d.index >= 0 && d.index < kMaxDevices, DeviceError, "no device ", d.str());
  Pool& p = device_pools[static_cast<size_t>(d.type) * kMaxDevices + static_cast<size_t>(d.index)];
  p.device = d;
  return p;
}

}  // namespace

void* allocate(Device device, size_t nbytes) {
  Pool& p = pool(device);
  const size_t sz = size_class(nbytes);
  std::lock_guard lock(p.mu);
  void* ptr = nullptr;
  auto it = p.free_blocks.find(sz);
  if (it != p.free_blocks.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    ++p.st.cache_hits;
  } else {
    try {
      ptr = p.raw_alloc(sz);
    } catch (const std::bad_alloc&) {
      p.release_cache();  // give the cache back and try once more before failing
      ptr = p.raw_alloc(sz);
    }
    p.st.reserved_bytes += static_cast<int64_t>(sz);
  }
  ++p.st.allocations;
  p.st.current_bytes += static_cast<int64_t>(sz);
  if (p.st.current_bytes > p.st.peak_bytes) p.st.peak_bytes = p.st.current_bytes;
  return ptr;
}

void deallocate(Device device, void* ptr, size_t nbytes) {
  if (!ptr) return;
  Pool& p = pool(device);
  const size_t sz = size_class(nbytes);
  std::lock_guard lock(p.mu);
  p.free_blocks[sz].push_back(ptr);
  p.st.current_bytes -= static_cast<int64_t>(sz);
}

Stats stats(Device device) {
  Pool& p = pool(device);
  std::lock_guard lock(p.mu);
  return p.st;
}

void reset_peak(Device device) {
  Pool& p = pool(device);
  std::lock_guard lock(p.mu);
  p.st.peak_bytes = p.st.current_bytes;
}

void empty_cache(Device device) {
  Pool& p = pool(device);
  std::lock_guard lock(p.mu);
  p.release_cache();
}

}  // namespace strand::memory
