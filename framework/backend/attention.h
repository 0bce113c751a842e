// The device-neutral attention kernel contract: the mask spec, and the plain parameter structs
// every backend's attention kernels take (pointers, strides in elements, sizes, scale, mask),
// launched through the registry (registry.h). No Tensor, no autograd.
#pragma once
#include <cstdint>
#include <vector>

#include "framework/core/device.h"
#include "framework/core/dtype.h"

namespace strand {

// Which keys a query attends to, before causality, padding and packing are applied (see MaskSpec).
enum class MaskKind : uint8_t {
  None,        // every key (with MaskSpec::causal: plain causal attention)
  Sliding,     // keys k with q - window_left <= k <= q + window_right
  Dilated,     // Sliding, and only every dilation-th key: (q - k) % dilation == 0
  Longformer,  // Sliding, plus global tokens: a global row sees every key, every row sees the globals
  BigBird,     // Longformer, plus random_blocks random key blocks per query block (seeded)
};

// One description of an attention mask, shared by the forward, the backward, the dense
// reference mask and every rank of a ring: all positions are *global* token positions, so a
// block of a longer sequence is masked by where its queries and keys sit in that sequence.
struct MaskSpec {
  MaskKind kind = MaskKind::None;
  int64_t window_left = 0;             // Sliding..BigBird: keys up to this many positions before q
  int64_t window_right = 0;            // Sliding..BigBird: keys up to this many after q (0: causal window)
  int64_t dilation = 1;                // Dilated: keep keys with (q - k) % dilation == 0
  std::vector<int64_t> global_tokens;  // Longformer, BigBird: global positions of the global tokens
  int64_t block_size = 64;             // BigBird: positions per random block (query and key)
  int64_t random_blocks = 0;           // BigBird: random key blocks each query block attends to
  uint64_t seed = 0;                   // BigBird: the draw depends only on (seed, query block)
  std::vector<int64_t> key_lengths;    // key padding: keys at position >= key_lengths[b] are masked; empty = none
  // Packed rows: document boundaries [0, e1, e2, ..., seq_len] in global positions; a query sees
  // only keys of its own document. One list for every batch row, or one per row (B lists).
  std::vector<std::vector<int64_t>> cu_seqlens;
  // Causal, the one spelling of it: keys after the query (k > q) are masked, on top of any kind
  // (None: plain causal attention; Longformer, BigBird: their decoder forms).
  bool causal = false;
  int64_t q_offset = 0;                // global position of query row 0
  int64_t k_offset = 0;                // global position of key row 0
  // Length of the whole sequence (for validation and BigBird's block count); 0 means
  // max(q_offset + Nq, k_offset + Nk). Set it when the q/k blocks are parts of a longer sequence.
  int64_t seq_len = 0;

  static MaskSpec causal_mask() {
    MaskSpec m;
    m.causal = true;
    return m;
  }
  static MaskSpec sliding(int64_t left, int64_t right = 0) {
    MaskSpec m;
    m.kind = MaskKind::Sliding;
    m.window_left = left;
    m.window_right = right;
    return m;
  }
};

namespace backend {

// Everything one attention kernel call reads and writes, on p.device. Tensors are [B, H, N, D]
// (lse [B, Hq, Nq]) with unit stride along D (and along Nq for lse), all of element type dtype
// (float32 or float64; bfloat16: q, k, v and d_o are bf16, o, lse, d_lse, dq, dk, dv float32).
// Query head h reads key/value head h / (Hq / Hkv).
struct AttentionParams {
  Device device;                // where every pointer below lives
  DType dtype = DType::F32;     // of every tensor below: F32 or F64, or BF16 (inputs only, above)
  const void* q = nullptr;      // [B, Hq, Nq, D]
  const void* k = nullptr;      // [B, Hkv, Nk, D]
  const void* v = nullptr;      // [B, Hkv, Nk, D]
  void* o = nullptr;            // [B, Hq, Nq, D]; written by the forward, read by the backward
  void* lse = nullptr;          // [B, Hq, Nq]; natural-log sum of exp of the scaled scores, -inf for empty rows
  const void* d_o = nullptr;    // backward: gradient of o, [B, Hq, Nq, D]
  const void* d_lse = nullptr;  // backward: gradient of lse, [B, Hq, Nq]; null means zero
  void* dq = nullptr;           // backward outputs, laid out like q, k, v (overwritten)
  void* dk = nullptr;
  void* dv = nullptr;

