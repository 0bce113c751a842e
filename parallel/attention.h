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

// This rank's part of the sequence in one forward pass: the groups that hold the other parts
// (attention runs over them), which positions every part holds, and this part's own positions
// and the whole length (the model's position embeddings and dropout read those). The default is
// the whole row on one rank: positions 0..T-1, attention local. sp = ring size x Ulysses size;
// sp rank s = ring_rank * ulysses_size + ulysses_rank (the ProcessGrid's numbering).
struct SequenceShard {
  Group* ring = nullptr;     // the ring group (K/V blocks travel around it); null = size 1
  Group* ulysses = nullptr;  // the all-to-all group (heads exchanged in it); null = size 1
  // The positions every sp rank holds; null = contiguous (rank s holds rows [s*n, (s+1)*n)).
  std::shared_ptr<const SequenceLayout> layout;
  // Global position of each of this rank's T rows: int32 [T]; undefined = 0..T-1. Set with a
  // layout (its positions(rank())) or alone (a local row that starts past 0).
  Tensor positions;
  // Length N of the whole sequence (dropout counters are laid out over [B, N, C]); 0 = the
  // layout's seq_len when layout is set, else T * size() (contiguous).
  int64_t seq_len = 0;

  int ring_size() const { return ring == nullptr ? 1 : ring->size(); }
  int ulysses_size() const { return ulysses == nullptr ? 1 : ulysses->size(); }
  int size() const { return ring_size() * ulysses_size(); }
  int rank() const {
    return (ring == nullptr ? 0 : ring->rank()) * ulysses_size() + (ulysses == nullptr ? 0 : ulysses->rank());
  }
  bool local() const { return size() <= 1; }
};

// q [B, Hq, n, D], k and v [B, Hkv, n, D]: this rank's rows (shard.layout) of the whole
// sequence; mask positions are global. Reads the shard's groups and layout only. Returns this rank's rows of o and lse, equal to ops::attention
// over the gathered sequence. Local: ops::attention(q, k, v, mask, scale).
ops::AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                               double scale, const SequenceShard& shard = {});

}  // namespace strand::parallel
