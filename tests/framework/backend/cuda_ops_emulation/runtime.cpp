// The runtime_api.h calls over host memory, for the CPU emulation of the CUDA kernels
// (tests/framework/backend/cuda_ops_emulate.sh): one device whose memory is the host's.
#include <cstdlib>
#include <cstring>
#include <new>
#include "framework/backend/cuda/runtime_api.h"
#include "framework/core/error.h"
namespace strand::cuda {
int device_count() { return 1; }
void* device_malloc(size_t n, int) { void* p = std::aligned_alloc(256, (n + 255) / 256 * 256); if (!p) throw std::bad_alloc(); std::memset(p, 0xAB, n); return p; }
void device_free(void* p, int) { std::free(p); }
void copy_host_to_device(void* d, const void* s, size_t n, int) { std::memcpy(d, s, n); }
void copy_device_to_host(void* d, const void* s, size_t n, int) { std::memcpy(d, s, n); }
void copy_device_to_device(void* d, const void* s, size_t n, int) { std::memmove(d, s, n); }
void fill_bytes(void* d, int v, size_t n, int) { std::memset(d, v, n); }
void* compute_stream(int) { return nullptr; }
void set_device(int) {}
void synchronize(int) {}
void* create_stream(int) { return nullptr; }
void destroy_stream(void*, int) {}
void* create_event(int) { return nullptr; }
void destroy_event(void*, int) {}
void record_event(void*, void*) {}
void stream_wait_event(void*, void*) {}
void event_synchronize(void*) {}
void check_launch(const char*) {}
}
