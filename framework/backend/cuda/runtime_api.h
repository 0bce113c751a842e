// The CUDA runtime calls behind the cuda DeviceRuntime, as a plain C++17 API: runtime.cu (nvcc,
// C++17) defines them, device_runtime.cpp (host C++20) wraps them in the DeviceRuntime
// interface of framework/core/device_runtime.h, which nvcc cannot compile.
#pragma once
#include <cstddef>

namespace strand::cuda {

int device_count();  // 0 where no GPU is visible
void* device_malloc(size_t nbytes, int device);
void device_free(void* ptr, int device);
void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device);

}  // namespace strand::cuda
