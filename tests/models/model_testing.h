// Shared helpers of the model tests: tiny configs, random and synthetic batches, the
// finite-difference check of a model's summed loss at every parameter element, "every parameter got a finite gradient",
// and a short AdamW run on one fixed batch.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "data/loader.h"
#include "framework/autograd/grad_mode.h"
#include "framework/optim/adamw.h"
#include "models/model.h"
#include "support/gradcheck.h"

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

// Rows (indices along the first dimension) of parameters whose gradient is zero by construction,
// e.g. the embedding row of a token the batch never holds: name -> rows.
using ZeroRows = std::map<std::string, std::vector<int64_t>>;

// The embedding rows of the tokens `batch` never holds as an input: their gradient is zero by
// construction where the embedding is not also the output projection (untied).
inline std::vector<int64_t> absent_token_rows(const data::Batch& batch, int64_t vocab) {
  std::vector<bool> present(static_cast<size_t>(vocab), false);
  for (double t : batch.inputs.to_vector()) present[static_cast<size_t>(t)] = true;
  std::vector<int64_t> rows;
  for (int64_t v = 0; v < vocab; ++v)
    if (!present[static_cast<size_t>(v)]) rows.push_back(v);
  return rows;
}

// Central differences of loss_sum against the backward pass at every element of every parameter
// (tests/support/gradcheck.h). The model must be float64, dropout off. The fourth-order stencil
// with h = 2e-4 has truncation ~h^4 |L^(5)| and rounding ~1e-16 |L| / h ~ 1e-11 (|L| ~ 20 here);
// every model test passes with atol 1e-10 and rtol 1e-6, so atol 1e-9 leaves a margin of 10 and
// a gradient of 1e-8 is still checked to 10%. (h = 1e-3 puts the encoder's position embeddings,
// behind LayerNorm of small activations, at 1e-8 of truncation.) The rows in `zero_rows` must be
// exactly zero; every other element is compared, whatever its size.
inline void expect_loss_gradients_match(models::Model& model, const data::Batch& batch, const std::string& label,
                                        const ZeroRows& zero_rows = {}) {
  model.zero_grad();
  model.forward(batch).loss_sum.backward();
  DifferenceOptions opt;
  opt.h = 2e-4;
  opt.points = 4;
  opt.atol = 1e-9;
  opt.rtol = 1e-6;
  auto loss = [&] {
    autograd::NoGradGuard no_grad;
    return model.forward(batch).loss_sum.item();
  };
  size_t named = 0;
  for (auto [name, p] : model.named_parameters()) {
    std::vector<int64_t> zero;
    if (auto it = zero_rows.find(name); it != zero_rows.end()) {
      ++named;
      const int64_t row = p.numel() / p.size(0);
      for (int64_t r : it->second)
        for (int64_t j = 0; j < row; ++j) zero.push_back(r * row + j);
    }
    expect_elements_match_differences(p, p.grad().to_vector(), loss, label + ": " + name, opt, zero);
  }
  EXPECT_EQ(named, zero_rows.size()) << label << ": a name in zero_rows is not a parameter";
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