  // Strides in elements: batch, head, row. The last axis has stride 1.
  int64_t q_batch_stride = 0, q_head_stride = 0, q_row_stride = 0;
  int64_t k_batch_stride = 0, k_head_stride = 0, k_row_stride = 0;
  int64_t v_batch_stride = 0, v_head_stride = 0, v_row_stride = 0;
  int64_t o_batch_stride = 0, o_head_stride = 0, o_row_stride = 0;
  int64_t do_batch_stride = 0, do_head_stride = 0, do_row_stride = 0;
  int64_t dq_batch_stride = 0, dq_head_stride = 0, dq_row_stride = 0;
  int64_t dk_batch_stride = 0, dk_head_stride = 0, dk_row_stride = 0;
  int64_t dv_batch_stride = 0, dv_head_stride = 0, dv_row_stride = 0;
  int64_t lse_batch_stride = 0, lse_head_stride = 0;  // also the layout of d_lse

  int64_t batch = 0;     // B
  int64_t q_heads = 0;   // Hq, a multiple of kv_heads
  int64_t kv_heads = 0;  // Hkv
  int64_t q_len = 0;     // Nq
  int64_t k_len = 0;     // Nk
  int64_t head_dim = 0;  // D
  double scale = 0;      // multiplies q.k; callers pass 1/sqrt(D) for the usual attention

  const MaskSpec* mask = nullptr;  // never null; positions are global (q_offset, k_offset inside)

