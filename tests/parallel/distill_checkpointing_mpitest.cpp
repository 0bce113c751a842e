// Attention transfer under gradient checkpointing and sequence parallelism: at sp = 2, ring
// (zigzag, with dropout, and contiguous) and Ulysses, the distillation trainer's gradient pass
// with memory.checkpointing full, selective, and full and selective with disk offload (full then
// checkpoints half-blocks) gives the loss, the attention term and every summed student gradient
// of the same job without checkpointing, bit for bit: the term's gradient w.r.t. q and k (and the
// hidden term's w.r.t. a block's input) enters each checkpointed block's rerun (autograd::expose)
// where the plain backward adds it.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "data/loader.h"
#include "framework/config/config.h"
#include "framework/io/checkpoint.h"
#include "framework/train/components.h"
#include "framework/train/distill.h"
#include "models/model.h"
#include "parallel/comm/group.h"

namespace strand::parallel {
namespace {

const char* const kModel =
    "model: {vocab_size: 16, n_layer: 2, n_head: 4, d_model: 16, max_seq_len: 32}\n"
    "data: {format: synthetic, task: copy, seq_len: 32, batch_size: 2}\n";

// The teacher: a freshly initialised GPT of the same shape and another seed. Every rank's config
// must be the same, so its path (and the spill directory) is one for all: rank 0 writes it.
const char* const kDir = "/tmp/strand_distill_checkpointing_mpitest";

std::string write_teacher() {
  const std::string path = std::string(kDir) + "/teacher.h5";
  if (world().rank() == 0) {
    const std::string yaml = std::string(kModel) + "run: {seed: 11}\n";
    const train::Config config = train::parse_config(yaml, "teacher.yaml");
    io::CheckpointData data;
    data.config_yaml = yaml;
    for (const auto& [name, p] : models::build_model(config)->named_parameters())
      data.model.tensors.emplace_back(name, p);
    std::filesystem::create_directories(kDir);
    io::write_checkpoint(path, data);
  }
  world().barrier();
  return path;
}

struct Pass {
  double loss = 0, att = 0;
  std::vector<std::vector<float>> grads;
};

// One gradient pass (two micro-batches, gradients summed over the ranks) of a distillation run
// whose two student layers are both paired with the teacher's, with the hidden-state term on.
Pass gradient_pass(const std::vector<std::string>& overrides) {
  std::vector<std::string> o = {"distill.teacher=" + write_teacher(), "distill.attention_weight=2",
                                "distill.attention_layers=0:0, 1:1", "distill.hidden_weight=0.5", "memory.offload_dir=" + std::string(kDir) + "/spill",
                                "memory.offload_min_bytes=1024"};
  o.insert(o.end(), overrides.begin(), overrides.end());
  const train::Config config = train::parse_config(kModel, "student.yaml", o);
  train::TrainerOptions options;
  options.print = false;
  options.write_files = false;
  options.allow_resume = false;
  const std::shared_ptr<models::Model> model = models::build_model(config);
  const std::unique_ptr<train::DistillTrainer> trainer =
      train::make_distill_trainer(train::build_trainer_parts(config, model, &world()), options);
  const std::unique_ptr<data::Loader> rows =
      data::make_loader(train::data_spec_of(config, trainer->dp_rank(), config.parallel.dp), data::Split::train);
  Pass out;
  out.loss = trainer->forward_backward(*rows, 2).loss_sum;
  out.att = trainer->last_attention();
  for (const auto& [name, p] : model->named_parameters()) {
    const Tensor g = p.grad().copy_as(DType::F32, p.grad().device());
    out.grads.emplace_back(static_cast<size_t>(g.numel()));
    std::memcpy(out.grads.back().data(), g.raw_data(), out.grads.back().size() * sizeof(float));
  }
  return out;
}

void expect_checkpointing_changes_nothing(const std::vector<std::string>& overrides, const std::string& label) {
  const Pass plain = gradient_pass(overrides);
  EXPECT_GT(plain.att, 1e-6) << label;
  const std::vector<std::vector<std::string>> modes = {{"memory.checkpointing=full"},
                                                       {"memory.checkpointing=selective"},
                                                       {"memory.checkpointing=full", "memory.offload=disk"},
                                                       {"memory.checkpointing=selective", "memory.offload=disk"}};
  for (const std::vector<std::string>& mode : modes) {
    std::vector<std::string> with = overrides;
    with.insert(with.end(), mode.begin(), mode.end());
    std::string what = label;
    for (const std::string& m : mode) what += ", " + m;
    const Pass got = gradient_pass(with);
    EXPECT_EQ(std::memcmp(&got.loss, &plain.loss, sizeof(double)), 0) << what << ": loss " << got.loss << " vs " << plain.loss;
    EXPECT_EQ(std::memcmp(&got.att, &plain.att, sizeof(double)), 0) << what << ": att " << got.att << " vs " << plain.att;
    ASSERT_EQ(got.grads.size(), plain.grads.size());
    for (size_t i = 0; i < plain.grads.size(); ++i) {
      ASSERT_EQ(got.grads[i].size(), plain.grads[i].size());
      EXPECT_EQ(std::memcmp(got.grads[i].data(), plain.grads[i].data(), plain.grads[i].size() * sizeof(float)), 0)
          << what << ": gradient of parameter " << i << " differs";
    }
  }
}

TEST(DistillCheckpointingSp, RingAndUlyssesGradientsAreThoseOfThePlainJobBitForBit) {
  if (world().size() != 2) GTEST_SKIP() << "needs 2 ranks";
  expect_checkpointing_changes_nothing({"parallel.sp=2", "parallel.sp_mode=ring", "model.dropout=0.1"},
                                       "sp 2 ring zigzag, dropout 0.1");
  expect_checkpointing_changes_nothing({"parallel.sp=2", "parallel.sp_mode=ring", "parallel.layout=contiguous"},
                                       "sp 2 ring contiguous");
  expect_checkpointing_changes_nothing({"parallel.sp=2", "parallel.sp_mode=ulysses"}, "sp 2 ulysses");
}

}  // namespace
}  // namespace strand::parallel
