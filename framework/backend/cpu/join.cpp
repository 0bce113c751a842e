// Block copies for concat.
#include "framework/backend/cpu/join.h"

#include <cstring>

#include "framework/backend/cpu/loops.h"

namespace strand::cpu {

void copy_blocks(void* dst, int64_t dst_stride, const void* src, int64_t src_stride, int64_t rows,
                 int64_t row_bytes) {
  if (rows <= 0 || row_bytes <= 0) return;
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  // The grain is in elements elsewhere; bytes / 4 keeps the same threshold for float32 data.
  #pragma omp parallel for if (rows * row_bytes / 4 > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(d + r * dst_stride, s + r * src_stride, static_cast<size_t>(row_bytes));
}

void copy_blocks(const backend::CopyBlocksParams& p) {
  copy_blocks(p.dst, p.dst_stride, p.src, p.src_stride, p.rows, p.row_bytes);
}

}  // namespace strand::cpu
