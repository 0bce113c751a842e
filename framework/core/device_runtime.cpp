// The table of device runtimes, filled by the backends on first use.
#include "framework/core/device_runtime.h"

#include <array>

#include "framework/core/error.h"

namespace strand {
namespace {

std::array<DeviceRuntime*, kDeviceTypes>& runtimes() {
  static std::array<DeviceRuntime*, kDeviceTypes> table{};
  return table;
}

}  // namespace

void register_device_runtime(DeviceType type, DeviceRuntime& runtime) {
  runtimes()[static_cast<size_t>(type)] = &runtime;
}

DeviceRuntime& device_runtime(DeviceType type) {
  ensure_backends_registered();
  DeviceRuntime* rt = runtimes()[static_cast<size_t>(type)];
  STRAND_CHECK(rt, DeviceError, "no runtime registered for device type ", static_cast<int>(type));
  return *rt;
}

}  // namespace strand
