// Ulysses exchanges: seq_to_heads / heads_to_seq (one all-to-all each, each the other's
// backward), repeat_kv_heads (GQA on more ranks than KV heads), and Ulysses attention.
#include "parallel/ulysses.h"

#include <string>
#include <utility>
#include <vector>

#include "framework/autograd/node.h"
#include "framework/core/error.h"
#include "framework/ops/reduce.h"
#include "parallel/hybrid.h"

namespace strand::parallel {
namespace {

// Note [Ulysses exchange]: on u ranks, x [B, H, n, D] is viewed as [B, u, H/u, n, D] and packed
// (one strided gather) as [u, B, H/u, n, D], so that block j of the send buffer, the heads of
// rank j, is contiguous. After the all-to-all, block j holds rank j's n rows of this rank's
// heads; viewing the receive buffer as [B, H/u, u, n, D] and packing again puts rank j's rows
// at [j*n, (j+1)*n) of a [B, H/u, u*n, D] tensor. heads_to_seq runs the same steps backwards.
// An lse-shaped [B, H, n] tensor is the same with D = 1.

// The [B, H, N, D] sizes and strides of x (dim 4, or dim 3 read as D = 1).
struct HeadView {
  int64_t batch, heads, rows, dim;
  int64_t s_batch, s_head, s_row, s_dim;
};

HeadView head_view(const Tensor& x) {
  const Shape& sh = x.shape();
  const Shape& st = x.strides();
  if (x.dim() == 4) return {sh[0], sh[1], sh[2], sh[3], st[0], st[1], st[2], st[3]};
  return {sh[0], sh[1], sh[2], 1, st[0], st[1], st[2], 1};
}

void check_exchange_input(const char* op, const Tensor& x, Group& group) {
  STRAND_CHECK(x.defined(), ValueError, op, ": the input is undefined");
  STRAND_CHECK(x.dim() == 3 || x.dim() == 4, ShapeError, op, ": expects [B, H, N, D] or [B, H, N], got ",
               shape_str(x.shape()));
  STRAND_CHECK(is_floating(x.dtype()), DTypeError, op, ": expects a floating dtype, got ", dtype_name(x.dtype()),
               " for ", shape_str(x.shape()));
  STRAND_CHECK(group.size() >= 1, ValueError, op, ": empty group");
}

// The output shape: x's rank, with heads and rows replaced.
Shape with_heads_rows(const Tensor& x, int64_t heads, int64_t rows) {
  Shape s = x.shape();
  s[1] = heads;
  s[2] = rows;
  return s;
}

// One all-to-all of `send` (contiguous [u, ...]) over the group; a group of one is the identity.
Tensor exchange(const Tensor& send, Group& group) {
  if (group.size() == 1) return send;
  Tensor recv = Tensor::empty(send.shape(), send.dtype(), send.device());
  group.all_to_all(send, recv);
  return recv;
}

// The data movement of seq_to_heads (no autograd).
Tensor seq_to_heads_data(const Tensor& x, Group& group) {
  const int64_t u = group.size();
  const HeadView v = head_view(x);
  const int64_t hl = v.heads / u;
  // [u, B, H/u, n, D] read through x's strides: block j = heads [j*H/u, (j+1)*H/u).
  const Tensor packed = x.as_strided({u, v.batch, hl, v.rows, v.dim},
                                     {hl * v.s_head, v.s_batch, v.s_head, v.s_row, v.s_dim}, x.offset())
                            .copy_as(x.dtype(), x.device());
  const Tensor recv = exchange(packed, group);
  // recv [u, B, H/u, n, D] (block j from rank j) read as [B, H/u, u, n, D], packed contiguous.
  const int64_t block = v.batch * hl * v.rows * v.dim;
  const Tensor out = recv.as_strided({v.batch, hl, u, v.rows, v.dim},
                                     {hl * v.rows * v.dim, v.rows * v.dim, block, v.dim, 1}, recv.offset())
                         .copy_as(x.dtype(), x.device());
  return out.as_strided(with_heads_rows(x, hl, u * v.rows), contiguous_strides(with_heads_rows(x, hl, u * v.rows)),
                        out.offset());
}

// The data movement of heads_to_seq (no autograd).
Tensor heads_to_seq_data(const Tensor& x, Group& group) {
  const int64_t u = group.size();
  const HeadView v = head_view(x);
  const int64_t n = v.rows / u, hl = v.heads;
  // [u, B, H/u, n, D] read through x's strides: block j = rows [j*n, (j+1)*n), rank j's rows.
  const Tensor packed = x.as_strided({u, v.batch, hl, n, v.dim},
                                     {n * v.s_row, v.s_batch, v.s_head, v.s_row, v.s_dim}, x.offset())
                            .copy_as(x.dtype(), x.device());
  const Tensor recv = exchange(packed, group);
  // recv [u, B, H/u, n, D] (block j: heads [j*H/u, (j+1)*H/u) from rank j) read as [B, u, H/u, n, D].
  const int64_t block = v.batch * hl * n * v.dim;
  const Tensor out = recv.as_strided({v.batch, u, hl, n, v.dim}, {hl * n * v.dim, block, n * v.dim, v.dim, 1},
                                     recv.offset())
                         .copy_as(x.dtype(), x.device());
  return out.as_strided(with_heads_rows(x, u * hl, n), contiguous_strides(with_heads_rows(x, u * hl, n)),
                        out.offset());
}

// Each exchange's backward is the other one.
struct SeqToHeadsBackward final : autograd::Node {
  Group* group;
  explicit SeqToHeadsBackward(Group* g) : Node("seq_to_heads"), group(g) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {heads_to_seq_data(g[0], *group)}; }
};

struct HeadsToSeqBackward final : autograd::Node {
  Group* group;
  explicit HeadsToSeqBackward(Group* g) : Node("heads_to_seq"), group(g) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {seq_to_heads_data(g[0], *group)}; }
};

