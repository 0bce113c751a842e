// The device seam for kernels: each kernel family has one plain parameter struct (first field
// `Device device`) and one device-neutral entry point that calls `launch`; each backend
// registers its implementation of that struct once (backend/<device>/register.cpp). What a
// new device touches is listed in docs/architecture.md ("Adding an op touches four places").
#pragma once
#include <array>
#include <cstddef>

#include "framework/core/device.h"
#include "framework/core/device_runtime.h"
#include "framework/core/error.h"

namespace strand::backend {

// The implementation of the kernel taking `Params`, per device type (null: none registered).
template <class Params>
struct KernelSlot {
  using Fn = void (*)(const Params&);
  static inline std::array<Fn, kDeviceTypes> fns{};
};

// Called by a backend's registration function for each kernel it implements.
template <class Params>
void register_kernel(DeviceType type, void (*fn)(const Params&)) {
  KernelSlot<Params>::fns[static_cast<size_t>(type)] = fn;
}

// Runs kernel `name` on p.device; a DeviceError naming the kernel and the device when no
// backend built into this program implements it there.
template <class Params>
void launch(const char* name, const Params& p) {
  ensure_backends_registered();  // core/device_runtime.h
  const auto fn = KernelSlot<Params>::fns[static_cast<size_t>(p.device.type)];
  if (!fn) throw DeviceError(detail::concat(name, ": no kernel for device ", p.device.str(),
                                            " in this build"));
  fn(p);
}

}  // namespace strand::backend
