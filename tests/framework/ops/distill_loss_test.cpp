// The chunked logit-distillation loss: float64 gradient checks for several chunk sizes and
// temperatures, the value against a materialised float64 reference, chunk-size independence in
// fp32, no gradient into the frozen teacher, and zero loss and gradient when the student equals
// the teacher.
#include <gtest/gtest.h>

#include <cmath>

#include "framework/autograd/engine.h"
#include "framework/ops/chunked_loss.h"
#include "support/gradcheck.h"

namespace strand {
namespace {

using ops::Reduction;

// Targets with every third row ignored (-100): only which rows are scored matters here.
Tensor scored_rows(int64_t N) {
  std::vector<double> t;
  for (int64_t i = 0; i < N; ++i) t.push_back(i % 3 == 2 ? -100.0 : static_cast<double>(i % 2));
  return Tensor::from_vector(t, {N}, DType::I32);
}

// sum over scored rows of T^2 KL(softmax(t / T) || softmax(s / T)), materialising the logits.
double reference(const Tensor& h, const Tensor& w, const Tensor& th, const Tensor& tw, const Tensor& targets,
                 double T) {
  const int64_t N = h.size(0), C = h.size(1), Ct = th.size(1), V = w.size(0);
  const auto hv = h.to_vector(), wv = w.to_vector(), thv = th.to_vector(), twv = tw.to_vector();
  const auto tg = targets.to_vector();
  double total = 0;
  for (int64_t r = 0; r < N; ++r) {
    if (tg[static_cast<size_t>(r)] == -100) continue;
    std::vector<double> s(V), t(V);
    for (int64_t j = 0; j < V; ++j) {
      for (int64_t c = 0; c < C; ++c) s[j] += hv[r * C + c] * wv[j * C + c] / T;
      for (int64_t c = 0; c < Ct; ++c) t[j] += thv[r * Ct + c] * twv[j * Ct + c] / T;
    }
    double zs = 0, zt = 0;
    for (int64_t j = 0; j < V; ++j) zs += std::exp(s[j]), zt += std::exp(t[j]);
    for (int64_t j = 0; j < V; ++j) {
      const double pt = std::exp(t[j]) / zt;
      total += T * T * pt * (std::log(pt) - (s[j] - std::log(zs)));
    }
  }
  return total;
}

TEST(DistillLoss, GradientsMatchFiniteDifferences) {
  const int64_t N = 7, C = 4, Ct = 6, V = 5;
  const Tensor targets = scored_rows(N);
  const Tensor th = Tensor::randn({N, Ct}, 3, DType::F64), tw = Tensor::randn({V, Ct}, 4, DType::F64);
  for (Reduction red : {Reduction::Mean, Reduction::Sum})
    for (double T : {1.0, 2.5})
      for (int64_t chunk : {1, 3, 7, 20}) {
        Tensor h = Tensor::randn({N, C}, 1, DType::F64).set_requires_grad(true);
        Tensor w = Tensor::randn({V, C}, 2, DType::F64).set_requires_grad(true);
        testing::expect_gradients_match(
            [&](const std::vector<Tensor>& in) {
              return ops::chunked_distill_loss(in[0], in[1], th, tw, targets, T, chunk, -100, red);
            },
            {h, w}, "T " + std::to_string(T) + " chunk " + std::to_string(chunk));
      }
}

TEST(DistillLoss, ValueMatchesTheMaterialisedReference) {
  const int64_t N = 11, C = 8, Ct = 12, V = 9;
  const Tensor targets = scored_rows(N);
  const Tensor h = Tensor::randn({N, C}, 1, DType::F64), w = Tensor::randn({V, C}, 2, DType::F64);
  const Tensor th = Tensor::randn({N, Ct}, 3, DType::F64), tw = Tensor::randn({V, Ct}, 4, DType::F64);
  for (double T : {0.5, 1.0, 4.0}) {
    const double want = reference(h, w, th, tw, targets, T);
    EXPECT_GT(want, 0.1);
    const double sum = ops::chunked_distill_loss(h, w, th, tw, targets, T, 4, -100, Reduction::Sum).item();
    EXPECT_NEAR(sum, want, 1e-12 * std::abs(want)) << "T " << T;
    // Mean divides by the 8 scored rows of 11, as the cross-entropy does.
    const double mean = ops::chunked_distill_loss(h, w, th, tw, targets, T, 4).item();
    EXPECT_NEAR(mean, want / 8.0, 1e-12 * std::abs(want)) << "T " << T;
  }
}

TEST(DistillLoss, Fp32ChunksGiveTheSameLossAndGradients) {
  const int64_t N = 13, C = 16, V = 40;
  const Tensor targets = scored_rows(N);
  const Tensor th = Tensor::randn({N, C}, 3), tw = Tensor::randn({V, C}, 4);
  std::vector<double> loss, dh, dw;
  for (int64_t chunk : {13, 5, 1}) {
    Tensor h = Tensor::randn({N, C}, 1).set_requires_grad(true), w = Tensor::randn({V, C}, 2).set_requires_grad(true);
    const Tensor l = ops::chunked_distill_loss(h, w, th, tw, targets, 2.0, chunk);
    const auto g = autograd::grad({l}, {Tensor::full({}, 1.0)}, {h, w});
    if (loss.empty()) {
      loss = {l.item()};
      dh = g[0].to_vector();
      dw = g[1].to_vector();
      continue;
    }
    EXPECT_EQ(l.item(), loss[0]) << "chunk " << chunk;  // row losses summed in row order
    EXPECT_EQ(g[0].to_vector(), dh) << "chunk " << chunk;  // rows are independent
    const auto dwc = g[1].to_vector();
    for (size_t i = 0; i < dw.size(); ++i) EXPECT_NEAR(dwc[i], dw[i], 1e-5 * (1 + std::abs(dw[i])));
  }
}

TEST(DistillLoss, TheTeacherGetsNoGradient) {
  const int64_t N = 5, C = 4, V = 6;
  Tensor h = Tensor::randn({N, C}, 1).set_requires_grad(true), w = Tensor::randn({V, C}, 2).set_requires_grad(true);
  Tensor th = Tensor::randn({N, C}, 3).set_requires_grad(true), tw = Tensor::randn({V, C}, 4).set_requires_grad(true);
  const Tensor l = ops::chunked_distill_loss(h, w, th, tw, scored_rows(N), 2.0, 2);
  l.backward();
  EXPECT_TRUE(h.grad().defined());
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(th.grad().defined());
  EXPECT_FALSE(tw.grad().defined());
}

TEST(DistillLoss, IsZeroWithZeroGradientWhenTheStudentIsTheTeacher) {
  const int64_t N = 6, C = 4, V = 7;
  Tensor h = Tensor::randn({N, C}, 1, DType::F64).set_requires_grad(true);
  Tensor w = Tensor::randn({V, C}, 2, DType::F64).set_requires_grad(true);
  const Tensor l = ops::chunked_distill_loss(h, w, h.detach(), w.detach(), scored_rows(N), 3.0, 4);
  EXPECT_NEAR(l.item(), 0.0, 1e-14);
  const auto g = autograd::grad({l}, {Tensor::full({}, 1.0, DType::F64)}, {h, w});
  for (double x : g[0].to_vector()) EXPECT_NEAR(x, 0.0, 1e-14);
  for (double x : g[1].to_vector()) EXPECT_NEAR(x, 0.0, 1e-14);
}

}  // namespace
}  // namespace strand
