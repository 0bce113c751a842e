// Ring attention over any sequence layout: the schedule and the messages. The forward sends K/V
// blocks around the ring and merges partial results per query segment by lse; its backward node
// sends K/V again with the dK/dV accumulators one step behind. Every block computed is the
// segment step of framework/ops/attention_contract.h, and every merge is its one merge.
//
// Note [Ring schedule]
// Rank r holds the rows of layout.segments(r). At step s it holds the K/V rows of rank
// src = (r - s) mod P and computes every (own query segment, src key segment) pair that the mask
// does not leave wholly empty (MaskPlan::classify on global positions), each a segment step
// (ops/attention_contract.h) on row ranges of the local tensors. The schedule is computed on
// every rank from the global plan, so every rank agrees on it without a message:
// - Zigzag + causal needs no special case: at step 0 a rank computes its two chunks' diagonal
//   pairs and (late chunk, early chunk); from a lower source both its chunks against the source's
//   early chunk; from a higher source its late chunk against both of the source's chunks. Every
//   rank computes the same number of attending pairs at a step, two chunks' squares' worth
//   (ring_step_pairs() counts them; tests/parallel/ring_mpitest.cpp asserts it).
// - Early stop: `steps` is one more than the last step at which any rank has a pair; K/V stop
//   travelling after it (a causal window shorter than a rank's rows needs 2 steps of P).
// - Backward (as ring-flash-attention): K/V travel as in the forward; the dK/dV accumulator of
//   block src follows one step behind. At step s a rank computes src's share into private
//   buffers while src's accumulator is in flight from the previous rank, then waits, adds and
//   sends it on, so the transfer overlaps the compute. After the last step the accumulator sits
//   steps-1 hops downstream of its owner and goes straight home.
#include "parallel/ring.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "framework/autograd/node.h"
#include "framework/core/error.h"
#include "framework/ops/attention_contract.h"

