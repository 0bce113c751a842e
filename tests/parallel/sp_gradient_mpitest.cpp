// The summed gradient of a multi-rank step, before the optimizer, equals the one-process gradient
// of the same rows, for (dp, sp) in {(2,1), (1,2)} at 2 ranks and (2,2) at 4: a GPT built from
// its config and the trainer's own gradient pass (Trainer::forward_backward: the rank's shard,
// the sum over every rank, the global token count as the scale). A gradient normalised by a
// rank's own token count is off by the factor dp x sp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/ops/elementwise.h"
#include "framework/train/components.h"
#include "framework/train/trainer.h"
#include "models/model.h"
#include "parallel/comm/group.h"
#include "support/temp_dir.h"
#include "support/trainer_pass.h"

namespace strand::parallel {
namespace {

// fp32 gradients summed over the ranks and the ring's blocks in another order.
constexpr double kRelTol = 1e-5;

// A small causal GPT (dropout off, so that every layout draws the same function) at (dp, sp).
train::Config config_of(const testing::TempDir& dir, int dp, int sp) {
  const std::string path = dir.file("grad.yaml");
  std::ofstream(path) << "model: {vocab_size: 16, n_layer: 2, n_head: 2, d_model: 16, max_seq_len: 32, dropout: 0}\n"
                         "data: {format: synthetic, task: copy, seq_len: 32, batch_size: 2}\n";
  return train::load_config(path, {"parallel.dp=" + std::to_string(dp), "parallel.sp=" + std::to_string(sp)});
}

// ||a - b|| / ||b|| over one tensor.
double rel_l2(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    diff += (x[i] - y[i]) * (x[i] - y[i]);
    norm += y[i] * y[i];
  }
  return std::sqrt(diff / norm);
}

void expect_summed_gradient_equals_one_process(int dp, int sp) {
  const std::string label = "dp " + std::to_string(dp) + " sp " + std::to_string(sp);
  testing::TempDir dir("strand_sp_gradient_" + std::to_string(world().rank()));
  const train::Config config = config_of(dir, dp, sp);

  // One process: the step's global rows (batch_size x dp of them, as one replica reads them),
  // gradient of the summed loss, divided by the tokens below.
  train::Config whole = config;
  whole.parallel.dp = whole.parallel.sp = 1;
  whole.data.batch_size = config.data.batch_size * dp;
  const std::unique_ptr<data::Loader> all_rows = data::make_loader(train::data_spec_of(whole, 0, 1), data::Split::train);
  const std::shared_ptr<models::Model> reference = models::build_model(config);
  reference->zero_grad();
  const models::LossOutput want = reference->forward(all_rows->batch_at(0));
  want.loss_sum.backward();

  // The job: the trainer's own gradient pass over this rank's shard of its replica's rows,
  // summed over every rank in buckets and scaled by the global token count, before any step.
  const testing::TrainerPass run = testing::trainer_gradient_pass(config, world());
  ASSERT_EQ(run.pass.scored_tokens, want.tokens) << label;

  const auto got_params = run.model->named_parameters(), want_params = reference->named_parameters();
  ASSERT_EQ(got_params.size(), want_params.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got_params.size(); ++i) {
    const std::string& name = got_params[i].first;
    const Tensor got = got_params[i].second.grad();
    const Tensor expected = ops::mul_scalar(want_params[i].second.grad(), 1.0 / static_cast<double>(want.tokens));
    ASSERT_TRUE(got.defined()) << label << ": " << name;
    const std::vector<double> g = got.to_vector(), w = expected.to_vector();
    for (size_t j = 0; j < w.size(); ++j) diff += (g[j] - w[j]) * (g[j] - w[j]), norm += w[j] * w[j];
    // Note [Key bias] (tests/launch/sp_train_test.cpp): c_attn.bias holds the key bias, whose
    // gradient is rounding noise; its query and value parts dominate its norm.
    EXPECT_LE(rel_l2(got, expected), kRelTol) << label << ": " << name;
  }
  EXPECT_LE(std::sqrt(diff / norm), kRelTol) << label << ": the whole gradient";
}

TEST(SequenceParallelGradient, SummedGradientBeforeTheStepEqualsOneProcess) {
  int tried = 0;
  for (const auto& [dp, sp] : {std::pair{2, 1}, std::pair{1, 2}, std::pair{2, 2}}) {
    if (dp * sp != world().size()) continue;
    ++tried;
    expect_summed_gradient_equals_one_process(dp, sp);
  }
  if (tried == 0) GTEST_SKIP() << "runs at 2 ranks ((2,1), (1,2)) and 4 ranks ((2,2))";
}

}  // namespace
}  // namespace strand::parallel
