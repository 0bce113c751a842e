// The scores of one query row against one block of keys, recomputed in float64 under a MaskPlan:
// the inner step shared by the key-block attention statistics (attention_stats.cpp) and the
// attention transfer loss (attention_transfer.cpp), neither of which holds an N x N buffer;
// and the query rows a sampled attention transfer scores (RowSample).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "framework/backend/attention_mask.h"
#include "framework/core/random.h"

namespace strand::ops {

// Scores `rows` query rows per sequence instead of all of them (0: all). The draw depends only on
// (seed, batch row, global position), so every rank of a sequence-parallel group, whatever rows it
// holds, draws the same set.
struct RowSample {
  int64_t rows = 0;
  uint64_t seed = 0;
};

// Which of the query positions [pos0, pos0 + n) of batch row b the sample scores (1) or skips
// (0): the `sample.rows` positions with the smallest Philox keys (seed, stream b, index pos), a
// uniform draw of that many distinct rows. Rows are drawn singly, not as blocks of keys: the
// transfer kernel works one query row at a time (row_block_scores), so a block would save no
// work, and rows spread over the sequence vary less than neighbours, whose attention is alike.
// Each row is scored with probability rows / n, so n / rows times the sum over the drawn rows
// has the all-rows sum as its expectation (sample_weight).
inline std::vector<uint8_t> drawn_rows(const RowSample& sample, int64_t b, int64_t pos0, int64_t n) {
  std::vector<uint8_t> keep(static_cast<size_t>(n), 0);
  std::vector<uint64_t> key(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto w = random::philox4x32(sample.seed, static_cast<uint64_t>(b), static_cast<uint64_t>(pos0 + i));
    key[static_cast<size_t>(i)] = (static_cast<uint64_t>(w[0]) << 32) | w[1];
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  const int64_t take = std::min(sample.rows, n);
  // Ties (2^-64) fall to the earlier position, so the set is fully determined.
  std::partial_sort(order.begin(), order.begin() + take, order.end(), [&](int64_t x, int64_t y) {
    const uint64_t kx = key[static_cast<size_t>(x)], ky = key[static_cast<size_t>(y)];
    return kx != ky ? kx < ky : x < y;
  });
  for (int64_t i = 0; i < take; ++i) keep[static_cast<size_t>(order[static_cast<size_t>(i)])] = 1;
  return keep;
}

// The factor that makes a sampled sum an unbiased estimate of the all-rows sum: n / rows (1 when
// every row is scored).
inline double sample_weight(const RowSample& sample, int64_t n) {
  return sample.rows > 0 && sample.rows < n ? static_cast<double>(n) / static_cast<double>(sample.rows) : 1.0;
}

}  // namespace strand::ops

namespace strand::ops::detail {

// scores[j - k0] = scale * q_i . k_j for the local key rows j in [k0, k1) that the query at
// global position qpos of batch row b sees, -inf for the keys the mask hides. q_i is D values,
// keys the head's [Nk, D] rows. Returns false, leaving scores untouched, when the mask hides the
// whole block (the caller skips it).
inline bool row_block_scores(const MaskPlan& plan, int64_t b, int64_t qpos, const double* q_i, const double* keys,
                             int64_t D, double scale, int64_t k0, int64_t k1, double* scores) {
  const TileClass tile = plan.classify(b, qpos, qpos + 1, plan.k_offset() + k0, plan.k_offset() + k1);
  if (tile == TileClass::Empty) return false;
  for (int64_t j = k0; j < k1; ++j) {
    double& sc = scores[j - k0];
    sc = -std::numeric_limits<double>::infinity();
    if (tile != TileClass::Full && !plan.attends(b, qpos, plan.k_offset() + j)) continue;
    const double* k_j = keys + j * D;
    double dot = 0.0;
    for (int64_t x = 0; x < D; ++x) dot += q_i[x] * k_j[x];
    sc = scale * dot;
  }
  return true;
}

}  // namespace strand::ops::detail
