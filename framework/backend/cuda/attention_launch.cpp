// The CUDA attention kernels behind the device seam: checks that the mask spec is one these
// kernels implement (full, causal, sliding window, q/k offsets, GQA; anything else is a
// DeviceError naming it), lays the parameters out for attention*.cu, and owns the backward's
// scratch row of Delta.
#include "framework/backend/cuda/attention_launch.h"

#include "framework/backend/attention_mask.h"
#include "framework/backend/cuda/attention_api.h"
#include "framework/core/device_runtime.h"
#include "framework/core/error.h"

namespace strand::cuda {
namespace {

// What the kernels do not implement, named; null when they implement everything the spec asks.
const char* unsupported(const MaskSpec& m) {
  switch (m.kind) {
    case MaskKind::None:
    case MaskKind::Sliding: break;
    case MaskKind::Dilated: return "the dilated mask pattern";
    case MaskKind::Longformer: return "the longformer mask pattern";
    case MaskKind::BigBird: return "the bigbird mask pattern";
  }
  if (!m.key_lengths.empty()) return "key padding (mask key_lengths)";
  if (!m.cu_seqlens.empty()) return "packed rows (mask cu_seqlens)";
  return nullptr;
}

AttentionArgs args_of(const backend::AttentionParams& p, const char* op) {
  // The same validation as every device (ValueError naming the field), then what CUDA refuses.
  const MaskPlan plan(*p.mask, p.batch, p.q_len, p.k_len, op);
  const MaskSpec& m = plan.spec();
  if (const char* what = unsupported(m))
    throw DeviceError(detail::concat(op, ": ", what, " has no CUDA kernel (CUDA attention takes full, causal and "
                                                    "sliding-window masks with q/k offsets)"));
  STRAND_CHECK(p.head_dim <= kAttentionMaxHeadDim, DeviceError, op, ": head dimension ", p.head_dim,
               " has no CUDA kernel (at most ", kAttentionMaxHeadDim, ")");
  AttentionArgs a;
  a.device = p.device.index;
  switch (p.dtype) {
    case DType::F32: a.type = AttentionType::F32; break;
    case DType::F64: a.type = AttentionType::F64; break;
    case DType::BF16: a.type = AttentionType::BF16; break;
    default: throw DTypeError(detail::concat(op, ": no CUDA kernel for ", dtype_name(p.dtype)));
  }
  a.q = p.q;
  a.k = p.k;
  a.v = p.v;
  a.o = p.o;
  a.lse = p.lse;
  a.d_o = p.d_o;
  a.d_lse = p.d_lse;
  a.dq = p.dq;
  a.dk = p.dk;
  a.dv = p.dv;
  a.q_batch_stride = p.q_batch_stride, a.q_head_stride = p.q_head_stride, a.q_row_stride = p.q_row_stride;
  a.k_batch_stride = p.k_batch_stride, a.k_head_stride = p.k_head_stride, a.k_row_stride = p.k_row_stride;
  a.v_batch_stride = p.v_batch_stride, a.v_head_stride = p.v_head_stride, a.v_row_stride = p.v_row_stride;
  a.o_batch_stride = p.o_batch_stride, a.o_head_stride = p.o_head_stride, a.o_row_stride = p.o_row_stride;
  a.do_batch_stride = p.do_batch_stride, a.do_head_stride = p.do_head_stride, a.do_row_stride = p.do_row_stride;
  a.dq_batch_stride = p.dq_batch_stride, a.dq_head_stride = p.dq_head_stride, a.dq_row_stride = p.dq_row_stride;
  a.dk_batch_stride = p.dk_batch_stride, a.dk_head_stride = p.dk_head_stride, a.dk_row_stride = p.dk_row_stride;
  a.dv_batch_stride = p.dv_batch_stride, a.dv_head_stride = p.dv_head_stride, a.dv_row_stride = p.dv_row_stride;
  a.lse_batch_stride = p.lse_batch_stride, a.lse_head_stride = p.lse_head_stride;
  a.batch = p.batch, a.q_heads = p.q_heads, a.kv_heads = p.kv_heads;
  a.q_len = p.q_len, a.k_len = p.k_len, a.head_dim = p.head_dim;
  a.scale = p.scale;
  a.causal = m.causal;
  a.window = m.kind == MaskKind::Sliding;
  a.window_left = m.window_left, a.window_right = m.window_right;
  a.q_offset = m.q_offset, a.k_offset = m.k_offset;
  return a;
}

// A device block freed when it goes out of scope. The free comes after the kernels that read it
// were queued: the cuda runtime's free waits for the device (a stream-ordered allocator must
// order it after them on the same stream).
class DeviceScratch {
 public:
  DeviceScratch(size_t nbytes, int index) : index_(index) {
    if (nbytes) ptr_ = device_runtime(DeviceType::CUDA).allocate(nbytes, index);
  }
  ~DeviceScratch() {
    if (ptr_) device_runtime(DeviceType::CUDA).deallocate(ptr_, index_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  int index_;
};

AttentionRowsArgs rows(const backend::AttentionRows& r) { return {r.data, r.outer_stride, r.row_stride}; }

bool merge_f64(DType t, const char* op) {
  STRAND_CHECK(t == DType::F32 || t == DType::F64, DTypeError, op, ": no CUDA kernel for ", dtype_name(t));
  return t == DType::F64;
}

}  // namespace

void attention_forward_kernel(const backend::AttentionForwardParams& p) {
  cuda::attention_forward(args_of(p, "attention forward"));
}

void attention_backward_kernel(const backend::AttentionBackwardParams& p) {
  AttentionArgs a = args_of(p, "attention backward");
  const size_t acc = p.dtype == DType::F64 ? sizeof(double) : sizeof(float);
  DeviceScratch delta(acc * static_cast<size_t>(p.batch * p.q_heads * p.q_len), p.device.index);
  a.delta = delta.get();
  cuda::attention_backward(a);
}

void attention_merge_forward_kernel(const backend::AttentionMergeParams& p) {
  AttentionMergeArgs a;
  a.device = p.device.index;
  a.f64 = merge_f64(p.dtype, "attention merge");
  a.outer = p.outer, a.rows = p.rows, a.d = p.d;
  a.o1 = rows(p.o1), a.lse1 = rows(p.lse1), a.o2 = rows(p.o2), a.lse2 = rows(p.lse2);
  a.o = rows(p.o), a.lse = rows(p.lse);
  cuda::attention_merge_forward(a);
}

void attention_merge_backward_kernel(const backend::AttentionMergeBackwardParams& p) {
  AttentionMergeArgs a;
  a.device = p.device.index;
  a.f64 = merge_f64(p.dtype, "attention merge backward");
  a.outer = p.outer, a.rows = p.rows, a.d = p.d;
  a.o1 = rows(p.o1), a.lse1 = rows(p.lse1), a.o2 = rows(p.o2), a.lse2 = rows(p.lse2);
  a.o = rows(p.o), a.lse = rows(p.lse), a.go = rows(p.go), a.glse = rows(p.glse);
  a.go1 = rows(p.go1), a.glse1 = rows(p.glse1), a.go2 = rows(p.go2), a.glse2 = rows(p.glse2);
  cuda::attention_merge_backward(a);
}

void attention_add_rows_kernel(const backend::AttentionAddRowsParams& p) {
  AttentionMergeArgs a;
  a.device = p.device.index;
  a.f64 = merge_f64(p.dtype, "attention add rows");
  a.outer = p.outer, a.rows = p.rows, a.d = p.d;
  a.o = rows(p.dst), a.o1 = rows(p.src);
  cuda::attention_add_rows(a);
}

}  // namespace strand::cuda
