// build_model: checks the model section against what each architecture supports, then builds it;
// and the weight-decay rule shared by every model.
#include "models/model.h"

#include <string_view>

#include "models/encdec/encdec.h"
#include "models/encoder/encoder.h"
#include "models/gpt/gpt.h"

namespace strand::models {
namespace {

using train::AttentionPattern;
using train::ConfigError;

[[noreturn]] void fail(const std::string& key, const std::string& what) {
  throw ConfigError("model config: key '" + key + "': " + what);
}

void check_model_config(const train::Config& config) {
  const train::ModelConfig& m = config.model;
  const AttentionPattern pattern = m.attention.pattern;
  const std::string arch = train::name_of(m.arch);
  const std::string pattern_name = train::name_of(pattern);
  const int64_t n_kv_head = m.n_kv_head == 0 ? m.n_head : m.n_kv_head;
  if (m.n_head < 1 || m.d_model % m.n_head != 0)
    fail("model.n_head", "d_model " + std::to_string(m.d_model) + " is not divisible by n_head " + std::to_string(m.n_head));
  if (n_kv_head < 1 || m.n_head % n_kv_head != 0)
    fail("model.n_kv_head", "n_head " + std::to_string(m.n_head) + " is not divisible by n_kv_head " +
                                std::to_string(n_kv_head));
  if (m.pos == train::PosEncoding::Rope && (m.d_model / m.n_head) % 2 != 0)
    fail("model.pos", "rope needs an even head size, got d_model / n_head = " + std::to_string(m.d_model / m.n_head));

  const bool decoder = m.arch != train::Arch::Encoder;  // gpt and encdec read the pattern as a decoder's
  if (decoder && pattern == AttentionPattern::Full)
    fail("model.attention.pattern", "full lets every position see later tokens, which arch " + arch +
                                        " (a causal decoder) must not; use causal, or arch encoder");
  if (!decoder && pattern == AttentionPattern::Causal)
    fail("model.attention.pattern", "causal makes the bidirectional encoder one-directional; use full (or sliding, "
                                    "dilated, longformer, bigbird, linear) with arch encoder");

  if (m.arch == train::Arch::Encoder && m.vocab_size < 2)
    fail("model.vocab_size", "arch encoder needs vocab_size >= 2 (the last id is the mask token), got " +
                                 std::to_string(m.vocab_size));
  const int64_t seq_len = config.data.seq_len;
  if (m.arch == train::Arch::EncDec && seq_len < 2)
    fail("data.seq_len", "arch encdec splits each row into source and target halves, so seq_len must be >= 2, got " +
                             std::to_string(seq_len));
  // Longformer / bigbird global tokens must lie inside the sequence each stack attends over.
  const int64_t attended = m.arch == train::Arch::EncDec ? seq_len / 2 : seq_len;
  if ((pattern == AttentionPattern::Longformer || pattern == AttentionPattern::BigBird) &&
      m.attention.global_tokens > attended)
    fail("model.attention.global_tokens", std::to_string(m.attention.global_tokens) + " global tokens do not fit in " +
                                              std::to_string(attended) + " positions" +
                                              (m.arch == train::Arch::EncDec ? " (half of data.seq_len for encdec)" : ""));
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

bool Model::decays(const std::string& parameter_name) const {
  // Matrices decay (embeddings included, as GPT-2 / nanoGPT); biases and norm weights do not.
  const std::string_view name = parameter_name;
  if (ends_with(name, ".bias")) return false;
  const size_t last = name.rfind('.');
  const size_t prev = last == std::string_view::npos || last == 0 ? std::string_view::npos : name.rfind('.', last - 1);
  const std::string_view owner =
      last == std::string_view::npos ? name : name.substr(prev == std::string_view::npos ? 0 : prev + 1);
  return owner.substr(0, 3) != "ln_";
}

std::shared_ptr<Model> build_model(const train::Config& config) {
  check_model_config(config);
  const uint64_t seed = static_cast<uint64_t>(config.run.seed);
  switch (config.model.arch) {
    case train::Arch::Gpt: return std::make_shared<Gpt>(config.model, seed);
    case train::Arch::Encoder: return std::make_shared<Encoder>(config.model, seed);
    case train::Arch::EncDec: return std::make_shared<EncDec>(config.model, seed);
  }
  fail("model.arch", "unknown architecture");
}

}  // namespace strand::models
