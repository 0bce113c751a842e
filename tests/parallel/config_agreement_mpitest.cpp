// Ranks started with different configs are refused before any other collective: the rank that
// differs from rank 0 names the first differing key and both values; ranks that agree learn
// that another rank reports (train::check_ranks_agree, called first by build_trainer_parts).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "framework/config/config.h"
#include "framework/train/components.h"
#include "parallel/comm/group.h"

namespace strand::parallel {
namespace {

#define EXPECT_CONTAINS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

const std::string kYaml =
    "model: {vocab_size: 16, n_layer: 1, n_head: 2, d_model: 8, max_seq_len: 16}\n"
    "data: {format: synthetic, task: copy, seq_len: 16, batch_size: 2}\n";

TEST(ConfigAgreement, TheSameConfigOnEveryRankPasses) {
  const train::Config config = train::parse_config(kYaml, "cfg.yaml", {"train.steps=20"});
  train::check_ranks_agree(config, world());
  SUCCEED() << "no error on any rank";
}

TEST(ConfigAgreement, TheLastRankDiffersAndNamesTheKey) {
  const bool last = world().rank() == world().size() - 1;
  // A nested key and train.steps (a job that would hang at its end) differ; the first in the
  // config's order (model before train) is named.
  const train::Config config = train::parse_config(
      kYaml, "cfg.yaml",
      {last ? "train.steps=30" : "train.steps=20", last ? "model.attention.window=8" : "model.attention.window=4"});
  std::string message;
  try {
    train::check_ranks_agree(config, world());
  } catch (const train::ConfigError& e) {
    message = e.what();
  }
  if (last) {
    EXPECT_CONTAINS(message, "key 'model.attention.window': the ranks were started with different configs: rank 0 "
                             "has 4, rank " + std::to_string(world().rank()) + " has 8");
    world().barrier();  // in a job its error ends every rank; here it releases the others
  } else {
    EXPECT_CONTAINS(message, "another rank names the first difference");
  }
}

TEST(ConfigAgreement, ADifferentLayoutOfRanksIsNamed) {
  // dp = 2 on the last rank, sp = 2 on the others: each alone is valid, together they would
  // train wrong (or hang in the grid).
  const bool last = world().rank() == world().size() - 1;
  const train::Config config = train::parse_config(kYaml, "cfg.yaml", {last ? "parallel.dp=2" : "parallel.sp=2"});
  std::string message;
  try {
    train::check_ranks_agree(config, world());
  } catch (const train::ConfigError& e) {
    message = e.what();
  }
  if (last) {
    EXPECT_CONTAINS(message, "key 'parallel.dp': the ranks were started with different configs: rank 0 has 1, rank " +
                                 std::to_string(world().rank()) + " has 2");
    world().barrier();
  } else {
    EXPECT_CONTAINS(message, "another rank names the first difference");
  }
}

TEST(ConfigAgreement, ADifferentEnvironmentIsNamed) {
  // The same config, but the last rank has another value of a STRAND_* variable (as
  // STRAND_PEAK_FLOPS set in one node's environment only would be).
  const bool last = world().rank() == world().size() - 1;
  ::setenv("STRAND_AGREEMENT_TEST", last ? "b" : "a", 1);
  const train::Config config = train::parse_config(kYaml, "cfg.yaml", {});
  std::string message;
  try {
    train::check_ranks_agree(config, world());
  } catch (const train::ConfigError& e) {
    message = e.what();
  }
  ::unsetenv("STRAND_AGREEMENT_TEST");
  if (last) {
    EXPECT_CONTAINS(message, "launch.STRAND_AGREEMENT_TEST: the ranks were started in different environments: rank 0 "
                             "has a, rank " + std::to_string(world().rank()) + " has b");
    world().barrier();
  } else {
    EXPECT_CONTAINS(message, "another rank names the first difference");
  }
  EXPECT_CONTAINS(train::launch_environment(), "\n  cwd: " + std::filesystem::current_path().string() + "\n");
}

}  // namespace
}  // namespace strand::parallel
