// CPU emulation of what strand's CUDA kernels use (tests/framework/backend/cuda_ops_emulate.sh):
// a launch runs the grid's blocks one after another, each block as blockDim.x host threads;
// __shared__ is a function-static (one block at a time), __syncthreads a barrier, a warp shuffle
// an exchange through memory between two barriers of the warp. It checks the kernels' index
// arithmetic and reductions, not GPU timing, memory ordering or performance.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>
#define __global__
#define __device__
#define __host__
#define __shared__ static
typedef void* cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t) {
  std::memmove(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy2DAsync(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t h, cudaMemcpyKind,
                                     cudaStream_t) {
  for (size_t r = 0; r < h; ++r) std::memcpy(static_cast<char*>(d) + r * dp, static_cast<const char*>(s) + r * sp, w);
  return cudaSuccess;
}
inline double __longlong_as_double(long long v) {
  double d;
  std::memcpy(&d, &v, 8);
  return d;
}
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(long long a = 1, long long b = 1, long long c = 1)
      : x(static_cast<unsigned>(a)), y(static_cast<unsigned>(b)), z(static_cast<unsigned>(c)) {}
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
namespace emu {
struct Warp {
  std::barrier<> bar{32};
  unsigned char slot[32][8];
};
inline std::barrier<>* block_barrier = nullptr;
inline Warp* warps = nullptr;
struct Cfg {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};
template <class... K, class... A>
void launch(const Cfg& c, void (*kernel)(K...), A&&... args) {
  gridDim = c.grid;
  blockDim = c.block;
  for (unsigned by = 0; by < c.grid.y; ++by)
    for (unsigned bx = 0; bx < c.grid.x; ++bx) {
      std::barrier<> bar(c.block.x);
      block_barrier = &bar;
      std::unique_ptr<Warp[]> ws(new Warp[(c.block.x + 31) / 32]);
      warps = ws.get();
      std::vector<std::thread> ts;
      for (unsigned t = 0; t < c.block.x; ++t)
        ts.emplace_back([&, t] {
          threadIdx = dim3(t, 0, 0);
          blockIdx = dim3(bx, by, 0);
          kernel(args...);
        });
      for (auto& th : ts) th.join();
    }
}
}  // namespace emu
inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }
template <class T>
T __shfl_down_sync(unsigned, T v, int o) {
  emu::Warp& w = emu::warps[threadIdx.x / 32];
  const unsigned lane = threadIdx.x % 32;
  std::memcpy(w.slot[lane], &v, sizeof(T));
  w.bar.arrive_and_wait();
  T r = v;
  if (lane + o < 32) std::memcpy(&r, w.slot[lane + o], sizeof(T));
  w.bar.arrive_and_wait();
  return r;
}
