// Sequence layouts: which global token positions each rank of a sequence-parallel group holds
// (contiguous, zigzag, and the hybrid split of either over Ulysses groups), and the row copies
// that cut a [B, N, ...] batch into a rank's shard. Note [Layouts] in layout.cpp draws them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "framework/core/tensor.h"

namespace strand::parallel {

enum class LayoutKind { Contiguous, Zigzag };

// A run of consecutive global positions [start, start + length).
struct Segment {
  int64_t start = 0;
  int64_t length = 0;
  bool operator==(const Segment&) const = default;
};

class SequenceLayout {
 public:
  // seq_len positions over `parts` ranks. Contiguous: rank r holds [r*n, (r+1)*n), n = N / P.
  // Zigzag (balanced for causal attention): 2P chunks of N / (2P); rank r holds chunks r and
  // 2P-1-r, in that order. Throws ValueError when N does not divide, naming the nearest lengths
  // that do ("seq_len 1004 does not split into 2 x 4 = 8 equal zigzag chunks; 1000 or 1008 do").
  // Segments adjacent in both row order and position are merged (rank P-1's two zigzag chunks).
  static SequenceLayout make(LayoutKind kind, int64_t seq_len, int parts);

  // The sp-level layout of hybrid attention over sp = ring_degree x ulysses_degree ranks: the
  // sequence is laid out over ring_degree ring ranks by `kind`, and ring rank g's rows (its
  // chunks in row order) are cut into ulysses_degree equal runs of consecutive rows; sp rank
  // s = g * ulysses_degree + j holds run j, so gathered(ulysses_degree) is make(kind, seq_len,
  // ring_degree). ulysses_degree 1 is make(kind, seq_len, ring_degree); ring_degree 1 is pure
  // Ulysses. ValueError when the runs do not divide evenly.
  static SequenceLayout hybrid(LayoutKind kind, int64_t seq_len, int ring_degree, int ulysses_degree);

  // The layout the ring sees after the Ulysses all-to-all (parallel/ulysses.h) has gathered
  // groups of `ulysses_degree` consecutive ranks: rank g holds the segments of ranks
  // g*u .. g*u+u-1 concatenated in rank order, adjacent segments merged.
  SequenceLayout gathered(int ulysses_degree) const;

  LayoutKind kind() const { return kind_; }
  int parts() const { return static_cast<int>(segments_.size()); }
  int64_t seq_len() const { return seq_len_; }
  const std::vector<Segment>& segments(int rank) const;  // in the order the rank's rows hold them
  int64_t local_len() const;                             // rows per rank (the same on every rank)
  Tensor positions(int rank) const;                      // int32 [local_len]: global position of each row

  // x [d0, N, ...] (axis `axis` of length seq_len) -> the rows of `rank`, [d0, local_len, ...],
  // as a new contiguous tensor (no autograd: inputs and targets are data).
  Tensor shard(const Tensor& x, int rank, int axis = 1) const;
  // The inverse for tests and tools: every rank's shard (index = rank) -> the whole x.
  Tensor unshard(const std::vector<Tensor>& shards, int axis = 1) const;

  std::string describe() const;  // "zigzag over 4 ranks, 1024 positions (2 x 128 per rank)"

 private:
  LayoutKind kind_ = LayoutKind::Contiguous;
  int64_t seq_len_ = 0;
  std::vector<std::vector<Segment>> segments_;  // per rank
};

}  // namespace strand::parallel
