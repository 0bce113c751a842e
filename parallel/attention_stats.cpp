// Attention row statistics over sequence-parallel ranks (attention_stats.h).
#include "parallel/attention_stats.h"

#include <vector>

#include "framework/core/error.h"
#include "framework/ops/view.h"

namespace strand::parallel {

ops::AttentionRowStats attention_row_stats(const Tensor& q, const Tensor& k, const Tensor& lse, const MaskSpec& mask,
                                           double scale, const SequenceShard& shard) {
  if (shard.local()) return ops::attention_row_stats(q, k, lse, mask, scale);
  STRAND_CHECK(shard.ring == nullptr || shard.ulysses == nullptr, ValueError,
               "attention statistics: hybrid sequence parallelism (ring x Ulysses) is not supported; use one of them");
  Group& group = shard.ring != nullptr ? *shard.ring : *shard.ulysses;
  const int parts = group.size();
  const int64_t B = k.size(0), H = k.size(1), n = k.size(2), D = k.size(3), N = n * parts;
  const SequenceLayout layout = shard.layout ? *shard.layout : SequenceLayout::make(LayoutKind::Contiguous, N, parts);
  STRAND_CHECK(layout.seq_len() == N, ShapeError, "attention statistics: ", n, " rows on each of ", parts,
               " ranks do not make the layout's ", layout.seq_len());

  // Every rank's keys, then each placed at its global positions: k_full [B, H, N, D].
  const Tensor mine = ops::reshape(k.copy_as(k.dtype(), k.device()), {1, B * H * n * D});
  Tensor all = Tensor::empty({parts, B * H * n * D}, k.dtype(), k.device());
  group.all_gather(mine, all);
  const std::vector<double> gathered = all.to_vector();
  std::vector<double> full(static_cast<size_t>(B * H * N * D));
  for (int r = 0; r < parts; ++r) {
    int64_t row = 0;  // the rank's row, in its order
    for (const Segment& seg : layout.segments(r))
      for (int64_t t = 0; t < seg.length; ++t, ++row)
        for (int64_t bh = 0; bh < B * H; ++bh)
          for (int64_t x = 0; x < D; ++x)
            full[static_cast<size_t>((bh * N + seg.start + t) * D + x)] =
                gathered[static_cast<size_t>(((r * B * H + bh) * n + row) * D + x)];
  }
  const Tensor k_full = Tensor::from_vector(full, {B, H, N, D}, k.dtype());

  // Each of this rank's segments at its global positions.
  ops::AttentionRowStats out;
  out.entropy.assign(static_cast<size_t>(q.size(0) * q.size(1) * n), 0.0);
  out.distance = out.entropy;
  int64_t row = 0;
  for (const Segment& seg : layout.segments(shard.rank())) {
    MaskSpec m = mask;
    m.q_offset = seg.start;
    m.k_offset = 0;
    m.seq_len = N;
    const ops::AttentionRowStats part = ops::attention_row_stats(ops::slice(q, 2, row, row + seg.length), k_full,
                                                                 ops::slice(lse, 2, row, row + seg.length), m, scale);
    for (int64_t bh = 0; bh < q.size(0) * q.size(1); ++bh)
      for (int64_t t = 0; t < seg.length; ++t) {
        out.entropy[static_cast<size_t>(bh * n + row + t)] = part.entropy[static_cast<size_t>(bh * seg.length + t)];
        out.distance[static_cast<size_t>(bh * n + row + t)] = part.distance[static_cast<size_t>(bh * seg.length + t)];
      }
    row += seg.length;
  }
  return out;
}

}  // namespace strand::parallel
