// The attention probabilities of q against k under a dense mask, materialised in float64: the
// reference the key-block statistics and losses (attention_stats, attention_transfer) are
// checked against; and the attention transfer loss and gradient built from them, head by head or
// head-averaged, over all query rows or a chosen set.
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

// The attention transfer's Reduction::Sum and its gradient to the student's q and k from the
// materialised softmaxes: per scored row (b, i) (keep [B, Nq], 1: scored; empty: all rows),
// sum_h KL(P_t,h || P_s,h) when the head counts are equal, else KL(mean_h P_t,h || mean_h P_s,h).
// The averaged gradient is the plain chain rule through the dense matrices: dL/dP_s,h,j =
// -(P_bar_t,j / P_bar_s,j) / H_s, then the softmax backward dS = P (dP - sum_j P_j dP_j).
struct TransferReference {
  double loss = 0.0;
  std::vector<double> dq, dk;
};

inline TransferReference transfer_reference(const Tensor& qs, const Tensor& ks, const Tensor& qt, const Tensor& kt,
                                            const std::vector<double>& m, const std::vector<uint8_t>& keep = {}) {
  const int64_t B = qs.size(0), Hs = qs.size(1), Ht = qt.size(1), Nq = qs.size(2), D = qs.size(3);
  const int64_t Hkv = ks.size(1), Nk = ks.size(2);
  const std::vector<double> ps = softmax_rows(qs, ks, m), pt = softmax_rows(qt, kt, m);
  const std::vector<double> qv = qs.to_vector(), kv = ks.to_vector();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  auto at = [&](const std::vector<double>& p, int64_t H, int64_t b, int64_t h, int64_t i, int64_t j) {
    return p[static_cast<size_t>(((b * H + h) * Nq + i) * Nk + j)];
  };
  TransferReference r;
  r.dq.assign(qv.size(), 0.0);
  r.dk.assign(kv.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Nq; ++i) {
      if (!keep.empty() && keep[static_cast<size_t>(b * Nq + i)] == 0) continue;
      // dS[h][j] of this row, then dq and dk from it.
      std::vector<double> ds(static_cast<size_t>(Hs * Nk), 0.0);
      if (Hs == Ht) {
        for (int64_t h = 0; h < Hs; ++h)
          for (int64_t j = 0; j < Nk; ++j) {
            const double p = at(pt, Ht, b, h, i, j), q = at(ps, Hs, b, h, i, j);
            if (p > 0) r.loss += p * std::log(p / q);
            ds[static_cast<size_t>(h * Nk + j)] = q - p;
          }
      } else {
        std::vector<double> pbar(static_cast<size_t>(Nk), 0.0), qbar(static_cast<size_t>(Nk), 0.0);
        for (int64_t j = 0; j < Nk; ++j) {
          for (int64_t h = 0; h < Ht; ++h) pbar[static_cast<size_t>(j)] += at(pt, Ht, b, h, i, j) / static_cast<double>(Ht);
          for (int64_t h = 0; h < Hs; ++h) qbar[static_cast<size_t>(j)] += at(ps, Hs, b, h, i, j) / static_cast<double>(Hs);
          if (pbar[static_cast<size_t>(j)] > 0)
            r.loss += pbar[static_cast<size_t>(j)] * std::log(pbar[static_cast<size_t>(j)] / qbar[static_cast<size_t>(j)]);
        }
        for (int64_t h = 0; h < Hs; ++h) {
          std::vector<double> dp(static_cast<size_t>(Nk), 0.0);
          double dot = 0.0;
          for (int64_t j = 0; j < Nk; ++j) {
            if (qbar[static_cast<size_t>(j)] > 0)
              dp[static_cast<size_t>(j)] = -pbar[static_cast<size_t>(j)] / qbar[static_cast<size_t>(j)] / static_cast<double>(Hs);
            dot += at(ps, Hs, b, h, i, j) * dp[static_cast<size_t>(j)];
          }
          for (int64_t j = 0; j < Nk; ++j)
            ds[static_cast<size_t>(h * Nk + j)] = at(ps, Hs, b, h, i, j) * (dp[static_cast<size_t>(j)] - dot);
        }
      }
      for (int64_t h = 0; h < Hs; ++h)
        for (int64_t j = 0; j < Nk; ++j) {
          const double g = ds[static_cast<size_t>(h * Nk + j)] * scale;
          const int64_t hk = h / (Hs / Hkv);
          for (int64_t x = 0; x < D; ++x) {
            const size_t qi = static_cast<size_t>(((b * Hs + h) * Nq + i) * D + x);
            const size_t kj = static_cast<size_t>(((b * Hkv + hk) * Nk + j) * D + x);
            r.dq[qi] += g * kv[kj];
            r.dk[kj] += g * qv[qi];
          }
        }
    }
  return r;
}

}  // namespace strand::testing
