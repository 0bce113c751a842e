// Caching allocator: freed blocks are kept per device and size class for reuse; per-device
// counters of bytes in use (current, peak) and held (reserved) are what benchmarks and the trainer read.
#pragma once
#include <cstddef>
#include <cstdint>

#include "framework/core/device.h"

namespace strand::memory {

struct Stats {
  int64_t current_bytes = 0;   // bytes in live blocks
  int64_t peak_bytes = 0;      // highest current_bytes since the last reset_peak
  int64_t reserved_bytes = 0;  // live + cached blocks
  int64_t allocations = 0;     // blocks handed out since start
  int64_t cache_hits = 0;      // of those, served from the cache
};

// Returns a block of at least nbytes, 64-byte aligned. Never returns null; throws on failure.
void* allocate(Device device, size_t nbytes);
// Returns a block to the cache; nbytes must be the size passed to allocate. Never allocates
// and never throws, so that destructors may call it whatever memory is left.
//
// Device blocks (the stream rule): a freed CUDA block is handed out again at once, with no
// wait. That is safe because every kernel and copy of a device runs on its one compute stream
// (backend/cuda/runtime_api.h, Note [One compute stream]): the next user of the block is queued
// behind the work still reading it. Work on any other stream must be joined back into the
// compute stream (an event) before the tensors it uses are freed. docs/cuda.md says more.
void deallocate(Device device, void* ptr, size_t nbytes) noexcept;

Stats stats(Device device);
void reset_peak(Device device);
// Releases every cached block of the device back to the system.
void empty_cache(Device device);

}  // namespace strand::memory
