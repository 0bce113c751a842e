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

// The blocks of one size class. Note [No allocation on free]: `free` always has room for every
// block of the class that exists (`blocks`), reserved when a block is made, so that
// deallocate — called from destructors — never allocates and so never throws.
struct SizeClass {
  std::vector<void*> free;
  size_t blocks = 0;  // live + cached blocks of this class
};

struct Pool {
  Device device;
  std::mutex mu;
  std::map<size_t, SizeClass> classes;
  Stats st;

  void* raw_alloc(size_t n) { return device_runtime(device.type).allocate(n, device.index); }
  void raw_free(void* p) { device_runtime(device.type).deallocate(p, device.index); }
  // Entries and their reserved room stay: live blocks of each class still come back.
  void release_cache() {
    for (auto& [sz, c] : classes) {
      for (void* p : c.free) {
        raw_free(p);
        st.reserved_bytes -= static_cast<int64_t>(sz);
      }
      c.blocks -= c.free.size();
      c.free.clear();
    }
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
  SizeClass& c = p.classes[sz];
  if (!c.free.empty()) {
    ptr = c.free.back();
    c.free.pop_back();
    ++p.st.cache_hits;
  } else {
    // Room for this block's return first (Note [No allocation on free]), doubling as a
    // vector would, so that many blocks of one class cost amortised constant time.
    if (c.free.capacity() < c.blocks + 1) c.free.reserve(2 * (c.blocks + 1));
    try {
      ptr = p.raw_alloc(sz);
    } catch (const std::bad_alloc&) {
      p.release_cache();  // give the cache back and try once more before failing
      ptr = p.raw_alloc(sz);
    }
    ++c.blocks;
    p.st.reserved_bytes += static_cast<int64_t>(sz);
  }
  ++p.st.allocations;
  p.st.current_bytes += static_cast<int64_t>(sz);
  if (p.st.current_bytes > p.st.peak_bytes) p.st.peak_bytes = p.st.current_bytes;
  return ptr;
}

void deallocate(Device device, void* ptr, size_t nbytes) noexcept {
  if (!ptr) return;
  Pool& p = pool(device);  // the pool exists: it made this block
  const size_t sz = size_class(nbytes);
  std::lock_guard lock(p.mu);
  // The class exists and has room (Note [No allocation on free]): neither line allocates.
  SizeClass& c = p.classes.find(sz)->second;
  c.free.push_back(ptr);
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
