// Attention row statistics and the attention transfer loss over sequence-parallel ranks
// (attention_stats.h): the keys gathered once, then the one-rank computation per segment.
#include "parallel/attention_stats.h"

#include <initializer_list>
#include <memory>
#include <span>
#include <vector>

#include "framework/autograd/node.h"
#include "framework/core/error.h"
#include "framework/ops/view.h"

namespace strand::parallel {
namespace {

// The ranks the rows are split over and where each rank's rows sit in the whole sequence. Under
// hybrid the sp ranks are ring x Ulysses, sp rank s = ring rank * u + Ulysses rank
// (SequenceShard::rank), and shard.layout is the sp-level layout (SequenceLayout::hybrid): the
// keys are gathered, and dk reduced, over both groups, Ulysses (consecutive sp ranks) first.
struct Split {
  Group* ring = nullptr;     // null when the sequence is not split over a ring
  Group* ulysses = nullptr;  // null when it is not split over a Ulysses group
  int parts = 1;             // sp ranks
  SequenceLayout layout;
  int64_t N = 0;  // the whole sequence

  // mine [1, M] -> every sp rank's [parts, M], in sp rank order.
  Tensor all_gather(const Tensor& mine) const {
    Tensor rows = mine;
    for (Group* g : {ulysses, ring}) {  // the inner index first: [u, M], then [ring x u, M]
      if (g == nullptr) continue;
      Tensor out = Tensor::empty({g->size() * rows.size(0), rows.size(1)}, rows.dtype(), rows.device());
      g->all_gather(rows, out);
      rows = out;
    }
    return rows;
  }
  // Sums `values` over every sp rank.
  void all_reduce(std::span<double> values) const {
    for (Group* g : {ulysses, ring})
      if (g != nullptr) g->all_reduce(values);
  }
};

Split split_of(const SequenceShard& shard, int64_t n, const char* what) {
  // A trainer's shard may name a group of size 1 beside the one the sequence is split over.
  Split sp;
  sp.ring = shard.ring_size() > 1 ? shard.ring : nullptr;
  sp.ulysses = shard.ulysses_size() > 1 ? shard.ulysses : nullptr;
  sp.parts = shard.size();
  sp.N = n * sp.parts;
  sp.layout = shard.layout ? *shard.layout : SequenceLayout::make(LayoutKind::Contiguous, sp.N, sp.parts);
  STRAND_CHECK(sp.layout.seq_len() == sp.N && sp.layout.parts() == sp.parts, ShapeError, what, ": ", n,
               " rows on each of ", sp.parts, " ranks do not make the layout (", sp.layout.describe(), ")");
  return sp;
}

// Every rank's rows of k [B, H, n, D], each placed at its global position: [B, H, N, D] values.
std::vector<double> gather_rows(const Tensor& k, const Split& sp) {
  const int parts = sp.parts;
  const int64_t BH = k.size(0) * k.size(1), n = k.size(2), D = k.size(3), N = sp.N;
  const Tensor mine = ops::reshape(k.detach().copy_as(k.dtype(), k.device()), {1, BH * n * D});
  const std::vector<double> gathered = sp.all_gather(mine).to_vector();
  std::vector<double> full(static_cast<size_t>(BH * N * D));
  for (int r = 0; r < parts; ++r) {
    int64_t row = 0;  // the rank's row, in its order
    for (const Segment& seg : sp.layout.segments(r))
      for (int64_t t = 0; t < seg.length; ++t, ++row)
        for (int64_t bh = 0; bh < BH; ++bh)
          for (int64_t x = 0; x < D; ++x)
            full[static_cast<size_t>((bh * N + seg.start + t) * D + x)] =
                gathered[static_cast<size_t>(((r * BH + bh) * n + row) * D + x)];
  }
  return full;
}

// The mask of one of this rank's segments against the whole gathered sequence.
MaskSpec segment_mask(const MaskSpec& mask, const Segment& seg, int64_t N) {
  MaskSpec m = mask;
  m.q_offset = seg.start;
  m.k_offset = 0;
  m.seq_len = N;
  return m;
}

// One side of the transfer on this rank: its own query rows and the gathered keys, as float64.
struct Side {
  std::vector<double> q, k;
  std::vector<uint8_t> keep;  // [B, n] when rows are sampled
  ops::AttentionHeadsView view;
  Side(const Tensor& qt, const Tensor& kt, double scale, const Split& sp)
      : q(qt.detach().copy_as(qt.dtype(), qt.device()).to_vector()), k(gather_rows(kt, sp)) {
    view.q = q.data();
    view.k = k.data();
    view.B = qt.size(0);
    view.H = qt.size(1);
    view.q_rows = qt.size(2);
    view.D = qt.size(3);
    view.Hkv = kt.size(1);
    view.Nk = sp.N;
    view.scale = ops::attention_scale(scale, view.D);
  }
  // Scores only the rows `sample` draws over the whole sequence, which every rank draws alike.
  void sample_rows(const ops::RowSample& sample, const Split& sp, int rank) {
    keep.assign(static_cast<size_t>(view.B * view.q_rows), 0);
    for (int64_t b = 0; b < view.B; ++b) {
      const std::vector<uint8_t> drawn = ops::drawn_rows(sample, b, 0, sp.N);
      int64_t row = 0;
      for (const Segment& seg : sp.layout.segments(rank))
        for (int64_t t = 0; t < seg.length; ++t, ++row)
          keep[static_cast<size_t>(b * view.q_rows + row)] = drawn[static_cast<size_t>(seg.start + t)];
    }
    view.keep = keep.data();
  }
  ops::AttentionHeadsView segment(int64_t row0, int64_t length) const {
    ops::AttentionHeadsView v = view;
    v.row0 = row0;
    v.Nq = length;
    return v;
  }
};

// Runs fn(view of the student, of the teacher, plan) on each of this rank's segments.
template <class Fn>
void each_segment(const Side& s, const Side& t, const MaskSpec& mask, const Split& sp, int rank, Fn&& fn) {
  int64_t row = 0;
  for (const Segment& seg : sp.layout.segments(rank)) {
    const MaskPlan plan(segment_mask(mask, seg, sp.N), s.view.B, seg.length, sp.N, "attention_transfer_loss");
    fn(s.segment(row, seg.length), t.segment(row, seg.length), plan);
    row += seg.length;
  }
}

struct ShardedTransferBackward final : autograd::Node {
  std::unique_ptr<Side> s, t;
  MaskSpec mask;
  Split sp;
  int rank;
  ops::AttentionTransferRows rows;
  double weight;  // the row sample's
  Shape q_shape, k_shape;
  DType dtype;
  Device device;  // of the student's q and k: the gradients go back there
  ShardedTransferBackward(std::unique_ptr<Side> s_, std::unique_ptr<Side> t_, MaskSpec m, Split split, int r,
                          ops::AttentionTransferRows rw, double w, Shape qs, Shape ks, DType dt, Device dev)
      : Node("parallel_attention_transfer_loss"), s(std::move(s_)), t(std::move(t_)), mask(std::move(m)),
        sp(std::move(split)), rank(r), rows(std::move(rw)), weight(w), q_shape(std::move(qs)), k_shape(std::move(ks)),
        dtype(dt), device(dev) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    std::vector<double> dq(s->q.size(), 0.0), dk_full(s->k.size(), 0.0);
    const double upstream = g[0].item() * weight;
    each_segment(*s, *t, mask, sp, rank, [&](const auto& sv, const auto& tv, const MaskPlan& plan) {
      ops::attention_transfer_grads(sv, tv, plan, rows, upstream, dq, dk_full);
    });
    // Every rank's queries read every key: this rank's dk rows are the sum of all ranks' shares.
    sp.all_reduce(std::span<double>(dk_full));
    const int64_t BH = k_shape[0] * k_shape[1], n = k_shape[2], D = k_shape[3];
    std::vector<double> dk(static_cast<size_t>(BH * n * D));
    int64_t row = 0;
    for (const Segment& seg : sp.layout.segments(rank))
      for (int64_t r = 0; r < seg.length; ++r, ++row)
        for (int64_t bh = 0; bh < BH; ++bh)
          for (int64_t x = 0; x < D; ++x)
            dk[static_cast<size_t>((bh * n + row) * D + x)] =
                dk_full[static_cast<size_t>((bh * sp.N + seg.start + r) * D + x)];
    auto placed = [&](const std::vector<double>& v, const Shape& shape) {
      const Tensor t = Tensor::from_vector(v, shape, dtype);  // host memory
      return device.is_cpu() ? t : t.copy_as(dtype, device);
    };
    return {placed(dq, q_shape), placed(dk, k_shape)};
  }
};

}  // namespace

