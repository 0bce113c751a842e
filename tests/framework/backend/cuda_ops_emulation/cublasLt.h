// CPU emulation (tests/framework/backend/cuda_ops_emulate.sh) of the cuBLASLt calls gemm.cpp makes:
// a naive column-major product honouring the descriptors (op, rows, cols, ld, batch count and
// stride, types, the alignment asked for), which checks gemm.cpp's row-major mapping.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <cstring>
#include "framework/core/dtype.h"
typedef enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77, CUBLAS_COMPUTE_64F = 70 } cublasComputeType_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType_t;
typedef cudaDataType_t cudaDataType;
typedef enum { CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4 } cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6 } cublasLtMatrixLayoutAttribute_t;
typedef enum {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8
} cublasLtMatmulPreferenceAttributes_t;
struct EmuDesc { cublasComputeType_t compute; cudaDataType_t scale; int32_t ta = 0, tb = 0; };
struct EmuLayout { cudaDataType_t type; uint64_t rows, cols; int64_t ld; int32_t count = 1; int64_t stride = 0; };
struct EmuPref { uint32_t align[4] = {256, 256, 256, 256}; };
typedef EmuDesc* cublasLtMatmulDesc_t;
typedef EmuLayout* cublasLtMatrixLayout_t;
typedef EmuPref* cublasLtMatmulPreference_t;
typedef void* cublasLtHandle_t;
struct cublasLtMatmulAlgo_t { uint64_t data[8]; };
struct cublasLtMatmulHeuristicResult_t { cublasLtMatmulAlgo_t algo; size_t workspaceSize; cublasStatus_t state; float wavesCount; int reserved[4]; };
inline const char* cublasLtGetStatusString(cublasStatus_t s) { return s == 0 ? "ok" : "invalid value"; }
inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) { *h = nullptr; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t c, cudaDataType_t s) { *d = new EmuDesc{c, s}; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void* v, size_t n) {
  if (n != 4) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(a == CUBLASLT_MATMUL_DESC_TRANSA ? &d->ta : &d->tb, v, 4);
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType t, uint64_t r, uint64_t c, int64_t ld) {
  if (ld < static_cast<int64_t>(r)) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new EmuLayout{t, r, c, ld};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a, const void* v, size_t n) {
  if (a == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) { if (n != 4) return CUBLAS_STATUS_INVALID_VALUE; std::memcpy(&l->count, v, 4); }
  else { if (n != 8) return CUBLAS_STATUS_INVALID_VALUE; std::memcpy(&l->stride, v, 8); }
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) { *p = new EmuPref; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a, const void* v, size_t n) {
  if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) return n == 8 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
  if (n != 4) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&p->align[a - 5], v, 4);
  return CUBLAS_STATUS_SUCCESS;
}
// The "algorithm" is the alignment it was chosen for, which cublasLtMatmul then checks.
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                                     cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatmulPreference_t p, int,
                                                     cublasLtMatmulHeuristicResult_t* r, int* found) {
  *r = {};
  for (int i = 0; i < 3; ++i) r->algo.data[i] = p->align[i];
  *found = 1;
  return CUBLAS_STATUS_SUCCESS;
}
inline size_t emu_size(cudaDataType_t t) { return t == CUDA_R_64F ? 8 : t == CUDA_R_32F ? 4 : 2; }
inline double emu_get(const void* p, int64_t i, cudaDataType_t t) {
  const char* c = static_cast<const char*>(p) + i * static_cast<int64_t>(emu_size(t));
  if (t == CUDA_R_64F) { double d; std::memcpy(&d, c, 8); return d; }
  if (t == CUDA_R_32F) { float f; std::memcpy(&f, c, 4); return f; }
  uint16_t b; std::memcpy(&b, c, 2);
  return t == CUDA_R_16BF ? strand::bf16_bits_to_float(b) : strand::f16_bits_to_float(b);
}
inline void emu_set(void* p, int64_t i, cudaDataType_t t, double v) {
  char* c = static_cast<char*>(p) + i * static_cast<int64_t>(emu_size(t));
  if (t == CUDA_R_64F) { std::memcpy(c, &v, 8); return; }
  const float f = static_cast<float>(v);
  if (t == CUDA_R_32F) { std::memcpy(c, &f, 4); return; }
  const uint16_t b = t == CUDA_R_16BF ? strand::float_to_bf16_bits(f) : strand::float_to_f16_bits(f);
  std::memcpy(c, &b, 2);
}
inline bool emu_aligned(const void* p, uint32_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void* alpha, const void* A, cublasLtMatrixLayout_t la,
                                     const void* B, cublasLtMatrixLayout_t lb, const void* beta, const void* C, cublasLtMatrixLayout_t lc,
                                     void* D, cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t* algo, void*, size_t, cudaStream_t) {
  const int64_t M = d->ta ? la->cols : la->rows, K = d->ta ? la->rows : la->cols;
  const int64_t N = d->tb ? lb->rows : lb->cols, K2 = d->tb ? lb->cols : lb->rows;
  if (K != K2 || static_cast<int64_t>(lc->rows) != M || static_cast<int64_t>(lc->cols) != N || C != D || lc != ld) return CUBLAS_STATUS_INVALID_VALUE;
  if (la->count != lb->count || la->count != lc->count) return CUBLAS_STATUS_INVALID_VALUE;
  for (int32_t e = 0; e < la->count; ++e) {  // every product of the batch meets the alignment the algorithm assumes
    const char* a = static_cast<const char*>(A) + e * la->stride * static_cast<int64_t>(emu_size(la->type));
    const char* b = static_cast<const char*>(B) + e * lb->stride * static_cast<int64_t>(emu_size(lb->type));
    const char* c = static_cast<const char*>(C) + e * lc->stride * static_cast<int64_t>(emu_size(lc->type));
    if (!emu_aligned(a, static_cast<uint32_t>(algo->data[0])) || !emu_aligned(b, static_cast<uint32_t>(algo->data[1])) ||
        !emu_aligned(c, static_cast<uint32_t>(algo->data[2])))
      return CUBLAS_STATUS_INVALID_VALUE;
  }
  const bool f64 = d->scale == CUDA_R_64F;
  double al, be;
  if (f64) { std::memcpy(&al, alpha, 8); std::memcpy(&be, beta, 8); }
  else { float a, b; std::memcpy(&a, alpha, 4); std::memcpy(&b, beta, 4); al = a; be = b; }
  for (int32_t e = 0; e < la->count; ++e) {
    const int64_t oa = e * la->stride, ob = e * lb->stride, oc = e * lc->stride;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double a = emu_get(A, oa + (d->ta ? k + i * la->ld : i + k * la->ld), la->type);
          const double b = emu_get(B, ob + (d->tb ? j + k * lb->ld : k + j * lb->ld), lb->type);
          acc += a * b;
        }
        double v = al * acc;
        if (be != 0) v += be * emu_get(C, oc + i + j * lc->ld, lc->type);
        emu_set(D, oc + i + j * lc->ld, lc->type, v);
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}