namespace strand::parallel {
namespace {

using ops::attention_rows;

// Tags of one call: forward step s sends K, V with kTagBase + 2s + {0, 1}; backward step s
// sends K, V with kBwd + 4s + {0, 1} and the dK, dV accumulators with kBwd + 4s + {2, 3}, and
// the accumulators go home with kBwd + 4P + {0, 1}, where kBwd = kTagBase + 2P. Distinct per
// step, so a fast rank's next block never matches a slow rank's pending receive (MPI keeps order
// per tag, so repeated calls are safe too).
constexpr int kTagBase = 7100;

// MPI moves a large message only while a rank is inside an MPI call (no progress thread), so the
// kernels run on slices of at most this many rows of a pair, with a progress poll between them:
// a transfer then proceeds during the compute instead of at the wait. 512 rows keep a slice's
// compute far above the bookkeeping (a few row copies of D floats) it adds.
constexpr int64_t kSliceRows = 512;

// The tensor the kernels read and the ring sends: contiguous, in its own dtype. bfloat16 q, k, v
// and d_o go to the kernels as they are (the bf16 tiles compute with float32 accumulation), so
// K/V blocks travel at half float32's bytes; o, lse and the gradients they give back are float32
// (ops::attention_compute_dtype), and so are the dK/dV accumulators that travel.
Tensor kernel_tensor(const Tensor& t) { return t.is_contiguous() ? t : t.copy_as(t.dtype(), t.device()); }

// One (query segment, key segment) pair: indices into this rank's and the source rank's segments.
struct SegmentPair {
  int q = 0;
  int k = 0;
};

// Note [Ring schedule]: the pairs each rank computes at each step, the same on every rank.
struct RingPlan {
  int size = 1;   // P
  int steps = 1;  // ring steps that run; K/V travel between them
  std::vector<std::vector<std::vector<SegmentPair>>> pairs;  // [rank][step]
  std::vector<std::vector<int64_t>> first_row;               // [rank][segment]: its first local row
};

bool pair_in_reach(const MaskPlan& plan, int64_t batch, const Segment& q, const Segment& k) {
  for (int64_t b = 0; b < batch; ++b)
    if (plan.classify(b, q.start, q.start + q.length, k.start, k.start + k.length) != TileClass::Empty)
      return true;
  return false;
}

// The mask with positions over the whole sequence (offsets zero, seq_len set), checked against the layout.
MaskSpec global_mask(const char* op, const MaskSpec& mask, const SequenceLayout& layout) {
  MaskSpec global = mask;
  global.q_offset = 0;
  global.k_offset = 0;
  if (global.seq_len == 0) global.seq_len = layout.seq_len();
  STRAND_CHECK(global.seq_len == layout.seq_len(), ValueError, op, ": mask.seq_len ", global.seq_len,
               " differs from the layout's ", layout.seq_len(), " positions (", layout.describe(), ")");
  return global;
}

RingPlan plan_ring(const MaskPlan& plan, const SequenceLayout& layout, int64_t batch) {
  RingPlan rp;
  rp.size = layout.parts();
  const int p_size = rp.size;
  rp.pairs.assign(static_cast<size_t>(p_size), std::vector<std::vector<SegmentPair>>(static_cast<size_t>(p_size)));
  rp.first_row.resize(static_cast<size_t>(p_size));
  int last = 0;
  for (int r = 0; r < p_size; ++r) {
    const std::vector<Segment>& own = layout.segments(r);
    int64_t row = 0;
    for (const Segment& seg : own) {
      rp.first_row[static_cast<size_t>(r)].push_back(row);
      row += seg.length;
    }
    for (int s = 0; s < p_size; ++s) {
      const std::vector<Segment>& src = layout.segments((r - s + p_size) % p_size);
      auto& list = rp.pairs[static_cast<size_t>(r)][static_cast<size_t>(s)];
      for (size_t i = 0; i < own.size(); ++i)
        for (size_t j = 0; j < src.size(); ++j)
          if (pair_in_reach(plan, batch, own[i], src[j])) list.push_back({static_cast<int>(i), static_cast<int>(j)});
      if (!list.empty()) last = std::max(last, s);
    }
  }
  rp.steps = last + 1;
  return rp;
}

using Requests = std::vector<std::unique_ptr<Request>>;

void wait_all(Requests& reqs) {
  for (auto& r : reqs) r->wait();
  reqs.clear();
}

// Lets the transport move pending messages between kernel calls (MPI progresses on calls).
void progress(Requests& reqs) {
  for (auto& r : reqs) r->test();
}

// One travelling block of a ring pass: this rank's own tensor at step 0, then two buffers taking
// turns, so the block being sent is never the one being received into and the caller's (or the
// graph's saved) tensor is never written. Buffers are allocated when a step first needs them.
struct RingBlock {
  Tensor local;
  Tensor buffers[2];
  explicit RingBlock(Tensor own) : local(std::move(own)) {}
  Tensor& current(int step) { return step == 0 ? local : buffers[(step - 1) % 2]; }
  Tensor& incoming(int step) {
    Tensor& b = buffers[step % 2];
    if (!b.defined()) b = Tensor::empty(local.shape(), local.dtype());
    return b;
  }
};

// What the forward and its backward share: the group, the layout, the global mask and the schedule.
struct RingCall {
  Group* ring = nullptr;
  int rank = 0, size = 1, next = 0, prev = 0;
  SequenceLayout layout;
  MaskSpec mask;  // global positions; each pair sets q_offset and k_offset
  double scale = 1.0;
  bool compute_only = false;
  std::shared_ptr<const RingPlan> plan;
  std::shared_ptr<const MaskPlan> mask_plan;  // of `mask` over the whole sequence
  int64_t batch = 1;

  // Local rows [first, last) of query segment `qi` that attend some key of global positions
  // [k0, k1) in any batch row (empty when first >= last).
  void query_rows_reaching(int qi, int64_t k0, int64_t k1, int64_t& first, int64_t& last) const {
    const Segment& seg = layout.segments(rank)[static_cast<size_t>(qi)];
    first = seg.length;
    last = 0;
    for (int64_t b = 0; b < batch; ++b) {
      int64_t lo, hi;
      mask_plan->query_reach(b, k0, k1, lo, hi);
      lo = std::max(lo, seg.start) - seg.start;
      hi = std::min(hi, seg.start + seg.length) - seg.start;
      if (lo < hi) {
        first = std::min(first, lo);
        last = std::max(last, hi);
      }
    }
  }

