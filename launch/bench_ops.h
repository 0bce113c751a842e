// `strand bench ops`: the GEMM rate of strand's matmul beside a direct cblas_sgemm call,
// elementwise bandwidth, LayerNorm and cross-entropy throughput, as one JSON line.
#pragma once
#include <string>

namespace strand::launch {

struct BenchOpsOptions {
  int threads = 0;
  int reps = 5;
};

std::string run_bench_ops(const BenchOpsOptions& opts);

}  // namespace strand::launch