ops::AttentionRowStats attention_row_stats(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask,
                                           double scale, const SequenceShard& shard) {
  if (shard.local()) return ops::attention_row_stats(q, k, lse, mask, scale);
  const Split sp = split_of(shard, k.size(2), "attention statistics");
  const int64_t n = k.size(2);
  const Tensor k_full = Tensor::from_vector(gather_rows(k, sp), {k.size(0), k.size(1), sp.N, k.size(3)}, k.dtype());

  // Each of this rank's segments at its global positions.
  ops::AttentionRowStats out;
  out.entropy.assign(static_cast<size_t>(q.size(0) * q.size(1) * n), 0.0);
  out.distance = out.entropy;
  int64_t row = 0;
  for (const Segment& seg : sp.layout.segments(shard.rank())) {
    const ops::AttentionRowStats part =
        ops::attention_row_stats(ops::slice(q, 2, row, row + seg.length), k_full,
                                 ops::slice(lse, 2, row, row + seg.length), segment_mask(mask, seg, sp.N), scale);
    for (int64_t bh = 0; bh < q.size(0) * q.size(1); ++bh)
      for (int64_t t = 0; t < seg.length; ++t) {
        out.entropy[static_cast<size_t>(bh * n + row + t)] = part.entropy[static_cast<size_t>(bh * seg.length + t)];
        out.distance[static_cast<size_t>(bh * n + row + t)] = part.distance[static_cast<size_t>(bh * seg.length + t)];
      }
    row += seg.length;
  }
  return out;
}