  // Tile sizes (0 = the kernel's defaults); tests shrink them to cross many tile boundaries.
  int64_t block_q = 0;
  int64_t block_k = 0;
};

// The registry keys kernels by their parameter type, so each kernel of the family has its own.
// launch("attention_forward", ...): o and lse from q, k, v.
struct AttentionForwardParams : AttentionParams {};
// launch("attention_backward", ...): dq, dk, dv from q, k, v, o, lse, d_o (and d_lse).
// Deterministic for a fixed thread count.
struct AttentionBackwardParams : AttentionParams {};
// launch("attention_forward_int8", ...): o and lse for inference with the scores Q . K^T taken in
// INT8 (keys smoothed by their mean, per-block scales; P . V in float32): float32 q, k, v, o, lse;
// no backward. Note [INT8 scores] in cpu/attention_int8.cpp.
struct AttentionInt8ForwardParams : AttentionParams {
  bool generic = false;  // the portable integer path even where the CPU has VNNI (tests compare them)
};

// `outer` blocks of `rows` rows of width `d` (a [B, H, N, D] tensor's rows [r0, r0 + rows) has
// outer = B * H; an lse [B, H, N] has d = 1): element (t, i, x) sits at
// data + t * outer_stride + i * row_stride + x.
struct AttentionRows {
  void* data = nullptr;
  int64_t outer_stride = 0;
  int64_t row_stride = 0;
};

// launch("attention_merge_forward", ...): the exact merge of two partial results over disjoint
// key sets, per row: lse = log(e^lse1 + e^lse2), o = e^(lse1-lse) o1 + e^(lse2-lse) o2. Rows with
// both lse = -inf give o = 0, lse = -inf. o may be o1 and lse may be lse1 (a merge in place).
struct AttentionMergeParams {
  Device device;
  DType dtype = DType::F32;  // F32 or F64
  int64_t outer = 0, rows = 0, d = 0;
  AttentionRows o1, lse1, o2, lse2, o, lse;
};
// launch("attention_merge_backward", ...): given go, glse (and the inputs and outputs of the
// forward), the gradients go1, glse1, go2, glse2 (overwritten).
struct AttentionMergeBackwardParams {
  Device device;
  DType dtype = DType::F32;
  int64_t outer = 0, rows = 0, d = 0;
  AttentionRows o1, lse1, o2, lse2, o, lse, go, glse, go1, glse1, go2, glse2;
};
// launch("attention_add_rows", ...): dst += src, row by row (the partial dQ, dK, dV of a
// segment step added into the rows they belong to).
struct AttentionAddRowsParams {
  Device device;
  DType dtype = DType::F32;
  int64_t outer = 0, rows = 0, d = 0;
  AttentionRows dst, src;
};

// The materialised-scores attention used as a test oracle (ops::attention_reference): every score
// row computed in full, accumulated in double, no tiling. q, o [B, Hq, Nq, D], k, v
// [B, Hkv, Nk, D], lse [B, Hq, Nq], all contiguous, of element type dtype (F32 or F64).
struct AttentionReferenceParams {
  Device device;
  DType dtype = DType::F32;
  int64_t B = 0;       // batch
  int64_t Hq = 0;      // query heads
  int64_t Hkv = 0;     // key/value heads; query head h reads kv head h / (Hq / Hkv)
  int64_t Nq = 0;      // query rows
  int64_t Nk = 0;      // key rows
  int64_t D = 0;       // head dimension
  double scale = 1.0;  // scores are scale * q . k
  // int32 mask read at mask[b*mask_strides[0] + h*mask_strides[1] + i*mask_strides[2] +
  // j*mask_strides[3]] for query head h; nonzero = attend, stride 0 on broadcast axes. Null =
  // attend everywhere.
  const int32_t* mask = nullptr;
  int64_t mask_strides[4] = {0, 0, 0, 0};
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;            // written by the forward, read by the backward
  void* lse = nullptr;          // likewise; -inf for a row with no key to attend (o = 0 there)
  const void* d_o = nullptr;    // backward: gradients of o and lse
  const void* d_lse = nullptr;
  void* dq = nullptr;           // backward outputs (overwritten)
  void* dk = nullptr;
  void* dv = nullptr;
};
// launch("attention_reference_forward", ...) and launch("attention_reference_backward", ...).
struct AttentionReferenceForwardParams : AttentionReferenceParams {};
struct AttentionReferenceBackwardParams : AttentionReferenceParams {};

// One Performer linear-attention call (ops::linear_attention). Every buffer is contiguous,
// row-major, of element type dtype (F32 or F64):
//   q    [batch, q_heads, q_len, head_dim]
//   k    [batch, kv_heads, kv_len, head_dim]
//   v    [batch, kv_heads, kv_len, value_dim]
//   w    [features, head_dim]            the random projection, rows ~ N(0, I)
//   out  [batch, q_heads, q_len, value_dim]
//   den  [batch, q_heads, q_len]         the stabilised normaliser phi(q_i)^T sum_j phi(k_j)
struct LinearAttentionParams {
  Device device;
  DType dtype = DType::F32;
  int64_t batch = 0;
  int64_t q_heads = 0;   // a multiple of kv_heads; query head h reads kv head h / (q_heads / kv_heads)
  int64_t kv_heads = 0;
  int64_t q_len = 0;
  int64_t kv_len = 0;    // equal to q_len when causal
  int64_t head_dim = 0;  // D: q and k are scaled by D^(-1/4) each, so q'.k' = q.k / sqrt(D)
  int64_t value_dim = 0;
  int64_t features = 0;  // M random features
  bool causal = false;   // query i sums over keys j <= i only
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* w = nullptr;
  void* out = nullptr;        // written by the forward, read by the backward
  void* den = nullptr;        // likewise
  const void* dout = nullptr;  // backward: gradient of out
  void* dq = nullptr;         // backward outputs (overwritten)
  void* dk = nullptr;
  void* dv = nullptr;
};
// launch("linear_attention_forward", ...): out and den. launch("linear_attention_backward", ...): dq, dk, dv.
struct LinearAttentionForwardParams : LinearAttentionParams {};
struct LinearAttentionBackwardParams : LinearAttentionParams {};

}  // namespace backend
}  // namespace strand