// kv [B, Hkv, n, D] gradient of the repeated [B, Hkv * t, n, D]: the sum of each head's copies,
// in float32 for bfloat16 (ops::sum adds in a fixed order, so the result is deterministic).
struct RepeatKvHeadsBackward final : autograd::Node {
  int64_t times;
  explicit RepeatKvHeadsBackward(int64_t t) : Node("repeat_kv_heads"), times(t) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const DType dt = g[0].dtype(), ct = dt == DType::BF16 ? DType::F32 : dt;
    const Tensor gc = g[0].dtype() == ct && g[0].is_contiguous() ? g[0] : g[0].copy_as(ct, g[0].device());
    const Shape& s = gc.shape();
    const Shape grouped{s[0], s[1] / times, times, s[2], s[3]};
    const Tensor summed = ops::sum(gc.as_strided(grouped, contiguous_strides(grouped), gc.offset()), {2});
    return {summed.dtype() == dt ? summed : summed.copy_as(dt, summed.device())};
  }
};

}  // namespace

Tensor seq_to_heads(const Tensor& x, Group& group) {
  const char* op = "seq_to_heads";
  check_exchange_input(op, x, group);
  const int64_t u = group.size();
  STRAND_CHECK(x.shape()[1] % u == 0, ShapeError, op, ": the ", x.shape()[1], " heads of ", shape_str(x.shape()),
               " do not split over the ", u, " ranks of the group");
  Tensor y = seq_to_heads_data(x, group);
  if (auto node = autograd::make_node<SeqToHeadsBackward>({&x}, &group)) autograd::set_history(node, {&y});
  return y;
}

Tensor heads_to_seq(const Tensor& x, Group& group) {
  const char* op = "heads_to_seq";
  check_exchange_input(op, x, group);
  const int64_t u = group.size();
  STRAND_CHECK(x.shape()[2] % u == 0, ShapeError, op, ": the ", x.shape()[2], " rows of ", shape_str(x.shape()),
               " do not split over the ", u, " ranks of the group");
  Tensor y = heads_to_seq_data(x, group);
  if (auto node = autograd::make_node<HeadsToSeqBackward>({&x}, &group)) autograd::set_history(node, {&y});
  return y;
}

Tensor repeat_kv_heads(const Tensor& kv, int64_t times) {
  const char* op = "repeat_kv_heads";
  STRAND_CHECK(kv.defined() && kv.dim() == 4, ShapeError, op, ": expects kv [B, Hkv, n, D], got ",
               kv.defined() ? shape_str(kv.shape()) : std::string("an undefined tensor"));
  STRAND_CHECK(times >= 1, ValueError, op, ": times must be at least 1, got ", times, " for kv ",
               shape_str(kv.shape()));
  if (times == 1) return kv;
  const Shape& s = kv.shape();
  const Shape& st = kv.strides();
  // [B, Hkv, times, n, D] with stride 0 on the copy axis, packed: head i*times + c = head i.
  const Tensor packed =
      kv.as_strided({s[0], s[1], times, s[2], s[3]}, {st[0], st[1], 0, st[2], st[3]}, kv.offset())
          .copy_as(kv.dtype(), kv.device());
  const Shape out_shape{s[0], s[1] * times, s[2], s[3]};
  Tensor y = packed.as_strided(out_shape, contiguous_strides(out_shape), packed.offset());
  if (auto node = autograd::make_node<RepeatKvHeadsBackward>({&kv}, times)) autograd::set_history(node, {&y});
  return y;
}

ops::AttentionOutput ulysses_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                       double scale, Group& group, const SequenceLayout& layout) {
  return ulysses_exchange_attention("ulysses_attention", q, k, v, mask, scale, group, nullptr, layout);
}

}  // namespace strand::parallel
