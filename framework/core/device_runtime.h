// The device runtime interface: what the tensor core asks of a device (memory, copies, count).
// One runtime per device type, registered by its backend through the one list of backends
// (framework/backend/backends.cpp); the core reaches devices only through this interface.
#pragma once
#include <cstddef>

#include "framework/core/device.h"

namespace strand {

inline constexpr size_t kDeviceTypes = 2;  // DeviceType::CPU, DeviceType::CUDA

class DeviceRuntime {
 public:
  virtual ~DeviceRuntime() = default;
  // Devices of this type visible to the process (0 where the backend is absent).
  virtual int device_count() const = 0;
  // A block of nbytes on device `index`; throws std::bad_alloc when out of memory (the caching
  // allocator then frees its cache and tries once more) and DeviceError for other failures.
  virtual void* allocate(size_t nbytes, int index) = 0;
  virtual void deallocate(void* ptr, int index) = 0;
  // Copies of nbytes between host memory and device `index`, and within the device.
  virtual void copy_from_host(void* dst, const void* host_src, size_t nbytes, int index) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, size_t nbytes, int index) = 0;
  virtual void copy_within(void* dst, const void* src, size_t nbytes, int index) = 0;
};

// The runtime of a device type; every type has one (a stand-in where the backend is not built,
// whose calls are a DeviceError saying so).
DeviceRuntime& device_runtime(DeviceType type);
inline int device_count(DeviceType type) { return device_runtime(type).device_count(); }

// Called once per device type by the backend's registration (backends.cpp); the runtime lives
// for the rest of the program.
void register_device_runtime(DeviceType type, DeviceRuntime& runtime);

// Registers every backend built into the program, once (defined by the one list of backends,
// framework/backend/backends.cpp: the core declares it and calls it; it includes no backend).
void ensure_backends_registered();

}  // namespace strand
