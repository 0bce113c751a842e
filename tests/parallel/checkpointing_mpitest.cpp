// Gradient checkpointing under sequence parallelism: with memory.checkpointing full (the block's
// forward, its ring or Ulysses exchange included, reruns in the backward) and selective, the
// loss and every summed gradient of the trainer's gradient pass are bitwise those of the same
// job without checkpointing: sp = 2 ring (zigzag and contiguous) and sp = 2 Ulysses at two
// ranks, hybrid 2 x 2 at four; dropout on in the ring and hybrid cases.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/train/components.h"
#include "framework/train/trainer.h"
#include "models/model.h"
#include "parallel/comm/group.h"
#include "support/temp_dir.h"
#include "support/trainer_pass.h"

namespace strand::parallel {
namespace {

struct Pass {
  double loss = 0;
  std::vector<std::vector<float>> grads;
};

std::vector<float> floats(const Tensor& t) {
  const Tensor c = t.copy_as(DType::F32, t.device());
  std::vector<float> v(static_cast<size_t>(c.numel()));
  std::memcpy(v.data(), c.raw_data(), v.size() * sizeof(float));
  return v;
}

// The trainer's gradient pass (this rank's shard, gradients summed over the ranks) of a small
// causal GPT, with the given overrides.
Pass gradient_pass(const std::vector<std::string>& overrides) {
  testing::TempDir dir("strand_ckpt_mpi_" + std::to_string(world().rank()));
  const std::string path = dir.file("ckpt.yaml");
  std::ofstream(path) << "model: {vocab_size: 16, n_layer: 3, n_head: 4, d_model: 16, max_seq_len: 32}\n"
                         "data: {format: synthetic, task: copy, seq_len: 32, batch_size: 2}\n";
  const train::Config config = train::load_config(path, overrides);
  const testing::TrainerPass run = testing::trainer_gradient_pass(config, world());
  Pass out;
  out.loss = run.pass.loss_sum;
  for (const auto& [name, p] : run.model->named_parameters()) out.grads.push_back(floats(p.grad()));
  return out;
}

void expect_checkpointing_changes_nothing(std::vector<std::string> overrides, const std::string& label) {
  const Pass plain = gradient_pass(overrides);
  for (const char* mode : {"full", "selective"}) {
    std::vector<std::string> with = overrides;
    with.push_back(std::string("memory.checkpointing=") + mode);
    const Pass got = gradient_pass(with);
    EXPECT_EQ(std::memcmp(&got.loss, &plain.loss, sizeof(double)), 0)
        << label << ", " << mode << ": loss " << got.loss << " vs " << plain.loss;
    ASSERT_EQ(got.grads.size(), plain.grads.size());
    for (size_t i = 0; i < plain.grads.size(); ++i) {
      ASSERT_EQ(got.grads[i].size(), plain.grads[i].size());
      EXPECT_EQ(std::memcmp(got.grads[i].data(), plain.grads[i].data(), plain.grads[i].size() * sizeof(float)), 0)
          << label << ", " << mode << ": gradient of parameter " << i << " differs";
    }
  }
}

TEST(CheckpointingSp, RingAndUlyssesGradientsAreThoseOfThePlainJobBitForBit) {
  if (world().size() == 2) {
    expect_checkpointing_changes_nothing({"parallel.sp=2", "parallel.sp_mode=ring", "model.dropout=0.1"},
                                         "sp 2 ring zigzag, dropout 0.1");
    expect_checkpointing_changes_nothing({"parallel.sp=2", "parallel.sp_mode=ring", "parallel.layout=contiguous"},
                                         "sp 2 ring contiguous");
    expect_checkpointing_changes_nothing({"parallel.sp=2", "parallel.sp_mode=ulysses"}, "sp 2 ulysses");
  } else if (world().size() == 4) {
    expect_checkpointing_changes_nothing(
        {"parallel.sp=4", "parallel.sp_mode=hybrid", "parallel.ulysses_degree=2", "model.dropout=0.1"},
        "sp 4 hybrid 2 x 2, dropout 0.1");
  } else {
    GTEST_SKIP() << "runs at 2 ranks (ring, ulysses) and 4 ranks (hybrid)";
  }
}

}  // namespace
}  // namespace strand::parallel
