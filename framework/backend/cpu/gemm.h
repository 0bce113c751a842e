// Row-major GEMM on the parameters of backend/gemm.h (one product, or a batch of them): float32
// through oneDNN or OpenBLAS, chosen per shape; float64 through OpenBLAS; bfloat16/float16 inputs
// with a float32 (or own-type) C through oneDNN's bf16 matmul or a float32 copy.
#pragma once
#include <cstdint>
#include <vector>

#include "framework/backend/gemm.h"

namespace strand::cpu {

// Runs the product(s) of p. Small batched products run one per OpenMP thread (the libraries
// then stay single-threaded inside the region); large ones run in order, each on all threads.
// Each C entry is written by exactly one call, so results are deterministic for a thread
// count. The family entry registered with the seam.
void gemm(const backend::GemmParams& p);

// OneDnn: dnnl_sgemm; OneDnnMatmul: oneDNN's matmul primitive (brgemm kernels), cached per shape.
enum class GemmLibrary { OpenBlas, OneDnn, OneDnnMatmul };

// The library a float32 product of this shape (B transposed or not) runs on. A rule, not a
// timing: it depends only on the shape, the CPU (oneDNN's ISA) and STRAND_GEMM
// (onednn|onednn-matmul|openblas, read once), so a shape takes the same library for the whole
// run, and in every process of a job or a resume.
GemmLibrary gemm_library(int64_t m, int64_t n, int64_t k, bool b_trans = false);

// "onednn", "onednn-matmul" or "openblas", for benchmark reports.
const char* gemm_library_name(GemmLibrary lib);

// Wall time of the products of one shape while profiling was on (`strand bench train
// --gemm-profile`): every call of that dtype, layout and size, the library that ran it (for
// 16-bit inputs: the matmul primitive, or the library of their float32 copy), the calls and
// their summed seconds.
struct GemmShapeTime {
  DType dtype;
  bool a_trans, b_trans;
  int64_t m, n, k, batch;
  GemmLibrary library;
  int64_t calls = 0;
  double seconds = 0.0;
};

// Clears the profile and times every gemm() call from here on (a steady_clock read on each side
// and a mutex; off, the cost is one relaxed atomic load per call).
void gemm_profile_start();
// Stops timing and returns the shapes seen, slowest total first.
std::vector<GemmShapeTime> gemm_profile_stop();

}  // namespace strand::cpu
