// GPT generation: the cached forward (prefill, then one token per step through every block),
// the recomputing reference and the sampling loop. Note [KV cache] in framework/nn/kv_cache.cpp.
#include "models/gpt/decoder.h"

#include <algorithm>

#include "framework/autograd/grad_mode.h"
#include "framework/core/error.h"
#include "framework/ops/elementwise.h"
#include "framework/ops/view.h"

namespace strand::models {
namespace {

// int32 [n]: first, ..., first + n - 1.
Tensor position_range(int64_t first, int64_t n) {
  std::vector<double> at(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) at[static_cast<size_t>(i)] = static_cast<double>(first + i);
  return Tensor::from_vector(at, {n}, DType::I32);
}

// Row T - 1 of x [B, T, C] as [B, C].
Tensor last_row(const Tensor& x) {
  const int64_t T = x.size(1);
  return ops::reshape(ops::slice(x, 1, T - 1, T), {x.size(0), x.size(2)});
}

// Restores a module's training mode when generation ends, error or not.
class EvalModeScope {
 public:
  explicit EvalModeScope(nn::Module& m) : module_(m), was_training_(m.is_training()) { module_.train(false); }
  ~EvalModeScope() { module_.train(was_training_); }
  EvalModeScope(const EvalModeScope&) = delete;
  EvalModeScope& operator=(const EvalModeScope&) = delete;

