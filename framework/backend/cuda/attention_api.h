// The CUDA attention kernels as a plain C++17 API: attention*.cu (nvcc, C++17) define them,
// attention_launch.cpp (host C++20) checks the mask spec, fills these structs from the device
// seam's parameter structs (framework/backend/attention.h, which nvcc cannot compile) and calls them.
#pragma once
#include <cstdint>

namespace strand::cuda {

// Element type of q, k, v and d_o; o, lse, d_lse, dq, dk, dv are float64 for F64 and float32 otherwise.
enum class AttentionType : int { F32, F64, BF16 };

// The head dimensions the kernels take: each lane of a warp holds head_dim / 32 accumulators.
constexpr int64_t kAttentionMaxHeadDim = 128;

// One attention call: layout as backend::AttentionParams, and the mask reduced to what these
// kernels implement (causal, a sliding window, global q/k offsets).
struct AttentionArgs {
  int device = 0;
  AttentionType type = AttentionType::F32;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* o = nullptr;
  void* lse = nullptr;
  const void* d_o = nullptr;
  const void* d_lse = nullptr;  // null means zero
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv = nullptr;
  void* delta = nullptr;  // backward scratch, [batch * q_heads * q_len] of the accumulation type

  int64_t q_batch_stride = 0, q_head_stride = 0, q_row_stride = 0;
  int64_t k_batch_stride = 0, k_head_stride = 0, k_row_stride = 0;
  int64_t v_batch_stride = 0, v_head_stride = 0, v_row_stride = 0;
  int64_t o_batch_stride = 0, o_head_stride = 0, o_row_stride = 0;
  int64_t do_batch_stride = 0, do_head_stride = 0, do_row_stride = 0;
  int64_t dq_batch_stride = 0, dq_head_stride = 0, dq_row_stride = 0;
  int64_t dk_batch_stride = 0, dk_head_stride = 0, dk_row_stride = 0;
  int64_t dv_batch_stride = 0, dv_head_stride = 0, dv_row_stride = 0;
  int64_t lse_batch_stride = 0, lse_head_stride = 0;

  int64_t batch = 0, q_heads = 0, kv_heads = 0, q_len = 0, k_len = 0, head_dim = 0;
  double scale = 0;

  // Query at global position q = q_offset + i attends key k = k_offset + j unless
  // (causal and k > q) or (window and (q - k > window_left or k - q > window_right)).
  bool causal = false;
  bool window = false;
  int64_t window_left = 0, window_right = 0;
  int64_t q_offset = 0, k_offset = 0;
};

// o and lse from q, k, v (online softmax over key tiles, accumulated in the accumulation type).
void attention_forward(const AttentionArgs& a);
// dq, dk, dv from q, k, v, o, lse, d_o (and d_lse); probabilities recomputed from lse. Needs delta.
void attention_backward(const AttentionArgs& a);

// Rows of `outer` blocks: element (t, i, x) at data + t * outer_stride + i * row_stride + x.
struct AttentionRowsArgs {
  void* data = nullptr;
  int64_t outer_stride = 0;
  int64_t row_stride = 0;
};

// The merge of two partial results, its backward, and dst += src by rows (attention_merge.cu).
struct AttentionMergeArgs {
  int device = 0;
  bool f64 = false;  // float64 rows, else float32
  int64_t outer = 0, rows = 0, d = 0;
  AttentionRowsArgs o1, lse1, o2, lse2, o, lse, go, glse, go1, glse1, go2, glse2;
};
void attention_merge_forward(const AttentionMergeArgs& a);
void attention_merge_backward(const AttentionMergeArgs& a);
void attention_add_rows(const AttentionMergeArgs& a);  // o += o1 (dst = o, src = o1)

}  // namespace strand::cuda
