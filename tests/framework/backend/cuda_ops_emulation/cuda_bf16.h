// CPU emulation (tests/framework/backend/cuda_ops_emulate.sh): the bfloat16 rounding the CUDA GEMM uses.
#pragma once
#include <cstdint>
#include "framework/core/dtype.h"
struct __nv_bfloat16 { uint16_t b; };
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {strand::float_to_bf16_bits(f)}; }
inline uint16_t __bfloat16_as_ushort(__nv_bfloat16 v) { return v.b; }
