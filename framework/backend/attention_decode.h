// The single-query attention kernel of generation: the new token's query row (one per batch row
// and head) against a key/value cache whose slots hold keys at any global positions (a ring
// cache wraps, so slot order is not position order), masked by the same MaskSpec rule as the
// tiled kernel. A plain parameter struct and its entry point; no Tensor, no autograd.
#pragma once
#include <cstdint>

#include "framework/backend/attention.h"
#include "framework/backend/registry.h"

namespace strand::backend {

// Everything one decode call reads and writes, on p.device, all of element type dtype. The last
// axis of every tensor has unit stride.
struct AttentionDecodeParams {
  Device device;
  DType dtype = DType::F32;  // F32 or F64
  const void* q = nullptr;   // [B, Hq, D]: element (b, h, x) at b * q_batch_stride + h * q_head_stride + x
  const void* k = nullptr;   // [B, Hkv, S, D]: the cache's keys, S slots
  const void* v = nullptr;   // [B, Hkv, S, D]: the cache's values
  void* o = nullptr;         // [B, Hq, D]: written; a query with no key to attend gets zeros
  int64_t q_batch_stride = 0, q_head_stride = 0;
  int64_t k_batch_stride = 0, k_head_stride = 0, k_row_stride = 0;
  int64_t v_batch_stride = 0, v_head_stride = 0, v_row_stride = 0;
  int64_t o_batch_stride = 0, o_head_stride = 0;

  int64_t batch = 0;     // B
  int64_t q_heads = 0;   // Hq, a multiple of kv_heads; query head h reads kv head h / (Hq / Hkv)
  int64_t kv_heads = 0;  // Hkv
  int64_t slots = 0;     // S
  int64_t head_dim = 0;  // D
  double scale = 0;      // multiplies q.k

  // [S]: the global position of the key in each slot, shared by every batch row; -1 marks an
  // empty slot, which is never attended.
  const int64_t* key_positions = nullptr;
  int64_t q_position = 0;          // global position of the query
  const MaskSpec* mask = nullptr;  // never null; its offsets are ignored (positions above are global)
};

// launch("attention_decode", ...): o from q and the cache.
inline void attention_decode(const AttentionDecodeParams& p) { launch("attention_decode", p); }

}  // namespace strand::backend
