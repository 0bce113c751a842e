// Token sampling: candidates sorted by logit (ties by id, so top-k = 1 is greedy), cut by top-k,
// softmax at the temperature, cut to the nucleus of top-p, one Philox draw over the rest.
#include "models/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "framework/core/error.h"
#include "framework/core/random.h"

namespace strand::models {
namespace {

constexpr uint64_t kSamplingStream = 0x73616d70ull;  // "samp"

}  // namespace

void check_sampling(const SamplingOptions& o) {
  STRAND_CHECK(std::isfinite(o.temperature) && o.temperature >= 0, ValueError, "temperature ", o.temperature,
               " must be >= 0 (0 is greedy)");
  STRAND_CHECK(o.top_k >= 0, ValueError, "top_k ", o.top_k, " must be >= 0 (0 keeps every token)");
  STRAND_CHECK(o.top_p > 0 && o.top_p <= 1, ValueError, "top_p ", o.top_p, " must be in (0, 1]");
}

Candidates sampling_candidates(std::span<const double> logits, const SamplingOptions& o) {
  check_sampling(o);
  const int64_t V = static_cast<int64_t>(logits.size());
  STRAND_CHECK(V > 0, ValueError, "sampling: no logits");
  Candidates c;
  if (o.temperature == 0) {
    const auto best = std::max_element(logits.begin(), logits.end());  // the first of equal maxima
    c.ids = {static_cast<int32_t>(best - logits.begin())};
    c.probs = {1.0};
    return c;
  }
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  const auto higher = [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
           (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
  };
  const int64_t keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
  std::partial_sort(order.begin(), order.begin() + keep, order.end(), higher);
  order.resize(static_cast<size_t>(keep));

  const double top = logits[static_cast<size_t>(order[0])];
  std::vector<double> probs(order.size());
  double total = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    probs[i] = std::exp((logits[static_cast<size_t>(order[i])] - top) / o.temperature);
    total += probs[i];
  }
  // The nucleus: the shortest prefix whose mass reaches top_p (at least one token).
  size_t cut = probs.size();
  if (o.top_p < 1) {
    double mass = 0;
    for (size_t i = 0; i < probs.size(); ++i) {
      mass += probs[i] / total;
      if (mass >= o.top_p) {
        cut = i + 1;
        break;
      }
    }
  }
  order.resize(cut);
  probs.resize(cut);
  const double kept = std::accumulate(probs.begin(), probs.end(), 0.0);
  for (double& p : probs) p /= kept;
  c.ids = std::move(order);
  c.probs = std::move(probs);
  return c;
}

int32_t sample_token(std::span<const double> logits, const SamplingOptions& o, uint64_t index) {
  const Candidates c = sampling_candidates(logits, o);
  if (c.ids.size() == 1) return c.ids[0];
  const double u = random::uniform01(o.seed, kSamplingStream, index);
  double mass = 0;
  for (size_t i = 0; i < c.ids.size(); ++i) {
    mass += c.probs[i];
    if (u < mass) return c.ids[i];
  }
  return c.ids.back();  // u within rounding of 1
}

}  // namespace strand::models
