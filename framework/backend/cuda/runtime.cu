// CUDA runtime calls for the cuda DeviceRuntime and the kernels (runtime_api.h): the compute
// stream of each device, side streams and events, pinned staging of host copies. Every call's
// error is checked at once and becomes a DeviceError naming the call.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>

#include "framework/backend/cuda/runtime_api.h"
#include "framework/core/error.h"

namespace strand::cuda {
namespace {

constexpr int kMaxDevices = 16;
// Host copies move through the pinned buffer in chunks of this size: large enough for the
// copy engine's full rate, small enough to keep per device for the whole run.
constexpr size_t kStagingBytes = size_t{8} << 20;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw DeviceError(detail::concat(what, ": ", cudaGetErrorString(e)));
}

void use(int device) {
  if (device < 0 || device >= kMaxDevices) throw DeviceError(detail::concat("no device cuda:", device));
  check(cudaSetDevice(device), "cudaSetDevice");
}

// Per-device state made on first use and kept for the program (blocks and copies may still
// arrive after main returns).
struct DeviceState {
  std::once_flag stream_once;
  cudaStream_t stream = nullptr;
  std::mutex staging_mu;  // one host copy at a time uses the staging buffer
  void* staging = nullptr;
};

DeviceState& state(int device) {
  static DeviceState* states = new DeviceState[kMaxDevices];
  return states[device];
}

cudaStream_t stream_of(int device) {
  DeviceState& s = state(device);
  // A blocking stream (not cudaStreamNonBlocking): work that some library still puts on the
  // legacy default stream stays ordered with it; side streams are made non-blocking instead.
  std::call_once(s.stream_once, [&] { check(cudaStreamCreate(&s.stream), "cudaStreamCreate"); });
  return s.stream;
}

void* staging_buffer(DeviceState& s) {
  if (!s.staging) check(cudaHostAlloc(&s.staging, kStagingBytes, cudaHostAllocPortable), "cudaHostAlloc");
  return s.staging;
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error here, just no devices
    return 0;
  }
  return n;
}

void* device_malloc(size_t nbytes, int device) {
  use(device);
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, nbytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // clear it: out of memory is recoverable (the allocator retries)
    throw std::bad_alloc();
  }
  check(e, "cudaMalloc");
  return p;
}

void device_free(void* ptr, int device) {
  use(device);
  check(cudaFree(ptr), "cudaFree");  // cudaFree waits for the device: no queued kernel still uses ptr
}

void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  use(device);
  DeviceState& s = state(device);
  cudaStream_t st = stream_of(device);
  std::lock_guard lock(s.staging_mu);
  char* pinned = static_cast<char*>(staging_buffer(s));
  for (size_t done = 0; done < nbytes; done += kStagingBytes) {
    const size_t len = std::min(kStagingBytes, nbytes - done);
    std::memcpy(pinned, static_cast<const char*>(src) + done, len);
    check(cudaMemcpyAsync(static_cast<char*>(dst) + done, pinned, len, cudaMemcpyHostToDevice, st),
          "cudaMemcpyAsync host to device");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize after a host to device copy");  // the buffer is refilled next
  }
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  use(device);
  DeviceState& s = state(device);
  cudaStream_t st = stream_of(device);
  std::lock_guard lock(s.staging_mu);
  char* pinned = static_cast<char*>(staging_buffer(s));
  for (size_t done = 0; done < nbytes; done += kStagingBytes) {
    const size_t len = std::min(kStagingBytes, nbytes - done);
    check(cudaMemcpyAsync(pinned, static_cast<const char*>(src) + done, len, cudaMemcpyDeviceToHost, st),
          "cudaMemcpyAsync device to host");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize after a device to host copy");
    std::memcpy(static_cast<char*>(dst) + done, pinned, len);
  }
}

void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  use(device);
  check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream_of(device)),
        "cudaMemcpyAsync device to device");
}

void fill_bytes(void* dst, int value, size_t nbytes, int device) {
  if (nbytes == 0) return;
  use(device);
  check(cudaMemsetAsync(dst, value, nbytes, stream_of(device)), "cudaMemsetAsync");
}

void* compute_stream(int device) {
  use(device);
  return stream_of(device);
}

void set_device(int device) { use(device); }

void synchronize(int device) {
  use(device);
  check(cudaStreamSynchronize(stream_of(device)), "cudaStreamSynchronize");
}

void* create_stream(int device) {
  use(device);
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  return s;
}

void destroy_stream(void* stream, int device) {
  use(device);
  check(cudaStreamDestroy(static_cast<cudaStream_t>(stream)), "cudaStreamDestroy");
}

void* create_event(int device) {
  use(device);
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  return e;
}

void destroy_event(void* event, int device) {
  use(device);
  check(cudaEventDestroy(static_cast<cudaEvent_t>(event)), "cudaEventDestroy");
}

void record_event(void* event, void* stream) {
  check(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)), "cudaEventRecord");
}

void stream_wait_event(void* stream, void* event) {
  check(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), static_cast<cudaEvent_t>(event), 0),
        "cudaStreamWaitEvent");
}

void event_synchronize(void* event) {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(event)), "cudaEventSynchronize");
}

void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw DeviceError(detail::concat(kernel, ": kernel launch: ", cudaGetErrorString(e)));
}

}  // namespace strand::cuda
