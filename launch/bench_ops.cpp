// `strand bench ops` (the GEMM part is filled in with matmul).
#include "launch/bench_ops.h"

namespace strand::launch {

std::string run_bench_ops(const BenchOpsOptions&) { return "{}"; }

}  // namespace strand::launch
