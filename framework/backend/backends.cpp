// The one list of backends built into the program: each registers its device runtime and its
// kernels here, once. A new device adds its two lines.
#include "framework/core/device_runtime.h"

namespace strand {
namespace backend {

void register_cpu_runtime();   // backend/cpu/runtime.cpp
void register_cpu_kernels();   // backend/cpu/register.cpp
void register_cuda_runtime();  // backend/cuda/device_runtime.cpp, or the no_cuda stand-in
void register_cuda_kernels();  // backend/cuda/register.cpp, or the no_cuda stand-in (none)

}  // namespace backend

void ensure_backends_registered() {
  using namespace backend;
  static const bool registered =
      (register_cpu_runtime(), register_cpu_kernels(), register_cuda_runtime(), register_cuda_kernels(), true);
  (void)registered;
}

}  // namespace strand
