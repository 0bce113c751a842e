// CPU emulation (tests/framework/backend/cuda_ops_emulate.sh): the float16 rounding the CUDA GEMM uses.
#pragma once
#include <cstdint>
#include "framework/core/dtype.h"
struct __half { uint16_t b; };
inline __half __float2half_rn(float f) { return {strand::float_to_f16_bits(f)}; }
inline uint16_t __half_as_ushort(__half v) { return v.b; }