  const std::vector<SegmentPair>& pairs(int step) const {
    return plan->pairs[static_cast<size_t>(rank)][static_cast<size_t>(step)];
  }
  int source(int step) const { return (rank - step + size) % size; }
  int64_t row_of(int r, int segment) const {
    return plan->first_row[static_cast<size_t>(r)][static_cast<size_t>(segment)];
  }
  // The global mask with the pair's segments as the segment step's query and key row 0.
  MaskSpec pair_mask(int src, const SegmentPair& pr) const {
    MaskSpec m = mask;
    m.q_offset = layout.segments(rank)[static_cast<size_t>(pr.q)].start;
    m.k_offset = layout.segments(src)[static_cast<size_t>(pr.k)].start;
    return m;
  }
};

// Sets rows [row, row + len) of a contiguous [B, H, n, D] (or [B, H, n]) tensor to value.
void fill_rows(const Tensor& t, int64_t row, int64_t len, double value) { attention_rows(t, row, len).fill_(value); }

// The forward of one call into o [B, Hq, n, D] and lse [B, Hq, n] (contiguous, compute dtype).
void ring_forward(const RingCall& c, const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse) {
  const std::vector<Segment>& own = c.layout.segments(c.rank);
  std::vector<char> started(own.size(), 0);
  RingBlock k_block(k), v_block(v);
  const int64_t batch = q.shape()[0], heads = q.shape()[1], d = q.shape()[3];
  for (int step = 0; step < c.plan->steps; ++step) {
    const int src = c.source(step), tag = kTagBase + 2 * step;
    const Tensor& cur_k = c.compute_only ? k : k_block.current(step);
    const Tensor& cur_v = c.compute_only ? v : v_block.current(step);
    Requests kv;
    if (!c.compute_only && step + 1 < c.plan->steps) {  // the next block travels while this one is computed
      kv.push_back(c.ring->irecv(k_block.incoming(step), c.prev, tag));
      kv.push_back(c.ring->irecv(v_block.incoming(step), c.prev, tag + 1));
      kv.push_back(c.ring->isend(cur_k, c.next, tag));
      kv.push_back(c.ring->isend(cur_v, c.next, tag + 1));
    }
    for (const SegmentPair& pr : c.pairs(step)) {
      const size_t qi = static_cast<size_t>(pr.q);
      const int64_t q_row = c.row_of(c.rank, pr.q), q_len = own[qi].length;
      const int64_t k_row = c.row_of(src, pr.k), k_len = c.layout.segments(src)[static_cast<size_t>(pr.k)].length;
      for (int64_t i0 = 0; i0 < q_len; i0 += kSliceRows) {  // query rows are independent: slice them
        const int64_t rows = std::min(kSliceRows, q_len - i0);
        MaskSpec m = c.pair_mask(src, pr);
        m.q_offset += i0;
        const Tensor qs = attention_rows(q, q_row + i0, rows);
        const Tensor ks = attention_rows(cur_k, k_row, k_len), vs = attention_rows(cur_v, k_row, k_len);
        const Tensor os = attention_rows(o, q_row + i0, rows), ls = attention_rows(lse, q_row + i0, rows);
        if (!started[qi]) {  // the first pair of a segment writes o and lse in place
          ops::attention_segment_forward(qs, ks, vs, m, c.scale, os, ls);
        } else {
          const Tensor po = Tensor::empty({batch, heads, rows, d}, o.dtype());
          const Tensor pl = Tensor::empty({batch, heads, rows}, o.dtype());
          ops::attention_segment_forward(qs, ks, vs, m, c.scale, po, pl);
          ops::attention_merge(os, ls, po, pl, os, ls);
        }
        progress(kv);
      }
      started[qi] = 1;
    }
    wait_all(kv);
  }
  for (size_t i = 0; i < own.size(); ++i)  // segments no key reaches: o = 0, lse = -inf
    if (!started[i]) {
      const int64_t row = c.row_of(c.rank, static_cast<int>(i));
      fill_rows(o, row, own[i].length, 0.0);
      fill_rows(lse, row, own[i].length, -std::numeric_limits<double>::infinity());
    }
}

// The backward of one call: dq [B, Hq, n, D] and dk, dv [B, Hkv, n, D] of this rank's rows.
void ring_backward(const RingCall& c, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                   const Tensor& lse, const Tensor& d_o, const Tensor& d_lse, Tensor& dq, Tensor& dk, Tensor& dv) {
  const int steps = c.plan->steps, kbwd = kTagBase + 2 * c.size;
  const Shape ks = k.shape();
  const DType gt = ops::attention_compute_dtype(k.dtype());  // of the gradients and accumulators
  RingBlock k_block(k), v_block(v);
  dq = Tensor::zeros(q.shape(), gt);
  // acc[slot]: the travelling dK, dV of the block computed at a step of that parity; part: this
  // step's share while the accumulator is in flight.
  Tensor acc_k[2], acc_v[2], part_k, part_v;
  Requests sent[2], kv;
  for (int step = 0; step < steps; ++step) {
    const int src = c.source(step), slot = step % 2, tag = kbwd + 4 * step;
    const std::vector<Segment>& src_segs = c.layout.segments(src);
    const Tensor& cur_k = c.compute_only ? k : k_block.current(step);
    const Tensor& cur_v = c.compute_only ? v : v_block.current(step);
    if (!c.compute_only && step + 1 < steps) {
      kv.push_back(c.ring->irecv(k_block.incoming(step), c.prev, tag));
      kv.push_back(c.ring->irecv(v_block.incoming(step), c.prev, tag + 1));
      kv.push_back(c.ring->isend(cur_k, c.next, tag));
      kv.push_back(c.ring->isend(cur_v, c.next, tag + 1));
    }
    wait_all(sent[slot]);  // acc[slot] was sent on two steps ago
    if (!acc_k[slot].defined()) {  // received into, or written at step 0; compute-only adds to it
      acc_k[slot] = c.compute_only ? Tensor::zeros(ks, gt) : Tensor::empty(ks, gt);
      acc_v[slot] = c.compute_only ? Tensor::zeros(ks, gt) : Tensor::empty(ks, gt);
    }
    Requests inbox;
    if (step > 0) {
      if (!c.compute_only) {  // src's accumulator, sent by the previous rank at the end of its step - 1
        inbox.push_back(c.ring->irecv(acc_k[slot], c.prev, tag - 4 + 2));
        inbox.push_back(c.ring->irecv(acc_v[slot], c.prev, tag - 4 + 3));
      }
      if (!part_k.defined()) {
        part_k = Tensor::empty(ks, gt);
        part_v = Tensor::empty(ks, gt);
      }
    }
    Tensor& into_k = step == 0 ? acc_k[slot] : part_k;
    Tensor& into_v = step == 0 ? acc_v[slot] : part_v;
    std::vector<char> touched(src_segs.size(), 0);
    for (const SegmentPair& pr : c.pairs(step)) {
      const size_t kj = static_cast<size_t>(pr.k);
      const int64_t q_row = c.row_of(c.rank, pr.q);
      const int64_t k_row = c.row_of(src, pr.k), k_len = src_segs[kj].length;
      // Sliced along keys (the backward kernel's own partition): each slice's dK, dV rows are its
      // own, written in place by the first pair that reaches the key segment (the kernel
      // overwrites its outputs) and added from scratch by later ones. A slice reads only the
      // query rows that reach it, so that a window's slices do not each re-read the segment.
      for (int64_t j0 = 0; j0 < k_len; j0 += kSliceRows) {
        const int64_t rows = std::min(kSliceRows, k_len - j0), kg0 = src_segs[kj].start + j0;
        int64_t i0, i1;
        c.query_rows_reaching(pr.q, kg0, kg0 + rows, i0, i1);
        if (i0 >= i1) {
          if (!touched[kj]) {
            fill_rows(into_k, k_row + j0, rows, 0.0);
            fill_rows(into_v, k_row + j0, rows, 0.0);
          }
          continue;
        }
        MaskSpec m = c.pair_mask(src, pr);
        m.q_offset += i0;
        m.k_offset += j0;
        const int64_t qr = q_row + i0, nq = i1 - i0, kr = k_row + j0;
        ops::SegmentGrads grads{attention_rows(dq, qr, nq), attention_rows(into_k, kr, rows),
                                attention_rows(into_v, kr, rows), true, touched[kj] != 0};
        ops::attention_segment_backward(attention_rows(q, qr, nq), attention_rows(cur_k, kr, rows),
                                        attention_rows(cur_v, kr, rows), attention_rows(o, qr, nq),
                                        attention_rows(lse, qr, nq), attention_rows(d_o, qr, nq),
                                        attention_rows(d_lse, qr, nq), m, c.scale, grads);
        for (Requests* pending : {&kv, &inbox, &sent[0], &sent[1]}) progress(*pending);
      }
      touched[kj] = 1;
    }
    if (step == 0) {  // rows no query reached carry zero into the accumulator
      for (size_t j = 0; j < src_segs.size(); ++j)
        if (!touched[j]) {
          fill_rows(acc_k[slot], c.row_of(src, static_cast<int>(j)), src_segs[j].length, 0.0);
          fill_rows(acc_v[slot], c.row_of(src, static_cast<int>(j)), src_segs[j].length, 0.0);
        }
    } else {
      wait_all(inbox);
      for (size_t j = 0; j < src_segs.size(); ++j)
        if (touched[j]) {
          const int64_t row = c.row_of(src, static_cast<int>(j)), len = src_segs[j].length;
          ops::attention_add_rows(attention_rows(acc_k[slot], row, len), attention_rows(part_k, row, len));
          ops::attention_add_rows(attention_rows(acc_v[slot], row, len), attention_rows(part_v, row, len));
        }
    }
    if (!c.compute_only && step + 1 < steps) {
      sent[slot].push_back(c.ring->isend(acc_k[slot], c.next, tag + 2));
      sent[slot].push_back(c.ring->isend(acc_v[slot], c.next, tag + 3));
    }
    wait_all(kv);
  }

  const int last = steps - 1, slot = last % 2;
  if (c.compute_only || last == 0) {
    dk = acc_k[slot];
    dv = acc_v[slot];
  } else {  // the accumulator here belongs to rank - last; ours is at rank + last
    const int owner = (c.rank - last + c.size) % c.size, holder = (c.rank + last) % c.size;
    const int home = kbwd + 4 * c.size;
    dk = Tensor::empty(ks, gt);
    dv = Tensor::empty(ks, gt);
    Requests reqs;
    reqs.push_back(c.ring->irecv(dk, holder, home));
    reqs.push_back(c.ring->irecv(dv, holder, home + 1));
    reqs.push_back(c.ring->isend(acc_k[slot], owner, home));
    reqs.push_back(c.ring->isend(acc_v[slot], owner, home + 1));
    wait_all(reqs);
  }
  wait_all(sent[0]);
  wait_all(sent[1]);
}

struct RingAttentionBackward final : autograd::Node {
  RingCall call;
  DType dtype;  // of q, k, v

