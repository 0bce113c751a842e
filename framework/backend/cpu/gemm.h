// Row-major GEMM through OpenBLAS (cblas_sgemm/cblas_dgemm) on the parameters of backend/gemm.h:
// one product, or a batch of them.
#pragma once
#include "framework/backend/gemm.h"

namespace strand::cpu {

// Runs the product(s) for p.dtype (float32 or float64). Small batched products run one per
// OpenMP thread (OpenBLAS then stays single-threaded inside the region); large ones run in
// order, each on all of OpenBLAS's threads. Each C entry is written by exactly one call, so
// results are deterministic for a thread count. The family entry registered with the seam.
void gemm(const backend::GemmParams& p);

}  // namespace strand::cpu
