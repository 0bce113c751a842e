// Counter-based random numbers (Philox-4x32-10): a value depends only on (seed, stream, index),
// so dropout masks and initialisations are the same on every run, rank and thread count.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

namespace strand::random {

// Marks the Philox rounds callable from CUDA device code too (this header is C++17, so that the
// CUDA kernels, compiled by nvcc, draw exactly the words the CPU draws).
#if defined(__CUDACC__)
#define STRAND_HOST_DEVICE __host__ __device__
#else
#define STRAND_HOST_DEVICE
#endif

// The four 32-bit words for counter (index, stream) under key seed, written to w[0..3].
STRAND_HOST_DEVICE inline void philox4x32_words(uint64_t seed, uint64_t stream, uint64_t index, uint32_t w[4]) {
  uint32_t c0 = static_cast<uint32_t>(index), c1 = static_cast<uint32_t>(index >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}

// Four 32-bit random words for counter (index, stream) under key seed.
inline std::array<uint32_t, 4> philox4x32(uint64_t seed, uint64_t stream, uint64_t index) {
  std::array<uint32_t, 4> w;
  philox4x32_words(seed, stream, index, w.data());
  return w;
}

// Uniform in [0, 1) with 53 random bits.
inline double uniform01(uint64_t seed, uint64_t stream, uint64_t index) {
  const auto w = philox4x32(seed, stream, index);
  const uint64_t bits = (static_cast<uint64_t>(w[0]) << 21) ^ w[1];
  return static_cast<double>(bits & ((1ull << 53) - 1)) * 0x1.0p-53;
}

// Standard normal by Box-Muller from one counter's four words.
inline double normal(uint64_t seed, uint64_t stream, uint64_t index) {
  const auto w = philox4x32(seed, stream, index);
  const double u1 = (static_cast<double>((static_cast<uint64_t>(w[0]) << 20) ^ w[1]) + 1.0) * 0x1.0p-52;
  const double u2 = static_cast<double>((static_cast<uint64_t>(w[2]) << 20) ^ w[3]) * 0x1.0p-52;
  return std::sqrt(-2.0 * std::log(std::min(u1, 1.0))) * std::cos(6.283185307179586 * std::fmod(u2, 1.0));
}

}  // namespace strand::random
