// Sequence layouts: the global positions each rank of a sequence-parallel group holds
// (contiguous, zigzag, their hybrid split over Ulysses groups, and the gathered view the ring
// sees), and the row copies that cut a batch into a rank's shard and put it back together.
//
// Note [Layouts]
// A sequence of N positions over P ranks. Each rank holds local_len() = N / P rows, as a list of
// segments (runs of consecutive positions) in row order; the ring and the loader only ever see
// that list, so every layout below is one case of the same code.
//
//   contiguous, P = 4: rank r holds [r*N/4, (r+1)*N/4)
//     positions  0 ...................................................... N
//                [   rank 0   |   rank 1   |   rank 2   |   rank 3   ]
//
//   zigzag, P = 4: 2P = 8 chunks of N/8; rank r holds chunks r and 2P-1-r, in that order
//                [ 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 ]   chunk
//                [ r0| r1| r2| r3| r3| r2| r1| r0]   rank holding it
//     Under a causal mask the early chunk of a rank sees few keys and its late chunk many, and
//     the sum is the same on every rank: rank 0 = chunks 0 + 7, rank 3 = chunks 3 + 4. Each
//     step of the ring then does the same work on every rank (docs/parallelism.md).
//
//   hybrid (USP), kind over R ring ranks x U Ulysses ranks, sp rank s = g*U + j: lay the
//   sequence out over the R ring ranks by `kind`, and cut ring rank g's rows (its chunks in row
//   order, N/R rows) into U equal runs of consecutive rows; sp rank g*U + j holds run j.
//   Zigzag, R = 2, U = 2: 4 chunks of N/4; ring rank 0 holds chunks 0 and 3, ring rank 1
//   chunks 1 and 2:
//                [  0  |  1  |  2  |  3  ]   chunk
//                [ s0  | s2  | s3  | s1  ]   sp rank holding it
//     (with U = 4 each chunk would be cut in two, s0 and s1 sharing chunk 0.) Which rows of a
//     Ulysses group a rank holds does not change its work: the group gathers them all before
//     attention, and the token-local layers see N/sp rows on every rank.
//
//   gathered(U): what the ring sees after the Ulysses all-to-all, which concatenates the rows of
//   U consecutive sp ranks in rank order. Since the runs were cut in row order, that is ring
//   rank g's rows again, merged: gathered(U) of hybrid(kind, N, R, U) is make(kind, N, R), and
//   the ring makes the calls of a plain ring of R ranks.

// Segments adjacent in both row order and position are always merged (zigzag rank P-1 holds
// chunks P-1 and P as one segment; zigzag over 1 rank is [0, N)), so a rank's list is as short
// as its positions allow and the ring makes no more kernel calls than it must.
#include "parallel/layout.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "framework/core/error.h"

