// `strand bench ops`: GEMM, elementwise, LayerNorm and cross-entropy rates (being written).
#include "launch/commands.h"

namespace strand::launch {

void add_bench_ops(CLI::App&) {}

}  // namespace strand::launch
