// `strand bench attention`: tiled attention forward/backward timings (being written).
#include "launch/commands.h"

namespace strand::launch {

void add_bench_attention(CLI::App&) {}

}  // namespace strand::launch
