// Hybrid sequence-parallel attention: Ulysses all-to-all inside groups of consecutive sp ranks,
// ring attention across the groups, and the inverse all-to-all of o and lse.
#include "parallel/hybrid.h"

#include <algorithm>
#include <vector>

#include "framework/core/error.h"
#include "framework/ops/join.h"
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
// There K and V are widened to float32 before the repeat (and q after its exchange), so that
// every gradient is rounded to bfloat16 once, as one rank's attention does; the KV exchange and
// the ring's K/V blocks then travel in float32, and the float32 kernels compute what the generic
// bf16 path does.

// kv ready for the exchange: as it is, or (widened if asked, then) with its heads repeated so
// that u splits them.
Tensor kv_for_exchange(const Tensor& kv, int64_t u, bool widen) {
  const int64_t kv_heads = kv.shape()[1];
  if (kv_heads % u == 0) return kv;
  return repeat_kv_heads(widen ? ops::to_dtype(kv, DType::F32) : kv, u / kv_heads);
}

// Attention of the rows of one rank that holds the whole sequence in `segments` (row order, not
// necessarily position order: zigzag): the rows are put in position order, attended locally with
// ops::attention, and o and lse put back in row order. Differentiable (slices and concats).
ops::AttentionOutput attention_of_segments(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                           double scale, const std::vector<Segment>& segments) {
  MaskSpec local = mask;
  local.q_offset = 0;
  local.k_offset = 0;
  if (segments.size() == 1) return ops::attention(q, k, v, local, scale);  // already in position order
  std::vector<size_t> by_position(segments.size());
  std::vector<int64_t> first_row(segments.size());
  int64_t row = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    by_position[i] = i;
    first_row[i] = row;
    row += segments[i].length;
  }
  std::sort(by_position.begin(), by_position.end(),
            [&](size_t a, size_t b) { return segments[a].start < segments[b].start; });
  auto to_positions = [&](const Tensor& x) {
    std::vector<Tensor> parts;
    for (size_t i : by_position) parts.push_back(ops::slice(x, 2, first_row[i], first_row[i] + segments[i].length));
    return ops::concat(parts, 2);
  };
  auto to_rows = [&](const Tensor& x) {  // position p sits at row p of x
    std::vector<Tensor> parts;
    for (const Segment& seg : segments) parts.push_back(ops::slice(x, 2, seg.start, seg.start + seg.length));
    return ops::concat(parts, 2);
  };
  const ops::AttentionOutput sorted = ops::attention(to_positions(q), to_positions(k), to_positions(v), local, scale);
  return {to_rows(sorted.o), to_rows(sorted.lse)};
}

}  // namespace

ops::AttentionOutput ulysses_exchange_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                                const MaskSpec& mask, double scale, Group& ulysses, Group* ring,
                                                const SequenceLayout& layout) {
  ops::check_attention_inputs(op, q, k, v);
  const int64_t u = ulysses.size(), ring_size = ring == nullptr ? 1 : ring->size();
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

  const SequenceLayout gathered = layout.gathered(static_cast<int>(u));
  if (u == 1 && ring_size > 1) return ring_attention(q, k, v, mask, scale, *ring, gathered);
  if (u == 1) return attention_of_segments(q, k, v, mask, scale, gathered.segments(0));

  const bool widen = q.dtype() == DType::BF16 && kv_heads % u != 0;  // Note [bfloat16 with repeated KV heads]
  Tensor qh = seq_to_heads(q, ulysses);
  if (widen) qh = ops::to_dtype(qh, DType::F32);
  const Tensor kh = seq_to_heads(kv_for_exchange(k, u, widen), ulysses);
  const Tensor vh = seq_to_heads(kv_for_exchange(v, u, widen), ulysses);
  const ops::AttentionOutput part = ring_size > 1 ? ring_attention(qh, kh, vh, mask, scale, *ring, gathered)
                                                  : attention_of_segments(qh, kh, vh, mask, scale, gathered.segments(0));
  const Tensor o = widen ? ops::to_dtype(part.o, q.dtype()) : part.o;
  return {heads_to_seq(o, ulysses), heads_to_seq(part.lse, ulysses)};
}

ops::AttentionOutput hybrid_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                      double scale, Group& ulysses, Group& ring, const SequenceLayout& layout) {
  return ulysses_exchange_attention("hybrid_attention", q, k, v, mask, scale, ulysses, &ring, layout);
}

}  // namespace strand::parallel
