// Text generation with a GPT: the per-layer KV caches (framework/nn/kv_cache.h) behind a prefill
// and a one-token step, the recomputing reference they must match, and the generation loop.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "framework/nn/kv_cache.h"
#include "models/gpt/gpt.h"
#include "models/sampling.h"

namespace strand::models {

// A GPT's generation state: one KvCache per layer, allocated once. A layer's cache holds the
// reach of its window (sliding, dilated: a ring) or every position up to max_positions (causal).
class GptDecoder {
 public:
  // Caches for `batch` rows and sequences of up to max_positions positions (prompt and new
  // tokens); ValueError when the model cannot generate that far (check_generation).
  GptDecoder(Gpt& model, int64_t batch, int64_t max_positions);

  // ids int32 [B, T], the prompt (first call only) -> logits [B, V] of its last row. `on_layer`,
  // when given, hears (blocks done, blocks in all) after each block: a long prompt's progress.
  Tensor prefill(const Tensor& ids, const std::function<void(int64_t, int64_t)>& on_layer = {});
  // ids int32 [B, 1], the token after the cached ones -> its logits [B, V].
  Tensor step(const Tensor& ids);

  int64_t length() const { return caches_.empty() ? 0 : caches_[0].length(); }
  int64_t cache_bytes() const;

 private:
  Tensor forward(const Tensor& ids, const std::function<void(int64_t, int64_t)>& on_layer = {});
  Gpt& model_;
  int64_t max_positions_;
  std::vector<nn::KvCache> caches_;
};

// ValueError when a model of config `c` cannot generate sequences of `total` positions with a
// cache (use_cache) or by recomputing: learned positions end at model.max_seq_len; attention
// patterns without a cached form (nn::cache_reach) are named.
void check_generation(const config::ModelConfig& c, int64_t total, bool use_cache);

// Logits [B, V] of the last row of ids [B, T], from a forward pass of the blocks over the whole
// sequence (training's path, no dropout): the reference generation with a cache must match.
Tensor recompute_last_logits(Gpt& model, const Tensor& ids);

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  bool use_cache = true;  // false: recompute the whole sequence for every token (the reference)
  bool keep_tokens = true;  // false: the tokens go only to on_token (a stream of any length in bounded memory)
  std::function<void(int64_t, int64_t)> on_prefill_layer;  // GptDecoder::prefill's progress (cached only)
};

// The tokens generated after `prompt` (one row; none kept with keep_tokens false), in evaluation
// mode (the model's mode is restored after). on_token, when given, sees each token as soon as it
// is picked.
std::vector<int32_t> generate(Gpt& model, std::span<const int32_t> prompt, const GenerateOptions& options,
                              const std::function<void(int32_t)>& on_token = {});

}  // namespace strand::models
