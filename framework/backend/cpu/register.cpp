// Registers the CPU implementation of every kernel family with the device seam (registry.h).
#include "framework/backend/registry.h"

namespace strand::backend {

void register_cpu_kernels() {
  // One register_kernel<FamilyParams>(DeviceType::CPU, &cpu::family) line per kernel family.
}

}  // namespace strand::backend
