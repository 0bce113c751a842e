// build_model: the architecture each config builds, and the errors for combinations a model
// cannot honour, each naming the config key.
#include <gtest/gtest.h>

#include "framework/core/error.h"
#include "models/encdec/encdec.h"
#include "models/encoder/encoder.h"
#include "models/gpt/gpt.h"
#include "model_testing.h"

namespace strand {
namespace {

using train::Arch;
using train::AttentionPattern;

train::Config tiny(Arch arch) {
  train::Config c;
  c.model = testing::tiny_config(arch);
  c.data.seq_len = 16;
  c.run.seed = 5;
  return c;
}

void expect_config_error(const train::Config& c, const std::string& key, const std::string& label) {
  try {
    models::build_model(c);
    FAIL() << label << ": expected ConfigError naming " << key;
  } catch (const train::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'" + key + "'"), std::string::npos) << label << ": " << e.what();
  }
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

TEST(BuildModel, RefusesCombinationsNamingTheKey) {
  train::Config c = tiny(Arch::Gpt);
  c.model.attention.pattern = AttentionPattern::Full;
  expect_config_error(c, "model.attention.pattern", "gpt full");
  c = tiny(Arch::EncDec);
  c.model.attention.pattern = AttentionPattern::Full;
  expect_config_error(c, "model.attention.pattern", "encdec full");
  c = tiny(Arch::Encoder);
  c.model.attention.pattern = AttentionPattern::Causal;
  expect_config_error(c, "model.attention.pattern", "encoder causal");
  c = tiny(Arch::Gpt);
  c.model.attention.pattern = AttentionPattern::Longformer;
  c.model.attention.global_tokens = 17;
  expect_config_error(c, "model.attention.global_tokens", "global tokens past seq_len");
  c = tiny(Arch::EncDec);
  c.model.attention.pattern = AttentionPattern::Longformer;
  c.model.attention.global_tokens = 9;
  expect_config_error(c, "model.attention.global_tokens", "encdec global tokens past half the row");
  c = tiny(Arch::EncDec);
  c.data.seq_len = 1;
  expect_config_error(c, "data.seq_len", "encdec row of one token");
  c = tiny(Arch::Gpt);
  c.model.n_head = 3;
  expect_config_error(c, "model.n_head", "heads not dividing d_model");
  c = tiny(Arch::Gpt);
  c.model.n_kv_head = 3;
  c.model.n_head = 2;
  expect_config_error(c, "model.n_kv_head", "kv heads not dividing heads");
  c = tiny(Arch::Gpt);
  c.model.n_head = 8;  // head size 1
  c.model.n_kv_head = 8;
  c.model.pos = train::PosEncoding::Rope;
  expect_config_error(c, "model.pos", "rope with odd head size");
  c = tiny(Arch::Encoder);
  c.model.vocab_size = 1;
  expect_config_error(c, "model.vocab_size", "encoder without room for a mask token");
}

TEST(BuildModel, AcceptsEveryPatternItsArchitectureSupports) {
  for (Arch arch : {Arch::Gpt, Arch::Encoder, Arch::EncDec})
    for (AttentionPattern p : {AttentionPattern::Full, AttentionPattern::Causal, AttentionPattern::Sliding,
                               AttentionPattern::Dilated, AttentionPattern::Longformer, AttentionPattern::BigBird,
                               AttentionPattern::Linear}) {
      const bool decoder = arch != Arch::Encoder;
      const bool refused = decoder ? p == AttentionPattern::Full : p == AttentionPattern::Causal;
      if (refused) continue;
      train::Config c = tiny(arch);
      c.model.attention.pattern = p;
      c.model.attention.global_tokens = 1;
      c.model.attention.random_blocks = 1;
      EXPECT_NO_THROW(models::build_model(c)) << train::name_of(arch) << " " << train::name_of(p);
    }
}

}  // namespace
}  // namespace strand
