// oneDNN's GEMMs for the CPU backend: fp32 through dnnl_sgemm or the matmul primitive (the
// backend's rule picks per shape), bfloat16 inputs through the matmul primitive (cached per
// shape). Builds without oneDNN link a stand-in (no_onednn/).
#pragma once
#include <cstdint>
#include <string>

#include "framework/core/dtype.h"

namespace strand::cpu::onednn {

// True when strand was built with oneDNN (CMake found dnnl.h and libdnnl).
bool available();

// "oneDNN 2.6.3", or "built without oneDNN" from the stand-in.
std::string version();

// The instruction set oneDNN's kernels dispatch to on this CPU ("avx512_core_bf16", "avx2",
// ...), or "none" without oneDNN. Read once; it does not change within a process.
const char* isa();

// True when the dispatched ISA has native bf16 dot products (avx512_core_bf16 or AMX), where
// bf16 inputs run faster than fp32; elsewhere oneDNN emulates them.
bool has_bf16_isa();

// Row-major C[m, n] = op(A) @ op(B) (+ C when accumulate); op(X) is X^T when its flag is set.
// Leading dimensions as in BLAS. Throws DeviceError from the stand-in.
void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
           int64_t ldb, bool accumulate, float* c, int64_t ldc);

// The same product with bfloat16 A and B, accumulated in float32, written to C as c_dtype
// (float32 or bfloat16). accumulate needs a float32 C. bias (n float32 values, or null) is
// added to every row by the primitive's epilogue. Throws DeviceError from the stand-in.
void matmul_bf16(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const bfloat16* a, int64_t lda,
                 const bfloat16* b, int64_t ldb, bool accumulate, void* c, DType c_dtype, int64_t ldc,
                 const float* bias = nullptr);

// The float32 product of sgemm on oneDNN's matmul primitive (its brgemm kernels on AVX-512),
// cached per shape and layout; bias as in matmul_bf16. Throws DeviceError from the stand-in.
void matmul_f32(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                int64_t ldb, bool accumulate, float* c, int64_t ldc, const float* bias = nullptr);

}  // namespace strand::cpu::onednn
