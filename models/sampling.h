// Picking the next token from a row of logits: greedy, temperature, top-k and top-p (nucleus)
// sampling, each draw from the counter-based Philox stream so that a seed fixes every token.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace strand::models {

struct SamplingOptions {
  double temperature = 1.0;  // >= 0; 0 is greedy: the highest logit (the lowest id among ties)
  int64_t top_k = 0;         // >= 0; keep only the k highest logits (0: all)
  double top_p = 1.0;        // (0, 1]; keep the fewest highest-probability tokens whose mass reaches p
  uint64_t seed = 0;         // the Philox key of the draws
};

// ValueError naming the option (temperature, top_k, top_p) when it is out of range.
void check_sampling(const SamplingOptions& options);

// The tokens sampling may pick from `logits`, most probable first, with their probabilities
// (softmax of logits / temperature over the kept tokens, renormalised after top-k and top-p).
// With temperature 0: the one greedy token with probability 1.
struct Candidates {
  std::vector<int32_t> ids;
  std::vector<double> probs;
};
Candidates sampling_candidates(std::span<const double> logits, const SamplingOptions& options);

// One token from `logits`: draw number `index` of the options' seed (generation passes the new
// token's index, so the same seed and prompt give the same tokens on every run).
int32_t sample_token(std::span<const double> logits, const SamplingOptions& options, uint64_t index);

}  // namespace strand::models
