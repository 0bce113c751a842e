// The cpu device runtime: host memory (64-byte aligned) and memcpy.
#include <cstdlib>
#include <cstring>
#include <new>

#include "framework/core/device_runtime.h"

namespace strand::cpu {
namespace {

constexpr size_t kAlign = 64;

class CpuRuntime final : public DeviceRuntime {
 public:
  int device_count() const override { return 1; }
  void* allocate(size_t nbytes, int) override {
    // aligned_alloc wants a multiple of the alignment; the caching allocator's size classes are.
    void* p = std::aligned_alloc(kAlign, (nbytes + kAlign - 1) / kAlign * kAlign);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* ptr, int) override { std::free(ptr); }
  void copy_from_host(void* dst, const void* src, size_t nbytes, int) override { std::memcpy(dst, src, nbytes); }
  void copy_to_host(void* dst, const void* src, size_t nbytes, int) override { std::memcpy(dst, src, nbytes); }
  void copy_within(void* dst, const void* src, size_t nbytes, int) override { std::memcpy(dst, src, nbytes); }
};

}  // namespace
}  // namespace strand::cpu

namespace strand::backend {

void register_cpu_runtime() {
  static cpu::CpuRuntime* runtime = new cpu::CpuRuntime;  // never destroyed: blocks may be freed after main
  register_device_runtime(DeviceType::CPU, *runtime);
}

}  // namespace strand::backend
