// Ring attention: exact attention over a sequence split across the ranks of a group, K/V blocks
// passed around the ring and partial results merged by lse.
#pragma once
#include <cstdint>
#include <vector>

#include "framework/ops/attention.h"
#include "parallel/comm/group.h"
#include "parallel/layout.h"

namespace strand::parallel {

struct RingOptions {
  // Benchmarks only: compute exactly the blocks the ring would, with this rank's own K/V
  // standing in for every received block and no message sent (the compute-only time the
  // ring's overlap is measured against). The result is not attention of anything.
  bool compute_only = false;
};

// Rank r of P = ring.size() holds the rows layout.segments(r) (layout.parts() == P) of q
// [B, Hq, n, D] and k, v [B, Hkv, n, D], n = layout.local_len(), as in ops::attention; `mask`
// describes the whole sequence in global positions (its q_offset and k_offset are ignored;
// seq_len 0 means layout.seq_len()). Returns this rank's rows of the global o [B, Hq, n, D] and
// lse [B, Hq, n] (float32 for float32 and bfloat16 inputs, float64 for float64), equal to
// ops::attention on the gathered sequence. Pairs of (query segment, key segment) the mask
// leaves wholly empty are not computed, and the ring stops early once no later block is in
// reach of any rank (sliding windows). Differentiable in q, k, v through o and lse; the
// backward is one more ring pass, so `ring` must outlive the graph and every rank must run the
// backward. Every rank must call it with the same shapes, mask and layout.
ops::AttentionOutput ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                    double scale, Group& ring, const SequenceLayout& layout,
                                    const RingOptions& options = {});

// Contiguous layout: rank r holds rows [r*n, (r+1)*n) of a sequence of P*n positions.
ops::AttentionOutput ring_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                                    double scale, Group& ring);

// The schedule ring_attention follows for `mask` (global positions) over `layout` and `batch`
// rows, computed as every rank computes it (Note [Ring schedule] in ring.cpp); for tests,
// benchmarks and sizing. ring_steps: the ring steps that run (layout.parts() unless a window
// stops the ring early; K/V travel between consecutive steps). ring_step_pairs: [rank][step],
// the attending (query, key) pairs that rank computes at that step, per head, summed over batch.
int ring_steps(const MaskSpec& mask, const SequenceLayout& layout, int64_t batch);
std::vector<std::vector<int64_t>> ring_step_pairs(const MaskSpec& mask, const SequenceLayout& layout, int64_t batch);

}  // namespace strand::parallel
