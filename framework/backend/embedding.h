// Device-neutral entry point of the embedding kernels: the id range check, the row gather and
// its deterministic scatter-add backward.
#pragma once
#include <cstdint>

#include "framework/backend/registry.h"
#include "framework/core/dtype.h"

namespace strand::backend {

enum class EmbeddingOp {
  CheckIds,    // *first_bad = position of the first id outside [0, V) (or -1), *bad_id = that id
  Gather,      // dst[i, :] = src[ids[i], :]: src the table [V, C], dst [n, C]
  ScatterAdd,  // dst[v, :] = sum of src[i, :] over ids[i] == v, in increasing i; dst [V, C] overwritten
};

struct EmbeddingParams {
  Device device;
  DType dtype = DType::F32;  // of src and dst
  EmbeddingOp op = EmbeddingOp::Gather;
  const int32_t* ids = nullptr;  // n ids, contiguous, in range except for CheckIds
  int64_t n = 0, V = 0, C = 0;
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t* first_bad = nullptr;  // CheckIds results, host memory
  int32_t* bad_id = nullptr;
};

inline void embedding(const EmbeddingParams& p) { launch("embedding", p); }

}  // namespace strand::backend
