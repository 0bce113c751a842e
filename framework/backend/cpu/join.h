// CPU kernel for concat: strided copies of byte blocks, so one routine serves every dtype.
#pragma once
#include <cstdint>

#include "framework/backend/join.h"

namespace strand::cpu {

// For r < rows: copies row_bytes bytes from src + r * src_stride to dst + r * dst_stride
// (strides in bytes). Concat along an axis is one such copy per input: the axes before it are
// the rows, the input's slab from the axis on is a row.
void copy_blocks(void* dst, int64_t dst_stride, const void* src, int64_t src_stride, int64_t rows,
                 int64_t row_bytes);

// The family entry registered with the device seam (backend/join.h).
void copy_blocks(const backend::CopyBlocksParams& p);

}  // namespace strand::cpu
