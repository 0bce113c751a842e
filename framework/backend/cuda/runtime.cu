// CUDA runtime calls for the cuda DeviceRuntime (runtime_api.h); every call's error is checked at once.
#include <cuda_runtime.h>

#include "framework/backend/cuda/runtime_api.h"
#include "framework/core/error.h"

namespace strand::cuda {
namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw DeviceError(detail::concat(what, ": ", cudaGetErrorString(e)));
}
void use(int device) { check(cudaSetDevice(device), "cudaSetDevice"); }
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

void* device_malloc(size_t nbytes, int device) {
  use(device);
  void* p = nullptr;
  check(cudaMalloc(&p, nbytes), "cudaMalloc");
  return p;
}

void device_free(void* ptr, int device) {
  use(device);
  check(cudaFree(ptr), "cudaFree");
}

void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device) {
  use(device);
  check(cudaMemcpy(dst, src, nbytes, cudaMemcpyHostToDevice), "cudaMemcpy host to device");
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device) {
  use(device);
  check(cudaMemcpy(dst, src, nbytes, cudaMemcpyDeviceToHost), "cudaMemcpy device to host");
}

void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device) {
  use(device);
  check(cudaMemcpy(dst, src, nbytes, cudaMemcpyDeviceToDevice), "cudaMemcpy device to device");
}

}  // namespace strand::cuda
