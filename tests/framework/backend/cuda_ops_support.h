// What the CUDA-against-CPU kernel tests share: device buffers filled from and read back to host
// vectors, random inputs, and the comparison within so many roundings of the dtype.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "framework/core/allocator.h"
#include "framework/core/device_runtime.h"
#include "support/tolerance.h"

namespace strand::cuda_test {

inline Device gpu() { return Device::cuda(0); }

// A block on cuda:0 from the caching allocator, holding `bytes` bytes.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes), ptr_(memory::allocate(gpu(), bytes)) {}
  template <class T>
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size() * sizeof(T)) {
    device_runtime(DeviceType::CUDA).copy_from_host(ptr_, host.data(), bytes_, 0);
  }
  ~DeviceBuffer() { memory::deallocate(gpu(), ptr_, bytes_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  template <class T>
  std::vector<T> read(size_t n) const {
    std::vector<T> host(n);
    device_runtime(DeviceType::CUDA).copy_to_host(host.data(), ptr_, n * sizeof(T), 0);
    return host;
  }

 private:
  size_t bytes_;
  void* ptr_;
};

template <class T>
std::vector<T> random_vector(size_t n, uint32_t seed, double lo = -2.0, double hi = 2.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(u(rng));
  return v;
}

template <class T>
DType dtype_of_t() {
  return sizeof(T) == 8 ? DType::F64 : DType::F32;
}

// |gpu - cpu| <= k * eps(dtype) * (1 + |cpu|) for every element; NaNs must match.
template <class T>
void expect_close(const std::vector<T>& got, const std::vector<T>& want, double k, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double eps = testing::dtype_eps(dtype_of_t<T>());
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = static_cast<double>(want[i]);
    if (std::isnan(w)) {
      if (!std::isnan(g) && ++bad <= 5) ADD_FAILURE() << what << "[" << i << "]: " << g << ", want NaN";
      continue;
    }
    if (std::abs(g - w) > k * eps * (1.0 + std::abs(w)) && ++bad <= 5)
      ADD_FAILURE() << what << "[" << i << "]: cuda " << g << ", cpu " << w << " (tolerance " << k << " eps)";
  }
  EXPECT_EQ(bad, 0u) << what << ": elements outside the tolerance";
}

template <class T>
void expect_bitwise(const std::vector<T>& got, const std::vector<T>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0 && ++bad <= 5)
      ADD_FAILURE() << what << "[" << i << "]: cuda " << got[i] << ", cpu " << want[i];
  EXPECT_EQ(bad, 0u) << what << ": elements that differ";
}

}  // namespace strand::cuda_test
