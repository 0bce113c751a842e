// Device-neutral entry point of the strided block copy that concat is made of (any dtype: bytes).
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"

namespace strand::backend {

// For r < rows: copies row_bytes bytes from src + r * src_stride to dst + r * dst_stride
// (strides in bytes).
struct CopyBlocksParams {
  Device device;
  void* dst = nullptr;
  int64_t dst_stride = 0;
  const void* src = nullptr;
  int64_t src_stride = 0;
  int64_t rows = 0, row_bytes = 0;
};

inline void copy_blocks(const CopyBlocksParams& p) { launch("copy_blocks", p); }

}  // namespace strand::backend