Tensor attention_transfer_loss(const Tensor& q_s, const Tensor& k_s, const Tensor& q_t, const Tensor& k_t,
                               const MaskSpec& mask, const SequenceShard& shard, double scale_s, double scale_t,
                               const ops::RowSample& sample) {
  if (shard.local())
    return ops::attention_transfer_loss(q_s, k_s, q_t, k_t, mask, ops::Reduction::Sum, scale_s, scale_t, 64, sample);
  const char* op = "attention_transfer_loss";
  ops::check_transfer_pair(op, q_s, k_s, q_t, k_t);
  STRAND_CHECK(q_s.size(2) == k_s.size(2), ShapeError, op, ": under sequence parallelism q ", describe(q_s),
               " and k ", describe(k_s), " must hold the same rows");
  const Split sp = split_of(shard, k_s.size(2), op);
  auto s = std::make_unique<Side>(q_s, k_s, scale_s, sp);
  auto t = std::make_unique<Side>(q_t, k_t, scale_t, sp);
  STRAND_CHECK(sample.rows >= 0 && sample.rows <= sp.N, ValueError, op, ": ", sample.rows,
               " sampled query rows; expected 0 (all) to the sequence's ", sp.N);
  if (sample.rows > 0) s->sample_rows(sample, sp, shard.rank());
  ops::AttentionTransferRows rows(s->view, t->view);
  each_segment(*s, *t, mask, sp, shard.rank(), [&](const auto& sv, const auto& tv, const MaskPlan& plan) {
    ops::attention_transfer_rows(sv, tv, plan, rows);
  });
  double total = 0.0;  // in row order
  for (double kl : rows.kl) total += kl;
  const double weight = ops::sample_weight(sample, sp.N);
  Tensor loss = Tensor::full({}, total * weight, q_s.dtype(), q_s.device());
  if (auto n = autograd::make_node<ShardedTransferBackward>({&q_s, &k_s}, std::move(s), std::move(t), mask, sp,
                                                            shard.rank(), std::move(rows), weight, q_s.shape(), k_s.shape(),
                                                            q_s.dtype(), q_s.device()))
    autograd::set_history(n, {&loss});
  return loss;
}

}  // namespace strand::parallel
