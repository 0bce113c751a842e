// parallel::attention: the one attention entry point above framework/ops. Local (one rank holds
// the whole sequence) it is ops::attention; over a sequence-parallel group it is ring attention
// (parallel/ring.h), Ulysses (parallel/ulysses.h) or the hybrid of both (parallel/hybrid.h), so
// models never change when sp grows (architecture.md §2).
#pragma once
#include <memory>

#include "framework/ops/attention.h"
#include "parallel/comm/group.h"
#include "parallel/layout.h"

namespace strand::parallel {

// The sequence-parallel setting of one forward pass. sp = ring size x Ulysses size; sp rank
// s = ring_rank * ulysses_size + ulysses_rank (the ProcessGrid's numbering).
struct SequenceContext {
  Group* ring = nullptr;     // the ring group (K/V blocks travel around it); null = size 1
  Group* ulysses = nullptr;  // the all-to-all group (heads exchanged in it); null = size 1
  // The positions every sp rank holds; null = contiguous (rank s holds rows [s*n, (s+1)*n)).
  std::shared_ptr<const SequenceLayout> layout;

  int ring_size() const { return ring == nullptr ? 1 : ring->size(); }
  int ulysses_size() const { return ulysses == nullptr ? 1 : ulysses->size(); }
  int size() const { return ring_size() * ulysses_size(); }
  int rank() const {
    return (ring == nullptr ? 0 : ring->rank()) * ulysses_size() + (ulysses == nullptr ? 0 : ulysses->rank());
  }
  bool local() const { return size() <= 1; }
};

// q [B, Hq, n, D], k and v [B, Hkv, n, D]: this rank's rows (ctx.layout) of the whole sequence;
// mask positions are global. Returns this rank's rows of o and lse, equal to ops::attention
// over the gathered sequence. Local: ops::attention(q, k, v, mask, scale).
ops::AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                               double scale, const SequenceContext& ctx = {});

}  // namespace strand::parallel
