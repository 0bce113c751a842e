// The cuda DeviceRuntime: the interface of framework/core/device_runtime.h over the plain calls
// that runtime.cu makes to the CUDA runtime.
#include "framework/backend/cuda/runtime_api.h"
#include "framework/core/device_runtime.h"

namespace strand::cuda {
namespace {

class CudaRuntime final : public DeviceRuntime {
 public:
  int device_count() const override { return cuda::device_count(); }
  void* allocate(size_t nbytes, int index) override { return device_malloc(nbytes, index); }
  void deallocate(void* ptr, int index) override { device_free(ptr, index); }
  void copy_from_host(void* dst, const void* src, size_t nbytes, int index) override {
    copy_host_to_device(dst, src, nbytes, index);
  }
  void copy_to_host(void* dst, const void* src, size_t nbytes, int index) override {
    copy_device_to_host(dst, src, nbytes, index);
  }
  void copy_within(void* dst, const void* src, size_t nbytes, int index) override {
    copy_device_to_device(dst, src, nbytes, index);
  }
};

}  // namespace
}  // namespace strand::cuda

namespace strand::backend {

void register_cuda_runtime() {
  static cuda::CudaRuntime* runtime = new cuda::CudaRuntime;  // never destroyed: blocks may be freed after main
  register_device_runtime(DeviceType::CUDA, *runtime);
}

}  // namespace strand::backend
