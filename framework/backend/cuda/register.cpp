// Registers the CUDA implementation of each kernel family with the device seam (registry.h).
// A .cpp (host C++20) that names the launchers the .cu files define.
#include "framework/backend/registry.h"

namespace strand::backend {

void register_cuda_kernels() {
  // One register_kernel<FamilyParams>(DeviceType::CUDA, &cuda::family) line per kernel family.
}

}  // namespace strand::backend
