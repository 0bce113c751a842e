// The CUDA runtime calls the core needs (memory and copies). backend/cuda implements them;
// backend/no_cuda is the stand-in CMake picks when CUDA is absent: it reports "built without CUDA".
#pragma once
#include <cstddef>

namespace strand::cuda {

bool built_with_cuda();
int device_count();  // 0 where the backend is absent or no GPU is visible
void* device_malloc(size_t nbytes, int device);
void device_free(void* ptr, int device);
void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device);

}  // namespace strand::cuda
