// Single-query attention over a cache: shape checks, then the attention_decode kernel through
// the device seam (framework/backend/attention_decode.h).
#include "framework/ops/attention_decode.h"

#include "framework/backend/attention_decode.h"
#include "framework/core/error.h"
#include "framework/ops/dispatch.h"

namespace strand::ops {

Tensor attention_decode(const Tensor& q_in, const Tensor& k, const Tensor& v, std::span<const int64_t> key_positions,
                        int64_t q_position, const MaskSpec& mask, double scale) {
  const char* op = "attention_decode";
  STRAND_CHECK(q_in.defined() && k.defined() && v.defined(), ValueError, op, ": q, k and v must be defined");
  STRAND_CHECK((q_in.dim() == 4 && q_in.size(2) == 1) || q_in.dim() == 3, ShapeError, op,
               ": q must be [B, Hq, 1, D] or [B, Hq, D], got ", describe(q_in));
  const Tensor q = q_in.dim() == 4 ? q_in.as_strided({q_in.size(0), q_in.size(1), q_in.size(3)},
                                                     {q_in.strides()[0], q_in.strides()[1], q_in.strides()[3]},
                                                     q_in.offset())
                                   : q_in;
  STRAND_CHECK(k.dim() == 4 && v.shape() == k.shape() && k.size(0) == q.size(0) && k.size(3) == q.size(2) &&
                   k.size(1) > 0 && q.size(1) % k.size(1) == 0,
               ShapeError, op, ": k and v must be [B, Hkv, S, D] with Hkv dividing Hq, got q ", describe(q_in),
               ", k ", describe(k), ", v ", describe(v));
  STRAND_CHECK(static_cast<int64_t>(key_positions.size()) == k.size(2), ShapeError, op, ": ", key_positions.size(),
               " key positions for ", k.size(2), " cache slots");
  const Device device = check_same_device(op, {&q, &k, &v});
  check_float(op, q);
  check_same_dtype(op, q, k);
  check_same_dtype(op, q, v);
  STRAND_CHECK(q.dtype() == DType::F32 || q.dtype() == DType::F64, DTypeError, op,
               ": float32 or float64 only, got ", dtype_name(q.dtype()));
  STRAND_CHECK(q.strides()[2] == 1 && k.strides()[3] == 1 && v.strides()[3] == 1, ShapeError, op,
               ": q, k and v need unit stride along D");

  const int64_t B = q.size(0), Hq = q.size(1), D = q.size(2);
  Tensor o = Tensor::empty({B, Hq, 1, D}, q.dtype(), device);
  backend::AttentionDecodeParams p;
  p.device = device;
  p.dtype = q.dtype();
  p.q = q.raw_data();
  p.k = k.raw_data();
  p.v = v.raw_data();
  p.o = o.raw_data();
  p.q_batch_stride = q.strides()[0];
  p.q_head_stride = q.strides()[1];
  p.k_batch_stride = k.strides()[0];
  p.k_head_stride = k.strides()[1];
  p.k_row_stride = k.strides()[2];
  p.v_batch_stride = v.strides()[0];
  p.v_head_stride = v.strides()[1];
  p.v_row_stride = v.strides()[2];
  p.o_batch_stride = Hq * D;
  p.o_head_stride = D;
  p.batch = B;
  p.q_heads = Hq;
  p.kv_heads = k.size(1);
  p.slots = k.size(2);
  p.head_dim = D;
  p.scale = attention_scale(scale, D);
  p.key_positions = key_positions.data();
  p.q_position = q_position;
  p.mask = &mask;
  backend::attention_decode(p);
  return o;
}

}  // namespace strand::ops