  RingAttentionBackward(RingCall c, DType dt) : Node("ring_attention"), call(std::move(c)), dtype(dt) {}

  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const DType ct = ops::attention_compute_dtype(dtype);
    const Tensor q = kernel_tensor(saved(0)), k = kernel_tensor(saved(1)), v = kernel_tensor(saved(2));
    const Tensor o = kernel_tensor(saved(3)), lse = kernel_tensor(saved(4));
    // d_o goes to the kernels in q's dtype, as in one rank's attention (ops/attention.cpp).
    const Tensor d_o = kernel_tensor(g[0].dtype() == dtype ? g[0] : g[0].copy_as(dtype, g[0].device()));
    const Tensor d_lse = kernel_tensor(g[1]);
    Tensor dq, dk, dv;
    ring_backward(call, q, k, v, o, lse, d_o, d_lse, dq, dk, dv);
    if (dtype == ct) return {dq, dk, dv};
    return {dq.copy_as(dtype, dq.device()), dk.copy_as(dtype, dq.device()), dv.copy_as(dtype, dq.device())};
  }
};

void check_inputs(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, const Group& ring,
                  const SequenceLayout& layout) {
  ops::check_attention_inputs(op, q, k, v);
  STRAND_CHECK(layout.parts() == ring.size(), ValueError, op, ": the layout (", layout.describe(), ") has ",
               layout.parts(), " parts but the ring has ", ring.size(), " ranks");
  const int64_t n = layout.local_len();
  STRAND_CHECK(q.shape()[2] == n && k.shape()[2] == n, ShapeError, op, ": q ", shape_str(q.shape()), " and k ",
               shape_str(k.shape()), " must hold the ", n, " rows per rank of the layout (", layout.describe(), ")");
}

}  // namespace

