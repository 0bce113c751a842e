// build_model: the architecture model.arch names, built from the model section; and the
// weight-decay rule shared by every model.
#include "models/model.h"

#include <string_view>

#include "framework/core/error.h"
#include "models/encdec/encdec.h"
#include "models/encoder/encoder.h"
#include "models/gpt/gpt.h"

namespace strand::models {
namespace {

using config::Arch;
using config::AttentionPattern;

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

std::shared_ptr<Model> build_model(const config::Config& config) {
  // parse_config has checked what each architecture can honour, and says so naming the key
  // (framework/config/rules.cpp). A config built in code skips that check: the one rule whose
  // breach would not fail on its own (a decoder that reads later tokens) is asserted here.
  const AttentionPattern pattern = config.model.attention.pattern;
  STRAND_CHECK(config.model.arch == Arch::Encoder ? pattern != AttentionPattern::Causal : pattern != AttentionPattern::Full,
               ValueError, "build_model: arch ", config::name_of(config.model.arch), " with attention pattern ",
               config::name_of(pattern), " (a config parse_config would refuse)");
  // Kept heads per layer index one stack's blocks: only gpt has a single stack of them.
  STRAND_CHECK(config.model.kept_heads.empty() || config.model.arch == Arch::Gpt, ValueError, "build_model: arch ",
               config::name_of(config.model.arch), " cannot hold pruned heads (only gpt)");
  const uint64_t seed = static_cast<uint64_t>(config.run.seed);
  std::shared_ptr<Model> model;
  switch (config.model.arch) {
    case Arch::Gpt: {
      auto gpt = std::make_shared<Gpt>(config.model, seed);
      gpt->set_loss_chunk(config.memory.loss_chunk);
      model = gpt;
      break;
    }
    case Arch::Encoder: {
      auto encoder = std::make_shared<Encoder>(config.model, seed);
      encoder->set_loss_chunk(config.memory.loss_chunk);
      model = encoder;
      break;
    }
    case Arch::EncDec: model = std::make_shared<EncDec>(config.model, seed); break;
  }
  STRAND_CHECK(model != nullptr, ValueError, "build_model: unknown model.arch");
  set_checkpointing(*model, config.memory);
  return model;
}

}  // namespace strand::models
