// Shared helpers of the model tests: tiny configs, random and synthetic batches, the
// finite-difference check of a model's summed loss, "every parameter got a finite gradient",
// and a short AdamW run on one fixed batch.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "data/loader.h"
#include "framework/autograd/grad_mode.h"
#include "framework/optim/adamw.h"
#include "models/model.h"

namespace strand::testing {

inline config::ModelConfig tiny_config(config::Arch arch, int64_t vocab = 11, int64_t d_model = 8, int64_t n_layer = 2,
                                      int64_t max_seq_len = 16) {
  config::ModelConfig c;
  c.arch = arch;
  c.vocab_size = vocab;
  c.n_layer = n_layer;
  c.n_head = 2;
  c.n_kv_head = 2;
  c.d_model = d_model;
  c.d_ff = 4 * d_model;
  c.max_seq_len = max_seq_len;
  c.attention.pattern = arch == config::Arch::Encoder ? config::AttentionPattern::Full : config::AttentionPattern::Causal;
  c.attention.window = 3;
  c.attention.block_size = 4;
  return c;
}

// Random tokens in [0, vocab - 1) (the encoder's mask id vocab - 1 is left out); targets are the
// next token of the same random stream, as the loader's rows.
inline data::Batch random_batch(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed, int64_t step = 0) {
  const Tensor u = Tensor::uniform({batch, seq + 1}, seed, 0.0, static_cast<double>(vocab - 1), DType::F64);
  const auto v = u.to_vector();
  std::vector<double> in, tg;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq; ++t) {
      in.push_back(std::floor(v[static_cast<size_t>(b * (seq + 1) + t)]));
      tg.push_back(std::floor(v[static_cast<size_t>(b * (seq + 1) + t + 1)]));
    }
  data::Batch out;
  out.inputs = Tensor::from_vector(in, {batch, seq}, DType::I32);
  out.targets = Tensor::from_vector(tg, {batch, seq}, DType::I32);
  out.step = step;
  return out;
}

// Rows of a synthetic task (data::SyntheticLoader), step `step`.
inline data::Batch synthetic_batch(data::SyntheticTask task, int64_t batch, int64_t seq, int64_t vocab, uint64_t seed,
                                   int64_t step = 0) {
  data::SyntheticSpec spec;
  spec.task = task;
  spec.vocab_size = vocab;
  spec.seq_len = seq;
  spec.seed = seed;
  data::LoaderOptions o;
  o.batch_size = batch;
  o.seq_len = seq;
  return data::SyntheticLoader(spec, o).batch_at(step);
}

// Backward of loss_sum; every parameter must get a defined, finite, not identically zero gradient.
inline void expect_finite_loss_and_gradients(models::Model& model, const data::Batch& batch, const std::string& label) {
  model.zero_grad();
  const models::LossOutput out = model.forward(batch);
  ASSERT_TRUE(out.loss_sum.defined()) << label;
  ASSERT_EQ(out.loss_sum.numel(), 1) << label;
  const double loss = out.loss_sum.item();
  EXPECT_TRUE(std::isfinite(loss)) << label << ": loss " << loss;
  EXPECT_GT(out.tokens, 0) << label;
  out.loss_sum.backward();
  for (const auto& [name, p] : model.named_parameters()) {
    const Tensor g = p.grad();
    ASSERT_TRUE(g.defined()) << label << ": no gradient for " << name;
    ASSERT_EQ(g.shape(), p.shape()) << label << ": " << name;
    double max_abs = 0;
    for (double v : g.to_vector()) {
      ASSERT_TRUE(std::isfinite(v)) << label << ": non-finite gradient in " << name;
      max_abs = std::max(max_abs, std::abs(v));
    }
    EXPECT_GT(max_abs, 0.0) << label << ": gradient of " << name << " is all zero";
  }
}

// Central differences of loss_sum against the backward pass at `per_param` elements (spread
// over the tensor) of each named parameter. The model must be float64, dropout off.
inline void expect_loss_gradients_match(models::Model& model, const data::Batch& batch,
                                        const std::vector<std::string>& names, const std::string& label,
                                        int per_param = 4) {
  model.zero_grad();
  model.forward(batch).loss_sum.backward();
  const double eps = 1e-6;
  for (const std::string& name : names) {
    Tensor p = model.parameter(name);
    ASSERT_EQ(p.dtype(), DType::F64) << label;
    const std::vector<double> analytic = p.grad().to_vector();
    double* d = p.data<double>();
    for (int j = 0; j < per_param; ++j) {
      const int64_t i = (p.numel() - 1) * j / std::max(1, per_param - 1);
      const double orig = d[i];
      auto loss = [&](double value) {
        autograd::NoGradGuard no_grad;
        d[i] = value;
        return model.forward(batch).loss_sum.item();
      };
      const double numeric = (loss(orig + eps) - loss(orig - eps)) / (2 * eps);
      d[i] = orig;
      // Central differences: truncation O(eps^2) and rounding ~1e-16 |L| / eps; |L| ~ 10 here.
      EXPECT_NEAR(analytic[static_cast<size_t>(i)], numeric, 1e-6 + 1e-5 * std::abs(numeric))
          << label << ": " << name << " element " << i;
    }
  }
}

// Mean loss before and after `steps` AdamW steps on one fixed batch.
struct OverfitResult {
  double first = 0, last = 0;
};
inline OverfitResult overfit(models::Model& model, const data::Batch& batch, int steps, double lr) {
  std::vector<optim::AdamWParam> params;
  for (const auto& [name, p] : model.named_parameters()) params.push_back({name, p, false});
  optim::AdamWOptions o;
  o.lr = lr;
  o.weight_decay = 0.0;
  optim::AdamW adamw(params, o);
  OverfitResult r;
  for (int s = 0; s <= steps; ++s) {
    adamw.zero_grad();
    const models::LossOutput out = model.forward(batch);
    const double mean = out.loss_sum.item() / static_cast<double>(out.tokens);
    if (s == 0) r.first = mean;
    r.last = mean;
    if (s == steps) break;
    out.loss_sum.backward();
    adamw.step();
  }
  return r;
}

}  // namespace strand::testing