ops::AttentionOutput ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                    double scale, Group& ring, const SequenceLayout& layout,
                                    const RingOptions& options) {
  const char* op = "ring_attention";
  check_inputs(op, q, k, v, ring, layout);
  const int64_t batch = q.shape()[0], n = q.shape()[2], d = q.shape()[3];
  RingCall call;
  call.ring = &ring;
  call.rank = ring.rank();
  call.size = ring.size();
  call.next = (call.rank + 1) % call.size;
  call.prev = (call.rank + call.size - 1) % call.size;
  call.layout = layout;
  call.mask = global_mask(op, mask, layout);
  // Validates the spec against the whole sequence on every rank alike, before any message is posted.
  call.mask_plan = std::make_shared<const MaskPlan>(call.mask, batch, layout.seq_len(), layout.seq_len(), op);
  call.plan = std::make_shared<const RingPlan>(plan_ring(*call.mask_plan, layout, batch));
  call.batch = batch;
  call.scale = ops::attention_scale(scale, d);
  call.compute_only = options.compute_only;

  const DType ct = ops::attention_compute_dtype(q.dtype());
  const Tensor qc = kernel_tensor(q), kc = kernel_tensor(k), vc = kernel_tensor(v);  // bf16 stays bf16
  Tensor o = Tensor::empty(q.shape(), ct), lse = Tensor::empty({batch, q.shape()[1], n}, ct);
  ring_forward(call, qc, kc, vc, o, lse);
  Tensor o_out = q.dtype() == ct ? o : o.copy_as(q.dtype(), o.device());
  if (auto node = autograd::make_node<RingAttentionBackward>({&q, &k, &v}, std::move(call), q.dtype())) {
    for (const Tensor& t : {q, k, v, o, lse}) node->save(t);
    autograd::set_history(node, {&o_out, &lse});
  }
  return {o_out, lse};
}

