// parallel::attention: the one attention entry point above framework/ops. Local (one rank holds
// the whole sequence) it is ops::attention; over a sequence-parallel group it is ring attention
// (parallel/ring.h; Ulysses and hybrid are to come, architecture.md §2), so models never change
// when sp grows.
#pragma once
#include "framework/ops/attention.h"
#include "parallel/comm/group.h"

namespace strand::parallel {

// The sequence-parallel setting of one forward pass.
struct SequenceContext {
  Group* sp = nullptr;  // the ranks sharing each sequence; null or size 1 = local attention
  bool local() const { return sp == nullptr || sp->size() <= 1; }
};

// q [B, Hq, Nq, D], k and v [B, Hkv, Nk, D] as in ops::attention (mask positions are global).
// Local: ops::attention(q, k, v, mask, scale). Over an sp group of size > 1: ring attention over
// the contiguous layout (rank r holds rows [r*n, (r+1)*n) of q, k and v).
ops::AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const MaskSpec& mask,
                               double scale, const SequenceContext& ctx = {});

}  // namespace strand::parallel
