// CPU kernels of the embedding lookup: row gather, and its scatter-add backward that buckets ids
// by table row so that every row is summed by one thread (race-free and deterministic).
#pragma once
#include <cstdint>

#include "framework/backend/embedding.h"

namespace strand::cpu {

// Position of the first id outside [0, V), or -1 when all are in range.
int64_t first_id_out_of_range(const int32_t* ids, int64_t n, int64_t V);

// out[i, :] = table[ids[i], :] for i < n. table [V, C] and out [n, C] contiguous; ids in range.
template <class T>
void embedding_gather(const T* table, int64_t C, const int32_t* ids, int64_t n, T* out);

// dtable[v, :] = sum of g[i, :] over the i with ids[i] == v, added in increasing i; dtable [V, C]
// is overwritten (rows no id names become zero). g [n, C] contiguous; ids in range.
template <class T>
void embedding_scatter_add(const T* g, const int32_t* ids, int64_t n, int64_t V, int64_t C, T* dtable);

// The family entry registered with the device seam (backend/embedding.h).
void embedding(const backend::EmbeddingParams& p);

}  // namespace strand::cpu