ops::AttentionOutput ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                    double scale, Group& ring) {
  ops::check_attention_inputs("ring_attention", q, k, v);
  const SequenceLayout layout = SequenceLayout::make(LayoutKind::Contiguous, ring.size() * q.shape()[2], ring.size());
  return ring_attention(q, k, v, mask, scale, ring, layout);
}

int ring_steps(const MaskSpec& mask, const SequenceLayout& layout, int64_t batch) {
  const MaskSpec global = global_mask("ring_steps", mask, layout);
  const MaskPlan plan(global, batch, layout.seq_len(), layout.seq_len(), "ring_steps");
  return plan_ring(plan, layout, batch).steps;
}

std::vector<std::vector<int64_t>> ring_step_pairs(const MaskSpec& mask, const SequenceLayout& layout,
                                                  int64_t batch) {
  const char* op = "ring_step_pairs";
  const MaskSpec global = global_mask(op, mask, layout);
  const MaskPlan plan(global, batch, layout.seq_len(), layout.seq_len(), op);
  const RingPlan rp = plan_ring(plan, layout, batch);
  std::vector<std::vector<int64_t>> counts(static_cast<size_t>(rp.size),
                                           std::vector<int64_t>(static_cast<size_t>(rp.steps), 0));
  for (int r = 0; r < rp.size; ++r)
    for (int s = 0; s < rp.steps; ++s) {
      const std::vector<Segment>& src = layout.segments((r - s + rp.size) % rp.size);
      for (const SegmentPair& pr : rp.pairs[static_cast<size_t>(r)][static_cast<size_t>(s)]) {
        const Segment& qs = layout.segments(r)[static_cast<size_t>(pr.q)];
        const Segment& ks = src[static_cast<size_t>(pr.k)];
        MaskSpec m = global;
        m.q_offset = qs.start;
        m.k_offset = ks.start;
        const MaskPlan pair_plan(m, batch, qs.length, ks.length, op);
        int64_t& count = counts[static_cast<size_t>(r)][static_cast<size_t>(s)];
        for (int64_t b = 0; b < batch; ++b) count += pair_plan.count_pairs(b);
      }
    }
  return counts;
}

}  // namespace strand::parallel
