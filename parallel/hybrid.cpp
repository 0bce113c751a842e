// Hybrid sequence-parallel attention: Ulysses all-to-all inside groups of consecutive sp ranks,
// ring attention across the groups, and the inverse all-to-all of o and lse.
#include "parallel/hybrid.h"

#include <utility>

#include "framework/core/error.h"
#include "framework/ops/attention_args.h"
#include "framework/ops/view.h"
#include "parallel/ring.h"
#include "parallel/ulysses.h"

namespace strand::parallel {
namespace {

// Note [GQA over Ulysses]: query head h reads KV head h / (Hq / Hkv). Rank j of the Ulysses
// group receives query heads [j*Hq/u, (j+1)*Hq/u).
// - Hkv % u == 0: it also receives KV heads [j*Hkv/u, (j+1)*Hkv/u), and local query head i
//   (global j*Hq/u + i) reads local KV head i / (Hq/Hkv), which is global KV head
//   j*Hkv/u + i/(Hq/Hkv) = (j*Hq/u + i) / (Hq/Hkv) since Hq/Hkv divides j*Hq/u. Right as it is.
// - u % Hkv == 0: the KV heads are repeated u/Hkv times first (head c is a copy of head
//   c / (u/Hkv)), so rank j receives one KV head, the copy of head j / (u/Hkv). Its query heads
//   lie in one KV group of Hq/Hkv = (Hq/u)(u/Hkv) heads, the group of head j*Hq/u / (Hq/Hkv)
//   = j / (u/Hkv): the same head. The copies' gradients are summed back by repeat_kv_heads.

// Note [bfloat16 with repeated KV heads]: the ring returns bfloat16 gradients for bfloat16
// inputs, so each repeated copy's dK, dV would be rounded before repeat_kv_heads sums the
// copies, and the rounding error of partials that cancel can exceed a bfloat16 ulp of the sum.
// There K and V are widened to float32 before the repeat (and q after its exchange): the ring
// computes bfloat16 in float32 and sends float32 blocks anyway, so only the KV exchange grows,
// and every gradient is rounded to bfloat16 once, as one rank's attention does.

// kv ready for the exchange: as it is, or (widened if asked, then) with its heads repeated so
// that u splits them.
Tensor kv_for_exchange(const Tensor& kv, int64_t u, bool widen) {
  const int64_t kv_heads = kv.shape()[1];
  if (kv_heads % u == 0) return kv;
  return repeat_kv_heads(widen ? ops::to_dtype(kv, DType::F32) : kv, u / kv_heads);
}

ops::AttentionOutput hybrid_attention_impl(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                           double scale, Group& ulysses, Group& ring, const SequenceLayout& layout,
                                           std::shared_ptr<Group> ring_owner) {
  // ulysses_attention is the caller that hands over its ring of one.
  const char* op = ring_owner != nullptr ? "ulysses_attention" : "hybrid_attention";
  ops::check_attention_inputs(op, q, k, v);
  const int64_t u = ulysses.size(), ring_size = ring.size();
  const int64_t q_heads = q.shape()[1], kv_heads = k.shape()[1], n = q.shape()[2];
  STRAND_CHECK(k.shape()[2] == n, ShapeError, op, ": q ", shape_str(q.shape()), " and k ", shape_str(k.shape()),
               " must hold the same rows of the sequence");
  STRAND_CHECK(layout.parts() == u * ring_size, ValueError, op, ": the layout (", layout.describe(), ") has ",
               layout.parts(), " parts, but ulysses (", u, ") x ring (", ring_size, ") = ", u * ring_size, " ranks");
  STRAND_CHECK(layout.local_len() == n, ShapeError, op, ": q ", shape_str(q.shape()), " holds ", n,
               " rows, but the layout (", layout.describe(), ") gives each rank ", layout.local_len());
  STRAND_CHECK(q_heads % u == 0, ShapeError, op, ": the Hq = ", q_heads, " query heads of q ", shape_str(q.shape()),
               " do not split over the u = ", u, " ranks of the Ulysses group");
  STRAND_CHECK(kv_heads % u == 0 || u % kv_heads == 0, ShapeError, op, ": Hkv = ", kv_heads, " kv heads (k ",
               shape_str(k.shape()), ", Hq = ", q_heads, ") over u = ", u,
               " Ulysses ranks: u must divide Hkv or Hkv divide u");

  if (u == 1 && ring_size == 1) {
    // One rank holds the whole sequence; every layout over one part is in position order.
    MaskSpec local = mask;
    local.q_offset = 0;
    local.k_offset = 0;
    return ops::attention(q, k, v, local, scale);
  }
  if (u == 1) return ring_attention(q, k, v, mask, scale, ring, layout);

  // Every seq_to_heads node co-owns the ring of one (when there is one): the ring node below
  // holds them, so the ring lives as long as the graph that reads it.
  const bool widen = q.dtype() == DType::BF16 && kv_heads % u != 0;  // Note [bfloat16 with repeated KV heads]
  Tensor qh = internal::seq_to_heads(q, ulysses, ring_owner);
  if (widen) qh = ops::to_dtype(qh, DType::F32);
  const Tensor kh = internal::seq_to_heads(kv_for_exchange(k, u, widen), ulysses, ring_owner);
  const Tensor vh = internal::seq_to_heads(kv_for_exchange(v, u, widen), ulysses, ring_owner);
  const ops::AttentionOutput part = ring_attention(qh, kh, vh, mask, scale, ring, layout.gathered(static_cast<int>(u)));
  const Tensor o = widen ? ops::to_dtype(part.o, q.dtype()) : part.o;
  return {heads_to_seq(o, ulysses), heads_to_seq(part.lse, ulysses)};
}

}  // namespace

ops::AttentionOutput hybrid_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                      double scale, Group& ulysses, Group& ring, const SequenceLayout& layout) {
  return hybrid_attention_impl(q, k, v, mask, scale, ulysses, ring, layout, nullptr);
}

namespace internal {

ops::AttentionOutput hybrid_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                      double scale, Group& ulysses, Group& ring, const SequenceLayout& layout,
                                      std::shared_ptr<Group> ring_owner) {
  return hybrid_attention_impl(q, k, v, mask, scale, ulysses, ring, layout, std::move(ring_owner));
}

}  // namespace internal

}  // namespace strand::parallel
