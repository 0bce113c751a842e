// memory.loss_chunk in the GPT and the encoder: the chunked head gives the unchunked loss, predictions and
// parameter gradients (within fp32 rounding; the tied embedding's gradient sums by chunk), and
// build_model passes the key through.
#include <gtest/gtest.h>

#include <cmath>

#include "framework/autograd/engine.h"
#include "models/encoder/encoder.h"
#include "models/gpt/gpt.h"
#include "model_testing.h"

namespace strand {
namespace {

using config::Arch;
using models::Gpt;

struct HeadRun {
  double loss;
  std::vector<double> predictions;
  std::vector<std::vector<double>> grads;
};

HeadRun run(models::Model& gpt, const data::Batch& batch) {
  const models::LossOutput out = gpt.forward(batch);
  std::vector<Tensor> params;
  for (const auto& [name, p] : gpt.named_parameters()) params.push_back(p);
  const auto g = autograd::grad({out.loss_sum}, {Tensor::full({}, 1.0)}, params);
  HeadRun r{out.loss_sum.item(), out.predictions.defined() ? out.predictions.to_vector() : std::vector<double>{}, {}};
  for (const Tensor& t : g) r.grads.push_back(t.to_vector());
  return r;
}

TEST(ChunkedLoss, GptLossAndGradientsMatchTheUnchunkedHead) {
  for (bool tied : {true, false}) {
    config::ModelConfig c = testing::tiny_config(Arch::Gpt, 37, 16, 2, 12);
    c.tie_embeddings = tied;
    Gpt gpt(c, 5);
    const data::Batch batch = testing::random_batch(2, 12, 37, 8);
    const HeadRun ref = run(gpt, batch);  // loss_chunk 0 at this size: the unchunked head
    for (int64_t chunk : {1, 5, 24}) {
      gpt.set_loss_chunk(chunk);
      const HeadRun got = run(gpt, batch);
      gpt.set_loss_chunk(0);
      EXPECT_NEAR(got.loss, ref.loss, 1e-6 * std::abs(ref.loss)) << chunk;
      EXPECT_EQ(got.predictions, ref.predictions) << chunk;
      ASSERT_EQ(got.grads.size(), ref.grads.size());
      for (size_t i = 0; i < ref.grads.size(); ++i)
        for (size_t j = 0; j < ref.grads[i].size(); ++j)
          ASSERT_NEAR(got.grads[i][j], ref.grads[i][j], 1e-5 + 1e-5 * std::abs(ref.grads[i][j]))
              << "tied " << tied << " chunk " << chunk << " parameter " << i << " element " << j;
    }
    // The default (0) keeps the unchunked head: the same bits as before this key existed.
    const HeadRun again = run(gpt, batch);
    EXPECT_EQ(again.loss, ref.loss);
    EXPECT_EQ(again.grads, ref.grads);
  }
}

TEST(ChunkedLoss, EncoderMlmLossAndGradientsMatchTheUnchunkedHead) {
  models::Encoder encoder(testing::tiny_config(Arch::Encoder, 37, 16, 2, 12), 5);
  const data::Batch batch = testing::random_batch(2, 12, 37, 8);
  const HeadRun ref = run(encoder, batch);
  ASSERT_GT(std::abs(ref.loss), 0.0) << "no masked token scored";
  encoder.set_loss_chunk(5);
  const HeadRun got = run(encoder, batch);
  EXPECT_NEAR(got.loss, ref.loss, 1e-6 * std::abs(ref.loss));
  for (size_t i = 0; i < ref.grads.size(); ++i)
    for (size_t j = 0; j < ref.grads[i].size(); ++j)
      ASSERT_NEAR(got.grads[i][j], ref.grads[i][j], 1e-5 + 1e-5 * std::abs(ref.grads[i][j])) << i << " " << j;
}

TEST(ChunkedLoss, BuildModelPassesMemoryLossChunk) {
  config::Config cfg;
  cfg.model = testing::tiny_config(Arch::Gpt, 37, 16, 2, 12);
  const data::Batch batch = testing::random_batch(2, 12, 37, 8);
  auto plain = models::build_model(cfg);
  cfg.memory.loss_chunk = 5;
  auto chunked = models::build_model(cfg);
  const double a = plain->forward(batch).loss_sum.item(), b = chunked->forward(batch).loss_sum.item();
  EXPECT_NEAR(a, b, 1e-6 * std::abs(a));
}

}  // namespace
}  // namespace strand
