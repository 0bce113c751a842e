// The CUDA runtime calls behind the cuda DeviceRuntime and the CUDA kernels, as a plain C++17 API:
// runtime.cu (nvcc, C++17) defines them, device_runtime.cpp and the launchers (host C++20) call
// them; streams and events travel as opaque pointers so that no caller needs cuda_runtime.h.
//
// Note [One compute stream]: every kernel, library call (cuBLASLt) and copy of device d runs on
// compute_stream(d), in issue order. The caching allocator relies on it: a block freed while
// kernels that use it are still queued may be handed out again at once, because whatever uses
// it next is queued behind them on the same stream. Work put on any other stream must be joined
// back (record_event on that stream, stream_wait_event on the compute stream) before the
// tensors it touches are released.
#pragma once
#include <cstddef>

namespace strand::cuda {

int device_count();  // 0 where no GPU is visible
// cudaMalloc; std::bad_alloc when the device is out of memory (the caching allocator then
// empties its cache and tries again), DeviceError naming the call for any other failure.
void* device_malloc(size_t nbytes, int device);
void device_free(void* ptr, int device);

// Host <-> device copies go through a cached pinned staging buffer on the compute stream and
// return when the copy is complete (the host buffer may be reused at once).
void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device);
// Stream-ordered on the compute stream; returns at once.
void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device);
// dst[0 .. nbytes) = byte value, stream-ordered on the compute stream.
void fill_bytes(void* dst, int value, size_t nbytes, int device);

// The device's compute stream (a cudaStream_t), made on first use and kept for the program.
void* compute_stream(int device);
// Makes `device` current for the calling thread (cudaSetDevice).
void set_device(int device);
// Waits until everything queued on the device's compute stream has finished.
void synchronize(int device);

// Side streams and events (a cudaStream_t / cudaEvent_t each), for work beside the compute
// stream (Note [One compute stream]).
void* create_stream(int device);
void destroy_stream(void* stream, int device);
void* create_event(int device);
void destroy_event(void* event, int device);
void record_event(void* event, void* stream);
void stream_wait_event(void* stream, void* event);
void event_synchronize(void* event);

// Throws DeviceError naming `kernel` when the last kernel launch failed (cudaGetLastError).
void check_launch(const char* kernel);

}  // namespace strand::cuda
