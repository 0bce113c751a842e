// The attention probabilities of q against k under a dense mask, materialised in float64: the
// reference the key-block statistics and losses (attention_stats, attention_transfer) are
// checked against.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "framework/core/tensor.h"

namespace strand::testing {

// Softmax rows of the masked scores scale * q . k (scale 1/sqrt(D); GQA: query head h reads key
// head h / (H / Hkv)), m the dense [B, Nq, Nk] mask (0: masked): p[((b * H + h) * Nq + i) * Nk + j];
// rows with no key stay zero.
inline std::vector<double> softmax_rows(const Tensor& q, const Tensor& k, const std::vector<double>& m) {
  const int64_t B = q.size(0), H = q.size(1), Nq = q.size(2), D = q.size(3), Hkv = k.size(1), Nk = k.size(2);
  const std::vector<double> qv = q.to_vector(), kv = k.to_vector();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> p(static_cast<size_t>(B * H * Nq * Nk), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Nq; ++i) {
        std::vector<double> s(static_cast<size_t>(Nk), -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < Nk; ++j) {
          if (m[static_cast<size_t>((b * Nq + i) * Nk + j)] == 0) continue;
          double dot = 0;
          for (int64_t x = 0; x < D; ++x)
            dot += qv[static_cast<size_t>(((b * H + h) * Nq + i) * D + x)] *
                   kv[static_cast<size_t>(((b * Hkv + h / (H / Hkv)) * Nk + j) * D + x)];
          s[static_cast<size_t>(j)] = scale * dot;
          mx = std::max(mx, scale * dot);
        }
        if (!std::isfinite(mx)) continue;
        double z = 0;
        for (double v : s) z += std::isfinite(v) ? std::exp(v - mx) : 0.0;
        for (int64_t j = 0; j < Nk; ++j)
          if (std::isfinite(s[static_cast<size_t>(j)]))
            p[static_cast<size_t>(((b * H + h) * Nq + i) * Nk + j)] = std::exp(s[static_cast<size_t>(j)] - mx) / z;
      }
  return p;
}

}  // namespace strand::testing
