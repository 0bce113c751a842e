// The chunked LM head + cross-entropy: float64 gradient checks, agreement with the unchunked
// matmul + cross_entropy in fp32 (loss, dh, dweight, argmax) for several chunk sizes, determinism,
// bad targets, and peak tensor memory far below the [N, V] logits.
#include <gtest/gtest.h>

#include <cmath>

#include "framework/autograd/engine.h"
#include "framework/core/allocator.h"
#include "framework/core/error.h"
#include "framework/ops/chunked_loss.h"
#include "framework/ops/matmul.h"
#include "framework/ops/reduce.h"
#include "framework/ops/view.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using ops::Reduction;

// Targets in [0, V) with every fourth row ignored (-100).
Tensor some_targets(int64_t N, int64_t V, uint64_t seed) {
  const std::vector<double> u = Tensor::uniform({N}, seed, 0.0, static_cast<double>(V) - 1e-9, DType::F64).to_vector();
  std::vector<double> t;
  for (int64_t i = 0; i < N; ++i) t.push_back(i % 4 == 3 ? -100.0 : std::floor(u[static_cast<size_t>(i)]));
  return Tensor::from_vector(t, {N}, DType::I32);
}

TEST(ChunkedLoss, GradientsMatchFiniteDifferences) {
  const int64_t N = 7, C = 4, V = 5;
  const Tensor targets = some_targets(N, V, 3);
  for (Reduction red : {Reduction::Mean, Reduction::Sum})
    for (int64_t chunk : {1, 3, 7, 20}) {
      Tensor h = Tensor::randn({N, C}, 1, DType::F64).set_requires_grad(true);
      Tensor w = Tensor::randn({V, C}, 2, DType::F64).set_requires_grad(true);
      testing::expect_gradients_match(
          [&](const std::vector<Tensor>& in) {
            return ops::chunked_cross_entropy(in[0], in[1], targets, chunk, -100, red).loss;
          },
          {h, w}, "chunk " + std::to_string(chunk) + (red == Reduction::Mean ? " mean" : " sum"));
    }
}

struct HeadResult {
  double loss;
  std::vector<double> dh, dw, predictions;
};

HeadResult unchunked(const Tensor& h0, const Tensor& w0, const Tensor& targets) {
  Tensor h = h0.detach().set_requires_grad(true), w = w0.detach().set_requires_grad(true);
  const Tensor logits = ops::matmul(h, ops::transpose(w, 0, 1));
  const Tensor loss = ops::cross_entropy(logits, targets, -100, Reduction::Sum);
  const auto g = autograd::grad({loss}, {Tensor::full({}, 1.0)}, {h, w});
  return {loss.item(), g[0].to_vector(), g[1].to_vector(), ops::argmax(logits, -1).to_vector()};
}

HeadResult chunked(const Tensor& h0, const Tensor& w0, const Tensor& targets, int64_t chunk) {
  Tensor h = h0.detach().set_requires_grad(true), w = w0.detach().set_requires_grad(true);
  const ops::ChunkedLoss out = ops::chunked_cross_entropy(h, w, targets, chunk, -100, Reduction::Sum);
  const auto g = autograd::grad({out.loss}, {Tensor::full({}, 1.0)}, {h, w});
  return {out.loss.item(), g[0].to_vector(), g[1].to_vector(), out.predictions.to_vector()};
}

