// Embedding gather and bucketed scatter-add.
#include "framework/backend/cpu/embedding.h"

#include <algorithm>
#include <vector>

#include "framework/backend/cpu/dispatch.h"
#include "framework/backend/cpu/loops.h"

namespace strand::cpu {

int64_t first_id_out_of_range(const int32_t* ids, int64_t n, int64_t V) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= V) return i;
  return -1;
}

template <class T>
void embedding_gather(const T* table, int64_t C, const int32_t* ids, int64_t n, T* out) {
  #pragma omp parallel for if (n * C > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T* src = table + static_cast<int64_t>(ids[i]) * C;
    T* dst = out + i * C;
    #pragma omp simd
    for (int64_t c = 0; c < C; ++c) dst[c] = src[c];
  }
}

template <class T>
void embedding_scatter_add(const T* g, const int32_t* ids, int64_t n, int64_t V, int64_t C, T* dtable) {
  // Counting sort of positions by id (stable, so each row adds its gradients in position order):
  // row v owns positions order[start[v] .. start[v+1]).
  std::vector<int64_t> start(static_cast<size_t>(V) + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++start[static_cast<size_t>(ids[i]) + 1];
  for (int64_t v = 0; v < V; ++v) start[v + 1] += start[v];
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) order[next[ids[i]]++] = i;

  // Rows differ in how many positions they own (frequent tokens), hence the dynamic schedule.
  #pragma omp parallel for schedule(dynamic, 16) if ((n + V) * C > kParallelGrain)
  for (int64_t v = 0; v < V; ++v) {
    T* dst = dtable + v * C;
    std::fill(dst, dst + C, T(0));
    for (int64_t k = start[v]; k < start[v + 1]; ++k) {
      const T* src = g + order[k] * C;
      #pragma omp simd
      for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
    }
  }
}

template void embedding_gather<float>(const float*, int64_t, const int32_t*, int64_t, float*);
template void embedding_gather<double>(const double*, int64_t, const int32_t*, int64_t, double*);
template void embedding_scatter_add<float>(const float*, const int32_t*, int64_t, int64_t, int64_t, float*);
template void embedding_scatter_add<double>(const double*, const int32_t*, int64_t, int64_t, int64_t, double*);

void embedding(const backend::EmbeddingParams& p) {
  if (p.op == backend::EmbeddingOp::CheckIds) {
    *p.first_bad = first_id_out_of_range(p.ids, p.n, p.V);
    *p.bad_id = *p.first_bad < 0 ? 0 : p.ids[*p.first_bad];
    return;
  }
  by_float("embedding", p.dtype, [&]<class T>() {
    if (p.op == backend::EmbeddingOp::Gather)
      embedding_gather<T>(static_cast<const T*>(p.src), p.C, p.ids, p.n, static_cast<T*>(p.dst));
    else
      embedding_scatter_add<T>(static_cast<const T*>(p.src), p.ids, p.n, p.V, p.C, static_cast<T*>(p.dst));
  });
}

}  // namespace strand::cpu
