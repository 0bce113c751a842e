// Stand-in for the CUDA runtime in builds without CUDA: every device call is a clear error.
#include "framework/backend/cuda_runtime.h"
#include "framework/core/error.h"

namespace strand::cuda {
namespace {
[[noreturn]] void absent(const char* what) {
  throw DeviceError(detail::concat(what, ": strand was built without CUDA (configure with STRAND_CUDA=ON "
                                         "on a machine with the CUDA toolkit)"));
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
void* device_malloc(size_t, int) { absent("cuda allocation"); }
void device_free(void*, int) { absent("cuda free"); }
void copy_host_to_device(void*, const void*, size_t, int) { absent("copy to cuda"); }
void copy_device_to_host(void*, const void*, size_t, int) { absent("copy from cuda"); }
void copy_device_to_device(void*, const void*, size_t, int) { absent("cuda copy"); }

}  // namespace strand::cuda
