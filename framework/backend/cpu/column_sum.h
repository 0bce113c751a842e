// CPU kernel of backend/column_sum.h: column sums and a rounded copy of a matrix in one pass.
#pragma once
#include "framework/backend/column_sum.h"

namespace strand::cpu {

// Parallel over blocks of columns; each column is summed over the rows in row order by one
// thread, so the sums do not depend on the thread count.
void column_sum_cast(const backend::ColumnSumCastParams& p);

}  // namespace strand::cpu