TEST(ChunkedLoss, MatchesTheUnchunkedHeadInFp32) {
  const int64_t N = 37, C = 16, V = 50;
  const Tensor h = Tensor::randn({N, C}, 5), w = Tensor::randn({V, C}, 6, DType::F32, 0.5);
  const Tensor targets = some_targets(N, V, 7);
  const HeadResult ref = unchunked(h, w, targets);
  for (int64_t chunk : {1, 4, 16, 37, 100}) {
    const HeadResult got = chunked(h, w, targets, chunk);
    // Rows are computed exactly as unchunked; dweight sums its chunks in another order.
    EXPECT_NEAR(got.loss, ref.loss, 1e-6 * std::abs(ref.loss)) << chunk;
    EXPECT_EQ(got.predictions, ref.predictions) << chunk;
    for (size_t i = 0; i < ref.dh.size(); ++i) ASSERT_NEAR(got.dh[i], ref.dh[i], 1e-6) << chunk << " dh " << i;
    for (size_t i = 0; i < ref.dw.size(); ++i) ASSERT_NEAR(got.dw[i], ref.dw[i], 1e-5) << chunk << " dw " << i;
    // Deterministic: a second run gives the same bits.
    const HeadResult again = chunked(h, w, targets, chunk);
    EXPECT_EQ(again.loss, got.loss);
    EXPECT_EQ(again.dh, got.dh);
    EXPECT_EQ(again.dw, got.dw);
  }
}

TEST(ChunkedLoss, AllIgnoredGivesZeroLossAndGradients) {
  Tensor h = Tensor::randn({5, 3}, 1).set_requires_grad(true);
  Tensor w = Tensor::randn({4, 3}, 2).set_requires_grad(true);
  const Tensor t = Tensor::full({5}, -100.0, DType::I32);
  const ops::ChunkedLoss out = ops::chunked_cross_entropy(h, w, t, 2, -100, Reduction::Mean);
  EXPECT_EQ(out.loss.item(), 0.0);
  const auto g = autograd::grad({out.loss}, {Tensor::full({}, 1.0)}, {h, w});
  for (double v : g[0].to_vector()) EXPECT_EQ(v, 0.0);
  for (double v : g[1].to_vector()) EXPECT_EQ(v, 0.0);
}

TEST(ChunkedLoss, BadTargetsAndShapesAreErrors) {
  const Tensor h = Tensor::randn({3, 2}, 1), w = Tensor::randn({4, 2}, 2);
  EXPECT_THROW(ops::chunked_cross_entropy(h, w, Tensor::from_vector({0, 4, 1}, {3}, DType::I32), 2), ValueError);
  EXPECT_THROW(ops::chunked_cross_entropy(h, Tensor::randn({4, 3}, 2), Tensor::from_vector({0, 1, 1}, {3}, DType::I32), 2),
               ShapeError);
  EXPECT_THROW(ops::chunked_cross_entropy(h, w, Tensor::from_vector({0, 1, 1}, {3}, DType::I32), 0), ValueError);
}

TEST(ChunkedLoss, PeakTensorBytesStayFarBelowTheFullLogits) {
  // N * V * 4 = 64 MiB of logits if they were formed; the chunked head never holds more than
  // h, w, their gradients, lse and two chunks.
  const int64_t N = 4096, C = 32, V = 4096, chunk = 64;
  Tensor h = Tensor::randn({N, C}, 1).set_requires_grad(true);
  Tensor w = Tensor::randn({V, C}, 2, DType::F32, 0.1).set_requires_grad(true);
  const Tensor targets = some_targets(N, V, 3);
  const int64_t base = memory::stats(Device::cpu()).current_bytes;
  memory::reset_peak(Device::cpu());
  const ops::ChunkedLoss out = ops::chunked_cross_entropy(h, w, targets, chunk, -100, Reduction::Sum);
  const auto g = autograd::grad({out.loss}, {Tensor::full({}, 1.0)}, {h, w});
  const int64_t peak = memory::stats(Device::cpu()).peak_bytes - base;
  const int64_t logits_bytes = N * V * 4;
  EXPECT_LT(peak, logits_bytes / 16) << "peak " << peak << " bytes";
  EXPECT_TRUE(std::isfinite(out.loss.item()));
  EXPECT_EQ(g[1].shape(), w.shape());
}

TEST(ChunkedLoss, AutoChunkRowsTargets64MiBOfLogits) {
  EXPECT_EQ(ops::auto_chunk_rows(50257, DType::F32), (int64_t{64} << 20) / (50257 * 4));
  EXPECT_EQ(ops::auto_chunk_rows(int64_t{1} << 30, DType::F64), 1);
}

}  // namespace
}  // namespace strand
