// build_model: the architecture each config builds, and the one rule it asserts itself (the
// rules with the key to change are parse_config's, framework/config/rules.cpp).
#include <gtest/gtest.h>

#include "framework/core/error.h"
#include "models/encdec/encdec.h"
#include "models/encoder/encoder.h"
#include "models/gpt/gpt.h"
#include "model_testing.h"

namespace strand {
namespace {

using config::Arch;
using config::AttentionPattern;

config::Config tiny(Arch arch) {
  config::Config c;
  c.model = testing::tiny_config(arch);
  c.data.seq_len = 16;
  c.run.seed = 5;
  return c;
}

TEST(BuildModel, BuildsEachArchitectureFromRunSeed) {
  auto gpt = models::build_model(tiny(Arch::Gpt));
  EXPECT_NE(dynamic_cast<models::Gpt*>(gpt.get()), nullptr);
  EXPECT_NE(dynamic_cast<models::Encoder*>(models::build_model(tiny(Arch::Encoder)).get()), nullptr);
  EXPECT_NE(dynamic_cast<models::EncDec*>(models::build_model(tiny(Arch::EncDec)).get()), nullptr);
  // run.seed decides the weights.
  models::Gpt direct(tiny(Arch::Gpt).model, 5);
  EXPECT_EQ(gpt->parameter("transformer.h.1.mlp.c_fc.weight").to_vector(),
            direct.parameter("transformer.h.1.mlp.c_fc.weight").to_vector());
  for (const auto& [name, p] : gpt->named_parameters()) EXPECT_EQ(p.dtype(), DType::F32) << name;
}

// The user-facing rules (with the key to change) are parse_config's (config_test,
// Config.ArchitectureRulesNameTheKey); a config built in code that would read later tokens in a
// decoder, or none in the encoder, is still stopped here.
TEST(BuildModel, RefusesADecoderThatSeesLaterTokensFromAConfigBuiltInCode) {
  config::Config c = tiny(Arch::Gpt);
  c.model.attention.pattern = AttentionPattern::Full;
  EXPECT_THROW(models::build_model(c), ValueError);
  c = tiny(Arch::EncDec);
  c.model.attention.pattern = AttentionPattern::Full;
  EXPECT_THROW(models::build_model(c), ValueError);
  c = tiny(Arch::Encoder);
  c.model.attention.pattern = AttentionPattern::Causal;
  EXPECT_THROW(models::build_model(c), ValueError);
}

TEST(BuildModel, AcceptsEveryPatternItsArchitectureSupports) {
  for (Arch arch : {Arch::Gpt, Arch::Encoder, Arch::EncDec})
    for (AttentionPattern p : {AttentionPattern::Full, AttentionPattern::Causal, AttentionPattern::Sliding,
                               AttentionPattern::Dilated, AttentionPattern::Longformer, AttentionPattern::BigBird,
                               AttentionPattern::Linear}) {
      const bool decoder = arch != Arch::Encoder;
      const bool refused = decoder ? p == AttentionPattern::Full : p == AttentionPattern::Causal;
      if (refused) continue;
      config::Config c = tiny(arch);
      c.model.attention.pattern = p;
      c.model.attention.global_tokens = 1;
      c.model.attention.random_blocks = 1;
      EXPECT_NO_THROW(models::build_model(c)) << config::name_of(arch) << " " << config::name_of(p);
    }
}

}  // namespace
}  // namespace strand