 private:
  nn::Module& module_;
  bool was_training_;
};

}  // namespace

void check_generation(const config::ModelConfig& c, int64_t total, bool use_cache) {
  STRAND_CHECK(c.arch == config::Arch::Gpt, ValueError, "generation needs a decoder (model.arch gpt), not model.arch ",
               config::name_of(c.arch));
  STRAND_CHECK(c.pos != config::PosEncoding::Learned || total <= c.max_seq_len, ValueError, "generation: ", total,
               " positions (prompt and new tokens) exceed the learned position table of model.max_seq_len = ",
               c.max_seq_len, " (shorten the prompt or --max-new-tokens)");
  if (use_cache) {
    STRAND_CHECK(c.attention.pattern != config::AttentionPattern::Linear, ValueError,
                 "generation: attention pattern linear (Performer) has no cached form");
    const MaskSpec mask = mask_for_pattern(c.attention, true, 0, 0);
    nn::cache_reach(mask);  // throws naming the pattern when it has no cached form
  }
}

GptDecoder::GptDecoder(Gpt& model, int64_t batch, int64_t max_positions)
    : model_(model), max_positions_(max_positions) {
  STRAND_CHECK(max_positions >= 1, ValueError, "generation: max positions ", max_positions, " must be >= 1");
  check_generation(model.config(), max_positions, true);
  const Stack& stack = model.transformer();
  const DType dtype = stack.wte().weight().dtype();
  for (int64_t i = 0; i < stack.n_layer(); ++i) {
    const nn::MultiHeadAttention& attn = stack.block(i).attn();
    const int64_t reach = nn::cache_reach(attn.options().mask);
    const int64_t capacity = reach > 0 ? std::min(reach, max_positions) : max_positions;
    caches_.emplace_back(batch, attn.n_kv_head(), attn.head_dim(), capacity, dtype);
  }
}

int64_t GptDecoder::cache_bytes() const {
  int64_t total = 0;
  for (const auto& c : caches_) total += c.bytes();
  return total;
}

Tensor GptDecoder::forward(const Tensor& ids, const std::function<void(int64_t, int64_t)>& on_layer) {
  autograd::NoGradGuard no_grad;
  STRAND_CHECK(ids.defined() && ids.dtype() == DType::I32 && ids.dim() == 2 && ids.size(1) >= 1, ShapeError,
               "generation: ids must be int32 [B, T] with T >= 1, got ", ids.defined() ? describe(ids) : "undefined");
  const int64_t first = length(), n = ids.size(1);
  STRAND_CHECK(first + n <= max_positions_, ValueError, "generation: position ", first + n - 1,
               " is past the ", max_positions_, " positions the decoder was built for");
  const Stack& stack = model_.transformer();
  Tensor x = stack.embed(ids, position_range(first, n), stack.wte(), DropoutPlan{});
  for (int64_t i = 0; i < stack.n_layer(); ++i) {
    const Block& block = stack.block(i);
    x = ops::add(x, nn::cached_self_attention(block.attn(), block.ln_1().forward(x), first,
                                              caches_[static_cast<size_t>(i)]));
    x = ops::add(x, block.mlp().forward(block.ln_2().forward(x)));
    if (on_layer) on_layer(i + 1, stack.n_layer());
  }
  return lm_logits(last_row(stack.ln_f().forward(x)), model_.output_embedding());
}

Tensor GptDecoder::prefill(const Tensor& ids, const std::function<void(int64_t, int64_t)>& on_layer) {
  STRAND_CHECK(length() == 0, ValueError, "generation: prefill after ", length(), " cached positions");
  return forward(ids, on_layer);
}

Tensor GptDecoder::step(const Tensor& ids) {
  STRAND_CHECK(length() > 0 && ids.dim() == 2 && ids.size(1) == 1, ValueError,
               "generation: a step takes one token [B, 1] after the prompt");
  return forward(ids);
}

Tensor recompute_last_logits(Gpt& model, const Tensor& ids) {
  autograd::NoGradGuard no_grad;
  // The blocks run over every position, as training's forward does; only the last row goes
  // through the output projection (what a recomputing generator needs, and a fair baseline).
  const Stack& stack = model.transformer();
  const Tensor positions = position_range(0, ids.size(1));
  Tensor x = stack.embed(ids, positions, stack.wte(), DropoutPlan{});
  x = stack.run(x, positions, Tensor(), DropoutPlan{}, parallel::SequenceShard{});
  return lm_logits(last_row(x), model.output_embedding());
}

std::vector<int32_t> generate(Gpt& model, std::span<const int32_t> prompt, const GenerateOptions& o,
                              const std::function<void(int32_t)>& on_token) {
  check_sampling(o.sampling);
  STRAND_CHECK(!prompt.empty(), ValueError, "generation: the prompt is empty");
  STRAND_CHECK(o.max_new_tokens >= 1, ValueError, "generation: max new tokens ", o.max_new_tokens, " must be >= 1");
  const int64_t T = static_cast<int64_t>(prompt.size());
  check_generation(model.config(), T + o.max_new_tokens, o.use_cache);
  const int64_t V = model.config().vocab_size;
  for (int32_t id : prompt)
    STRAND_CHECK(id >= 0 && id < V, ValueError, "generation: prompt token ", id, " is outside the vocabulary of ", V);
  EvalModeScope eval(model);

  std::vector<int32_t> sequence(prompt.begin(), prompt.end());
  const auto ids_of = [](std::span<const int32_t> ids) {
    return Tensor::from_vector(std::vector<double>(ids.begin(), ids.end()), {1, static_cast<int64_t>(ids.size())},
                               DType::I32);
  };
  std::unique_ptr<GptDecoder> decoder;
  Tensor logits;
  if (o.use_cache) {
    decoder = std::make_unique<GptDecoder>(model, 1, T + o.max_new_tokens);
    logits = decoder->prefill(ids_of(sequence), o.on_prefill_layer);
  } else {
    logits = recompute_last_logits(model, ids_of(sequence));
  }
  std::vector<int32_t> out;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    const std::vector<double> row = logits.to_vector();
    const int32_t token = sample_token(row, o.sampling, static_cast<uint64_t>(i));
    if (o.keep_tokens) out.push_back(token);
    if (on_token) on_token(token);
    if (i + 1 == o.max_new_tokens) break;
    if (o.use_cache) {
      logits = decoder->step(ids_of(std::span<const int32_t>(&token, 1)));
    } else {
      sequence.push_back(token);  // only recomputing needs the whole sequence
      logits = recompute_last_logits(model, ids_of(sequence));
    }
  }
  return out;
}

}  // namespace strand::models
