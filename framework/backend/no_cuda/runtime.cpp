// Stand-in for the cuda DeviceRuntime in builds without CUDA: no devices, and every memory or
// copy call is a clear error.
#include "framework/core/device_runtime.h"
#include "framework/core/error.h"

namespace strand::backend {
namespace {

[[noreturn]] void absent(const char* what) {
  throw DeviceError(detail::concat(what, ": strand was built without CUDA (configure with STRAND_CUDA=ON "
                                         "on a machine with the CUDA toolkit)"));
}

class NoCudaRuntime final : public DeviceRuntime {
 public:
  int device_count() const override { return 0; }
  void* allocate(size_t, int) override { absent("cuda allocation"); }
  void deallocate(void*, int) override { absent("cuda free"); }
  void copy_from_host(void*, const void*, size_t, int) override { absent("copy to cuda"); }
  void copy_to_host(void*, const void*, size_t, int) override { absent("copy from cuda"); }
  void copy_within(void*, const void*, size_t, int) override { absent("cuda copy"); }
};

}  // namespace

void register_cuda_runtime() {
  static NoCudaRuntime* runtime = new NoCudaRuntime;
  register_device_runtime(DeviceType::CUDA, *runtime);
}

}  // namespace strand::backend
