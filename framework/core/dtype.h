// Element types: float32, float64 (gradient checks), bfloat16 and float16 (storage), int32 (indices).
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>

namespace strand {

enum class DType : uint8_t { F32, F64, BF16, F16, I32 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
inline bool is_floating(DType t) { return t != DType::I32; }
std::ostream& operator<<(std::ostream& os, DType t);

// bfloat16 and float16 are storage types: values are converted to float with
// round-to-nearest-even, and arithmetic happens in float32.
struct bfloat16 { uint16_t bits; };
struct float16 { uint16_t bits; };

inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_bits_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

uint16_t float_to_f16_bits(float f);
float f16_bits_to_float(uint16_t h);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<bfloat16>() { return DType::BF16; }
template <> constexpr DType dtype_of<float16>() { return DType::F16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }

}  // namespace strand