namespace strand::parallel {
namespace {

// Appends seg to a rank's list, merging it into the last segment when it continues it.
void append_segment(std::vector<Segment>& list, const Segment& seg) {
  if (!list.empty() && list.back().start + list.back().length == seg.start) {
    list.back().length += seg.length;
    return;
  }
  list.push_back(seg);
}

// The unmerged chunks of `kind` over `parts` ranks, per rank in row order.
std::vector<std::vector<Segment>> chunks_of(LayoutKind kind, int64_t seq_len, int parts) {
  std::vector<std::vector<Segment>> chunks(static_cast<size_t>(parts));
  if (kind == LayoutKind::Contiguous) {
    const int64_t len = seq_len / parts;
    for (int r = 0; r < parts; ++r) chunks[static_cast<size_t>(r)] = {Segment{r * len, len}};
  } else {
    const int64_t len = seq_len / (2 * parts);
    for (int r = 0; r < parts; ++r)
      chunks[static_cast<size_t>(r)] = {Segment{r * len, len}, Segment{(2 * parts - 1 - r) * len, len}};
  }
  return chunks;
}

const char* kind_name(LayoutKind kind) { return kind == LayoutKind::Contiguous ? "contiguous" : "zigzag"; }

// "992 or 1008" (the multiples of `multiple` around seq_len), or "1008" when none lies below.
std::string lengths_that_work(int64_t seq_len, int64_t multiple) {
  const int64_t below = seq_len / multiple * multiple, above = below + multiple;
  return below > 0 ? detail::concat(below, " or ", above) : detail::concat(above);
}

}  // namespace

SequenceLayout SequenceLayout::make(LayoutKind kind, int64_t seq_len, int parts) {
  STRAND_CHECK(parts >= 1, ValueError, "SequenceLayout::make: parts must be at least 1, got ", parts);
  STRAND_CHECK(seq_len >= 1, ValueError, "SequenceLayout::make: seq_len must be positive, got ", seq_len);
  const int64_t multiple = kind == LayoutKind::Contiguous ? parts : 2 * int64_t{parts};
  if (kind == LayoutKind::Contiguous) {
    STRAND_CHECK(seq_len % multiple == 0, ValueError, "SequenceLayout::make: seq_len ", seq_len,
                 " does not split into ", parts, " equal contiguous parts; ", lengths_that_work(seq_len, multiple),
                 " do (multiples of ", multiple, ")");
  } else {
    STRAND_CHECK(seq_len % multiple == 0, ValueError, "SequenceLayout::make: seq_len ", seq_len,
                 " does not split into 2 x ", parts, " = ", multiple, " equal zigzag chunks; ",
                 lengths_that_work(seq_len, multiple), " do (multiples of ", multiple, ")");
  }
  return hybrid(kind, seq_len, parts, 1);
}

SequenceLayout SequenceLayout::hybrid(LayoutKind kind, int64_t seq_len, int ring_degree, int ulysses_degree) {
  STRAND_CHECK(ring_degree >= 1 && ulysses_degree >= 1, ValueError,
               "SequenceLayout::hybrid: ring_degree and ulysses_degree must be at least 1, got ", ring_degree,
               " and ", ulysses_degree);
  STRAND_CHECK(seq_len >= 1, ValueError, "SequenceLayout::hybrid: seq_len must be positive, got ", seq_len);
  const int64_t chunks_per_rank = kind == LayoutKind::Contiguous ? 1 : 2;
  const int64_t multiple = chunks_per_rank * ring_degree * ulysses_degree;
  STRAND_CHECK(seq_len % multiple == 0, ValueError, "SequenceLayout::hybrid: seq_len ", seq_len,
               " does not split into ", chunks_per_rank * ring_degree, " ", kind_name(kind), " chunks over ",
               ring_degree, " ring ranks, each cut into ", ulysses_degree, " equal Ulysses pieces; ",
               lengths_that_work(seq_len, multiple), " do (multiples of ", multiple, ")");
  SequenceLayout layout;
  layout.kind_ = kind;
  layout.seq_len_ = seq_len;
  layout.segments_.resize(static_cast<size_t>(ring_degree) * static_cast<size_t>(ulysses_degree));
  const std::vector<std::vector<Segment>> chunks = chunks_of(kind, seq_len, ring_degree);
  for (int g = 0; g < ring_degree; ++g)
    for (int j = 0; j < ulysses_degree; ++j) {
      // Rows [j*piece, (j+1)*piece) of ring rank g's rows (its chunks in row order).
      std::vector<Segment>& list = layout.segments_[static_cast<size_t>(g * ulysses_degree + j)];
      const int64_t piece = seq_len / ring_degree / ulysses_degree;
      int64_t row = 0;  // the first row of chunk c in ring rank g's rows
      for (const Segment& c : chunks[static_cast<size_t>(g)]) {
        const int64_t from = std::max(j * piece, row), to = std::min((j + 1) * piece, row + c.length);
        if (from < to) append_segment(list, Segment{c.start + (from - row), to - from});
        row += c.length;
      }
    }
  return layout;
}

SequenceLayout SequenceLayout::gathered(int ulysses_degree) const {
  STRAND_CHECK(ulysses_degree >= 1 && parts() % ulysses_degree == 0, ValueError, "SequenceLayout::gathered: ",
               parts(), " ranks do not form groups of ulysses_degree ", ulysses_degree);
  SequenceLayout out;
  out.kind_ = kind_;
  out.seq_len_ = seq_len_;
  out.segments_.resize(static_cast<size_t>(parts() / ulysses_degree));
  for (int g = 0; g < parts() / ulysses_degree; ++g)
    for (int j = 0; j < ulysses_degree; ++j)
      for (const Segment& s : segments_[static_cast<size_t>(g * ulysses_degree + j)])
        append_segment(out.segments_[static_cast<size_t>(g)], s);
  return out;
}

const std::vector<Segment>& SequenceLayout::segments(int rank) const {
  STRAND_CHECK(rank >= 0 && rank < parts(), ValueError, "SequenceLayout::segments: rank ", rank,
               " outside the layout's ", parts(), " ranks");
  return segments_[static_cast<size_t>(rank)];
}

int64_t SequenceLayout::local_len() const {
  if (segments_.empty()) return 0;
  int64_t rows = 0;
  for (const Segment& s : segments_[0]) rows += s.length;
  return rows;
}

Tensor SequenceLayout::positions(int rank) const {
  STRAND_CHECK(seq_len_ <= int64_t{INT32_MAX}, ValueError, "SequenceLayout::positions: seq_len ", seq_len_,
               " does not fit int32 positions");
  Tensor out = Tensor::empty({local_len()}, DType::I32);
  int32_t* p = out.data<int32_t>();
  for (const Segment& s : segments(rank))
    for (int64_t i = 0; i < s.length; ++i) *p++ = static_cast<int32_t>(s.start + i);
  return out;
}

namespace {

// The sizes around the sequence axis of x: outer (before it), inner bytes (after it, times the element size).
void split_around(const Shape& shape, int64_t axis, size_t elem, int64_t& outer, size_t& inner_bytes) {
  outer = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= shape[static_cast<size_t>(i)];
  inner_bytes = elem;
  for (size_t i = static_cast<size_t>(axis) + 1; i < shape.size(); ++i) inner_bytes *= static_cast<size_t>(shape[i]);
}

int64_t checked_axis(const char* op, const Tensor& x, int axis) {
  const int64_t a = axis < 0 ? axis + x.dim() : axis;
  STRAND_CHECK(a >= 0 && a < x.dim(), ShapeError, op, ": axis ", axis, " out of range for ", shape_str(x.shape()));
  return a;
}

}  // namespace

Tensor SequenceLayout::shard(const Tensor& x, int rank, int axis) const {
  const char* op = "SequenceLayout::shard";
  STRAND_CHECK(x.defined() && x.device().is_cpu(), DeviceError, op, ": expects a cpu tensor");
  const int64_t a = checked_axis(op, x, axis);
  STRAND_CHECK(x.shape()[static_cast<size_t>(a)] == seq_len_, ShapeError, op, ": axis ", a, " of ",
               shape_str(x.shape()), " must be the layout's seq_len ", seq_len_, " (", describe(), ")");
  const std::vector<Segment>& segs = segments(rank);
  const Tensor src = x.is_contiguous() ? x : x.copy_as(x.dtype(), x.device());
  Shape out_shape = x.shape();
  out_shape[static_cast<size_t>(a)] = local_len();
  Tensor out = Tensor::empty(out_shape, x.dtype());
  int64_t outer;
  size_t row_bytes;
  split_around(x.shape(), a, dtype_size(x.dtype()), outer, row_bytes);
  const char* in = static_cast<const char*>(src.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t o = 0; o < outer; ++o) {
    const char* block = in + static_cast<size_t>(o * seq_len_) * row_bytes;
    for (const Segment& s : segs) {
      const size_t bytes = static_cast<size_t>(s.length) * row_bytes;
      std::memcpy(dst, block + static_cast<size_t>(s.start) * row_bytes, bytes);
      dst += bytes;
    }
  }
  return out;
}

Tensor SequenceLayout::unshard(const std::vector<Tensor>& shards, int axis) const {
  const char* op = "SequenceLayout::unshard";
  STRAND_CHECK(static_cast<int>(shards.size()) == parts(), ValueError, op, ": ", shards.size(),
               " shards for a layout of ", parts(), " ranks (", describe(), ")");
  const Tensor& first = shards[0];
  STRAND_CHECK(first.defined() && first.device().is_cpu(), DeviceError, op, ": expects cpu tensors");
  const int64_t a = checked_axis(op, first, axis);
  for (size_t r = 0; r < shards.size(); ++r) {
    STRAND_CHECK(shards[r].defined() && shards[r].shape() == first.shape() && shards[r].dtype() == first.dtype(),
                 ShapeError, op, ": shard ", r, " is ", shards[r].defined() ? strand::describe(shards[r]) : "undefined",
                 ", shard 0 is ", strand::describe(first), "; every shard must have the same shape and dtype");
  }
  STRAND_CHECK(first.shape()[static_cast<size_t>(a)] == local_len(), ShapeError, op, ": axis ", a, " of shard ",
               shape_str(first.shape()), " must hold local_len ", local_len(), " rows (", describe(), ")");
  Shape out_shape = first.shape();
  out_shape[static_cast<size_t>(a)] = seq_len_;
  Tensor out = Tensor::empty(out_shape, first.dtype());
  int64_t outer;
  size_t row_bytes;
  split_around(out_shape, a, dtype_size(first.dtype()), outer, row_bytes);
  char* dst = static_cast<char*>(out.raw_data());
  for (int r = 0; r < parts(); ++r) {
    const Tensor src = shards[static_cast<size_t>(r)].is_contiguous()
                           ? shards[static_cast<size_t>(r)]
                           : shards[static_cast<size_t>(r)].copy_as(first.dtype(), first.device());
    const char* in = static_cast<const char*>(src.raw_data());
    for (int64_t o = 0; o < outer; ++o) {
      char* block = dst + static_cast<size_t>(o * seq_len_) * row_bytes;
      for (const Segment& s : segments_[static_cast<size_t>(r)]) {
        const size_t bytes = static_cast<size_t>(s.length) * row_bytes;
        std::memcpy(block + static_cast<size_t>(s.start) * row_bytes, in, bytes);
        in += bytes;
      }
    }
  }
  return out;
}

std::string SequenceLayout::describe() const {
  std::ostringstream os;
  os << kind_name(kind_) << " over " << parts() << (parts() == 1 ? " rank, " : " ranks, ") << seq_len_
     << " positions (";
  const std::vector<Segment>& segs = segments_.empty() ? std::vector<Segment>{} : segments_[0];
  bool equal = true;
  for (const Segment& s : segs) equal = equal && s.length == segs.front().length;
  if (segs.size() == 1) {
    os << segs.front().length;
  } else if (equal && !segs.empty()) {
    os << segs.size() << " x " << segs.front().length;
  } else {
    for (size_t i = 0; i < segs.size(); ++i) os << (i ? " + " : "") << segs[i].length;
  }
  os << " per rank)";
  return os.str();
}

}  // namespace strand::parallel
